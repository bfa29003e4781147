import { mkdtempSync, readdirSync, readFileSync, truncateSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { SeededRng } from '@mlagent/core-kernels';
import { EndpointExpert } from '../src/experts/endpoint.js';
import { parseResponse } from '@mlagent/env';
import { collect } from '../src/collect/runner.js';
import { lockRunDir } from '../src/train/lock.js';
import { exportSftSteps, exportShareGPT } from '../src/collect/export.js';
import { readCollection, type CollectionRecord, type CollectedStep } from '../src/collect/records.js';
import { seedPlan, taskIdeas } from '../src/collect/seeds.js';
import { progressInfo } from '../src/collect/progress.js';
import { ScriptedExpert } from '../src/experts/scripted.js';
import type { Expert } from '../src/experts/types.js';
import { fakePrepared, startFake } from './fake-episode.js';

const tmp = () => mkdtempSync(path.join(tmpdir(), 'rl-collect-'));
const lines = (f: string): CollectionRecord[] => readFileSync(f, 'utf8').trim().split('\n').map((l) => JSON.parse(l));

/** Checks a steps.jsonl: each trajectory once, steps 1..n contiguous, chained states, one end record. */
function checkCollection(file: string): Map<string, CollectedStep[]> {
  const by = new Map<string, CollectedStep[]>();
  const ends = new Set<string>();
  for (const r of lines(file)) {
    if (r.type === 'end') {
      expect(ends.has(r.trajectory), `two end records for ${r.trajectory}`).toBe(false);
      ends.add(r.trajectory);
      expect(by.get(r.trajectory)?.length).toBe(r.steps);
    } else {
      expect(ends.has(r.trajectory), `step after the end of ${r.trajectory}`).toBe(false);
      by.set(r.trajectory, [...(by.get(r.trajectory) ?? []), r]);
    }
  }
  for (const [id, steps] of by) {
    expect(ends.has(id), `${id} has no end record`).toBe(true);
    steps.forEach((s, i) => {
      expect(s.step).toBe(i + 1);
      if (i > 0) expect(s.stateBefore).toBe(steps[i - 1].stateAfter);
    });
  }
  return by;
}

describe('seed plans', () => {
  it('seeds each trajectory with 1-3 distinct selected candidates, reproducibly', () => {
    const [task] = fakePrepared('t');
    const ideas = taskIdeas(task, 10, 0);
    expect(ideas.selected).toHaveLength(10);
    expect(ideas.candidates.length).toBeGreaterThanOrEqual(100);
    const sizes = new Set<number>();
    for (let i = 0; i < 40; i++) {
      const p = seedPlan(ideas, i, 0);
      sizes.add(p.candidates.length);
      expect(new Set(p.candidates.map((c) => c.id)).size).toBe(p.candidates.length);
      for (const c of p.candidates) expect(ideas.selected).toContain(c);
      expect(p.ideas).toEqual([...new Set(p.candidates.flatMap((c) => c.ideas))]);
      expect(seedPlan(ideas, i, 0)).toEqual(p);
    }
    expect([...sizes].sort()).toEqual([1, 2, 3]);
  });

  it('rotates the leading candidate over the selection, so every diverse plan leads equally often', () => {
    const [task] = fakePrepared('t');
    const ideas = taskIdeas(task, 4, 0);
    const leads = Array.from({ length: 12 }, (_, i) => seedPlan(ideas, i, 0).candidates[0]);
    for (let i = 0; i < 12; i++) expect(leads[i]).toBe(ideas.selected[i % 4]);
  });
});

describe('collect (fake env)', () => {
  it('writes every step with its states, seeds and feedback, and an end record per trajectory', async () => {
    const out = tmp();
    const s = await collect({ tasks: fakePrepared('alpha', 'beta'), expert: new ScriptedExpert(), trajectories: 3, ideas: 5, out, concurrency: 2, progress: false, startEpisode: startFake });
    expect(s).toMatchObject({ total: 6, alreadyDone: 0, completed: 6, failed: [], droppedLines: 0 });
    const by = checkCollection(s.stepsFile);
    expect(by.size).toBe(6);
    for (const [id, steps] of by) {
      expect(id).toMatch(/^(alpha|beta)\/000[0-2]$/);
      expect(steps[0].stateBefore).toMatch(/^[0-9a-f]{64}$/);
      expect(steps[0].seedIdeas.length).toBeGreaterThanOrEqual(1);
      expect(steps.at(-1)!.action).toBe('Final Answer');
      for (const st of steps) {
        expect(parseResponse(st.response).ok).toBe(true);
        expect(st.messages[0].role).toBe('system');
        expect(st.prompt.length).toBeGreaterThan(0);
        expect(st.feedback).toHaveProperty('formatValid', true);
      }
    }
    const ends = lines(s.stepsFile).filter((r) => r.type === 'end');
    expect(ends.every((e) => e.type === 'end' && e.finalAnswer && e.finalMetric !== null && e.finalMetric >= 0.5 && e.finalMetric === e.bestMetric)).toBe(true);
    expect(JSON.parse(readFileSync(path.join(out, 'ideas', 'alpha.json'), 'utf8')).selected).toHaveLength(5);
    // Running again with the same arguments finds everything done.
    const again = await collect({ tasks: fakePrepared('alpha', 'beta'), expert: new ScriptedExpert(), trajectories: 3, ideas: 5, out, progress: false, startEpisode: startFake });
    expect(again).toMatchObject({ alreadyDone: 6, completed: 0 });
    expect(lines(s.stepsFile)).toHaveLength(lines(again.stepsFile).length);
    // Asking for fewer than the directory holds counts only those asked for.
    const fewer = await collect({ tasks: fakePrepared('alpha'), expert: new ScriptedExpert(), trajectories: 2, ideas: 5, out, progress: false, startEpisode: startFake });
    expect(fewer).toMatchObject({ total: 2, alreadyDone: 2, completed: 0 });
  });

  it('resumes after a crash mid-trajectory and a cut-off line without duplicates, same result as one run', async () => {
    const tasks = fakePrepared('gamma');
    const clean = await collect({ tasks, expert: new ScriptedExpert(), trajectories: 4, ideas: 4, out: tmp(), progress: false, startEpisode: startFake });
    const out = tmp();
    // An expert that dies on the 3rd response of trajectory 2 (the process "crashes" there).
    let calls = 0;
    const crashing: Expert = {
      name: 'scripted',
      begin: (task, seed) => {
        const te = new ScriptedExpert().begin(task, seed);
        const isVictim = JSON.stringify(seed) === JSON.stringify(seedPlan(taskIdeas(task, 4, 0), 2, 0));
        return { respond: async (t) => { if (isVictim && ++calls === 3) throw new Error('simulated crash'); return te.respond(t); } };
      },
    };
    const first = await collect({ tasks, expert: crashing, trajectories: 4, ideas: 4, out, progress: false, startEpisode: startFake });
    expect(first.failed).toEqual([{ trajectory: 'gamma/0002', error: 'simulated crash' }]);
    const file = first.stepsFile;
    // Also cut the file in the middle of its last line, as a kill -9 during a write would.
    truncateSync(file, statSync(file).size - 7);
    expect(readCollection(file).clean).toBe(false);
    const second = await collect({ tasks, expert: new ScriptedExpert(), trajectories: 4, ideas: 4, out, progress: false, startEpisode: startFake });
    expect(second.failed).toEqual([]);
    expect(second.droppedLines).toBeGreaterThanOrEqual(3); // 2 steps of gamma/0002 + the cut-off end record
    expect(second.alreadyDone + second.completed).toBe(4);
    const by = checkCollection(file);
    expect([...by.keys()].sort()).toEqual(['gamma/0000', 'gamma/0001', 'gamma/0002', 'gamma/0003']);
    const strip = (rs: CollectionRecord[]) => rs.map((r) => JSON.stringify({ ...r, ...(r.type === 'step' ? { durationSec: 0 } : {}) })).sort();
    expect(strip(lines(file))).toEqual(strip(lines(clean.stepsFile)));
  });

  it('collects through a flaky endpoint expert: whole responses only, a dead endpoint leaves no end record', async () => {
    // The server answers List Files twice, then a Final Answer (counting the assistant turns it is shown),
    // failing 40% of the requests with a 500 or a cut-off body.
    const rng = new SeededRng(3);
    let failures = 0;
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        if (rng.uniform() < 0.4) {
          failures++;
          if (rng.uniform() < 0.5) res.writeHead(500).end('boom');
          else res.writeHead(200).end('{"choices": [{"message": {"content": "Reflection: cut');
          return;
        }
        const turns = JSON.parse(body).messages.filter((m: { role: string }) => m.role === 'assistant').length;
        const content = turns < 2
          ? 'Reflection: -\nResearch Plan and Status: -\nFact Check: -\nThought: look\nAction: List Files\nAction Input: {"dir_path": "."}'
          : 'Reflection: -\nResearch Plan and Status: -\nFact Check: -\nThought: done\nAction: Final Answer\nAction Input: {"final_answer": "done"}';
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ choices: [{ message: { content } }] }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
    try {
      const expert = new EndpointExpert({ url, model: 'm', baseDelayMs: 1, maxDelayMs: 4, maxAttempts: 20 });
      const s = await collect({ tasks: fakePrepared('eta'), expert, trajectories: 3, ideas: 3, out: tmp(), concurrency: 3, progress: false, startEpisode: startFake });
      expect(s.failed).toEqual([]);
      expect(failures).toBeGreaterThan(0);
      const by = checkCollection(s.stepsFile);
      for (const steps of by.values()) {
        expect(steps.map((x) => x.action)).toEqual(['List Files', 'List Files', 'Final Answer']);
        for (const x of steps) expect(parseResponse(x.response).ok).toBe(true);
      }
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
    // A port that was just free: nothing listens there.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const deadPort = (probe.address() as AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const dead = new EndpointExpert({ url: `http://127.0.0.1:${deadPort}/v1`, model: 'm', baseDelayMs: 1, maxAttempts: 2 });
    const out = tmp();
    const s = await collect({ tasks: fakePrepared('theta'), expert: dead, trajectories: 2, ideas: 3, out, progress: false, startEpisode: startFake });
    expect(s.failed.map((f) => f.trajectory)).toEqual(['theta/0000', 'theta/0001']);
    expect(s.failed[0].error).toMatch(/gave up after 2 attempts: request to .* failed: fetch failed \(ECONNREFUSED\)/);
    expect(readFileSync(s.stepsFile, 'utf8')).toBe('');
  });

  it('refuses to resume with other settings, bad arguments and tasks without ideas', async () => {
    const out = tmp();
    const tasks = fakePrepared('delta');
    await collect({ tasks, expert: new ScriptedExpert(), trajectories: 1, ideas: 3, out, progress: false, startEpisode: startFake });
    await expect(collect({ tasks, expert: new ScriptedExpert(), trajectories: 1, ideas: 4, out, progress: false, startEpisode: startFake })).rejects.toThrow(
      /other settings \(ideas: 3 there, 4 now\)/,
    );
    // A damaged collection.json is named, not a bare SyntaxError; nothing is half-written by the first run.
    expect(readdirSync(out).some((n) => n.endsWith('.tmp'))).toBe(false);
    writeFileSync(path.join(out, 'collection.json'), '{"format": 1, "ideas"');
    await expect(collect({ tasks, expert: new ScriptedExpert(), trajectories: 1, ideas: 3, out, progress: false, startEpisode: startFake })).rejects.toThrow(
      /collect: cannot read .*collection\.json \(.*JSON.*\); it binds the directory to its settings/,
    );
    writeFileSync(path.join(out, 'collection.json'), 'null');
    await expect(collect({ tasks, expert: new ScriptedExpert(), trajectories: 1, ideas: 3, out, progress: false, startEpisode: startFake })).rejects.toThrow(/it does not hold a JSON object/);
    await expect(collect({ tasks, expert: new ScriptedExpert(), trajectories: 0, ideas: 3, out: tmp(), startEpisode: startFake })).rejects.toThrow(/trajectories must be a positive integer/);
    await expect(collect({ tasks: [...tasks, ...tasks], expert: new ScriptedExpert(), trajectories: 1, ideas: 3, out: tmp(), startEpisode: startFake })).rejects.toThrow(/listed twice/);
    // A directory another live run holds is refused with the shared lock's message (collect had its own pid-only lock).
    const held = tmp();
    const unlock = lockRunDir(held, 'other');
    await expect(collect({ tasks, expert: new ScriptedExpert(), trajectories: 1, ideas: 3, out: held, progress: false, startEpisode: startFake })).rejects.toThrow(
      /^collect: another run \(pid \d+\) is writing to/,
    );
    unlock();
    const [bare] = fakePrepared('bare');
    (bare as { ideas: unknown[] }).ideas = [];
    await expect(collect({ tasks: [bare], expert: new ScriptedExpert(), trajectories: 1, ideas: 3, out: tmp(), startEpisode: startFake })).rejects.toThrow(/task bare has no ideas/);
  });

  it('exports ShareGPT conversations LLaMA-Factory reads and per-step SFT pairs', async () => {
    const out = tmp();
    const s = await collect({ tasks: fakePrepared('eps'), expert: new ScriptedExpert(), trajectories: 2, ideas: 3, out, progress: false, startEpisode: startFake });
    const by = checkCollection(s.stepsFile);
    const n = exportShareGPT(s.stepsFile, path.join(out, 'sft.jsonl'));
    expect(n).toBe(2);
    const convs = readFileSync(path.join(out, 'sft.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    for (const c of convs) {
      expect(c.system).toBe('fake system');
      expect(c.conversations[0]).toEqual({ from: 'human', value: 'task eps' });
      c.conversations.forEach((t: { from: string }, i: number) => expect(t.from).toBe(i % 2 === 0 ? 'human' : 'gpt'));
      expect(c.conversations.at(-1).from).toBe('gpt');
      expect(c.conversations[2].value).toMatch(/^Observation:\n/);
    }
    const steps = [...by.values()][0];
    const conv = convs.find((c) => c.conversations[1].value === steps[0].response)!;
    expect(conv.conversations.filter((t: { from: string }) => t.from === 'gpt').map((t: { value: string }) => t.value)).toEqual(steps.map((x) => x.response));
    const info = JSON.parse(readFileSync(path.join(out, 'dataset_info.json'), 'utf8'));
    expect(info.sft).toMatchObject({ file_name: 'sft.jsonl', formatting: 'sharegpt', columns: { messages: 'conversations', system: 'system' } });
    expect(exportShareGPT(s.stepsFile, path.join(out, 'arr.json'))).toBe(2);
    expect(JSON.parse(readFileSync(path.join(out, 'arr.json'), 'utf8'))).toHaveLength(2);
    expect(Object.keys(JSON.parse(readFileSync(path.join(out, 'dataset_info.json'), 'utf8')))).toEqual(['sft', 'arr']);
    const total = [...by.values()].reduce((a, b) => a + b.length, 0);
    expect(exportSftSteps(s.stepsFile, path.join(out, 'steps-sft.jsonl'))).toBe(total);
    const ex = JSON.parse(readFileSync(path.join(out, 'steps-sft.jsonl'), 'utf8').split('\n')[1]);
    const rec = by.get(ex.trajectory)![ex.step - 1];
    expect(ex).toEqual({ trajectory: rec.trajectory, task: 'eps', step: rec.step, prompt: rec.prompt, response: rec.response });
    expect(() => exportShareGPT(path.join(out, 'nope.jsonl'), path.join(out, 'x.jsonl'))).toThrow(/no collection/);
    writeFileSync(path.join(out, 'dataset_info.json'), '{oops');
    expect(() => exportShareGPT(s.stepsFile, path.join(out, 'y.jsonl'))).toThrow(/dataset_info.json: it is not valid JSON/);
    expect(existsSync(path.join(out, 'work'))).toBe(false);
  });

  it('shows failures and each task\'s mean final metric next to the progress bar', () => {
    expect(progressInfo({ failed: 1, metrics: new Map([['a', [0.5, 0.7]], ['b', []]]) })).toEqual({ failed: 1, a: 0.6, b: '-' });
    expect(progressInfo({ failed: 0, metrics: new Map([['a', [1 / 3]]]) })).toEqual({ a: 0.3333 });
  });
});
