// A fake Episode over FakeWorkspace with the env's message layout, for runner tests that need no Python.
import { createHash } from 'node:crypto';
import type { PreparedTask, StepResult } from '@mlagent/env';
import type { CollectEpisode, StartEpisode } from '../src/collect/runner.js';
import type { ChatMessage } from '../src/experts/types.js';
import { FakeWorkspace, fakeTask } from './fake-task.js';

interface FakeState {
  ws: FakeWorkspace;
  history: { response: string; observation: string }[];
  metric: number | null;
  done: boolean;
}

/** Every state a FakeEpisode saved, by snapshot id, so `FakeEpisode.restore` can start from it. */
const savedStates = new Map<string, FakeState>();

export class FakeEpisode implements CollectEpisode {
  private ws = new FakeWorkspace();
  private history: { response: string; observation: string }[] = [];
  private metric: number | null = 0.5;
  done = false;
  closed = false;
  /** Steps run in this episode (not in the episodes it was restored from). */
  stepsRun = 0;

  /** An episode in a state that snapshot() saved. */
  static restore(id: string, task: string, maxSteps: number): FakeEpisode {
    const s = savedStates.get(id);
    if (!s) throw new Error(`no saved state ${id}`);
    const ep = new FakeEpisode(task, maxSteps);
    ep.ws = Object.assign(new FakeWorkspace(), structuredClone(s.ws));
    ep.history = structuredClone(s.history);
    ep.metric = s.metric;
    ep.done = s.done;
    return ep;
  }

  /** A copy of saved state `id` whose last response is `response` (SnapshotStore.withLastResponse's stand-in). */
  static reword(id: string, response: string): string {
    const s = savedStates.get(id);
    if (!s || s.history.length === 0) throw new Error(`no saved state ${id} with a step`);
    const history = structuredClone(s.history);
    history[history.length - 1].response = response;
    const copy = createHash('sha256').update(JSON.stringify([id, response])).digest('hex');
    savedStates.set(copy, { ...s, ws: Object.assign(new FakeWorkspace(), structuredClone(s.ws)), history });
    return copy;
  }

  constructor(
    readonly task: string,
    readonly maxSteps: number,
  ) {}
  get stepIndex(): number {
    return this.history.length;
  }
  get currentMetric(): number | null {
    return this.metric;
  }
  messages(): ChatMessage[] {
    const m: ChatMessage[] = [{ role: 'system', content: 'fake system' }, { role: 'user', content: `task ${this.task}` }];
    for (const h of this.history.slice(-5)) m.push({ role: 'assistant', content: h.response }, { role: 'user', content: `Observation:\n${h.observation}` });
    return m;
  }
  prompt(): string {
    return this.messages().map((m) => m.content).join('\n\n');
  }
  async snapshot(): Promise<string> {
    const id = createHash('sha256').update(JSON.stringify([this.task, this.ws.script, this.history])).digest('hex');
    savedStates.set(id, { ws: Object.assign(new FakeWorkspace(), structuredClone(this.ws)), history: structuredClone(this.history), metric: this.metric, done: this.done });
    return id;
  }
  async step(response: string): Promise<StepResult> {
    if (this.closed) throw new Error('step on a closed episode');
    this.stepsRun++;
    const o = this.ws.step(response);
    this.history.push({ response, observation: o.observation });
    if (o.metric != null) this.metric = o.metric;
    this.done = o.done || this.history.length >= this.maxSteps;
    return {
      step: this.history.length,
      action: o.action ?? null,
      actionInput: null,
      observation: o.observation,
      outcome: (o.outcome ?? (o.action ? 'none' : 'parse-error')) as StepResult['outcome'],
      metric: o.metric ?? null,
      feedback: { formatValid: o.action !== undefined, isEdit: false },
      snapshotId: await this.snapshot(),
      durationSec: 0,
      done: this.done,
    };
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

export const startFake: StartEpisode = async (task, o) => new FakeEpisode(task.spec.name, o.maxSteps);

/** Fake tasks typed as the env's PreparedTask (the runner only reads spec, envDir and ideas from them). */
export function fakePrepared(...names: string[]): PreparedTask[] {
  return names.map((n) => fakeTask(n) as unknown as PreparedTask);
}
