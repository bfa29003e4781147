// The scripted expert: plays a sensible episode from a task's real ideas, with no model at all. It looks at the
// files, runs the baseline, then tries each seed idea as an exact edit followed by a run, keeps an idea only when
// the score improves (otherwise it undoes the edit), and ends with a Final Answer. It reacts to what the
// environment answers: a rejected edit is skipped, a failed or worse run is undone.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { applyIdea } from '../ideas/edits.js';
import { applyLineEdit, lineEditBetween } from './line-edit.js';
import { formatResponse, type ResponseParts } from './response.js';
import type { Expert, ExpertObservation, ExpertTask, ExpertTurn, SeedPlan, TrajectoryExpert } from './types.js';

const SCRIPT = 'train.py';

type IdeaStatus =
  | { kind: 'pending' }
  | { kind: 'trying' }
  | { kind: 'kept'; metric: number }
  | { kind: 'reverted'; why: string }
  | { kind: 'skipped'; why: string };

/** What the previous response asked for, so its observation can be read in context. */
type Pending =
  | { kind: 'start' }
  | { kind: 'list' }
  | { kind: 'inspect' }
  | { kind: 'baseline' }
  | { kind: 'edit'; idea: number; before: string; after: string }
  | { kind: 'run'; idea: number; before: string }
  | { kind: 'undo'; idea: number; before: string }
  | { kind: 'restore'; text: string }
  | { kind: 'rerun' }
  | { kind: 'final' };

function oneLine(text: string, max = 160): string {
  const s = text.replace(/\s+/g, ' ').trim();
  return s.length > max ? `${s.slice(0, max - 3)}...` : s;
}

function looksRejected(o: ExpertObservation): boolean {
  return o.action === undefined || /^(EnvError|ActionInputParsingError|Invalid action|Invalid response format)/.test(o.observation.trim());
}

function ranOk(o: ExpertObservation | undefined): o is ExpertObservation & { metric: number } {
  return o !== undefined && (o.outcome === undefined || o.outcome === 'ok') && typeof o.metric === 'number' && Number.isFinite(o.metric);
}

function fmt(m: number): string {
  return Number.isInteger(m) ? String(m) : m.toPrecision(5).replace(/\.?0+$/, '');
}

class ScriptedTrajectory implements TrajectoryExpert {
  private pending: Pending = { kind: 'start' };
  private current: string;
  private readonly ideas: number[];
  private readonly status = new Map<number, IdeaStatus>();
  private baseline: number | null | undefined;
  private best: number | null = null;
  private reflection = 'Nothing has been observed yet: this is the start of the task.';
  /** The last run was of a version since reverted, so submission.csv (and the state's metric) is not the best's. */
  private stale = false;
  /** The opening moves still to make: list the files, read the script, run the baseline. */
  private stage: 'list' | 'inspect' | 'baseline' = 'list';

  constructor(
    private readonly task: ExpertTask,
    seed: SeedPlan,
  ) {
    const file = path.join(task.envDir, SCRIPT);
    try {
      this.current = readFileSync(file, 'utf8');
    } catch (e) {
      throw new Error(`scripted expert: cannot read the task's ${file}: ${(e as Error).message}`);
    }
    for (const i of seed.ideas) {
      if (!Number.isInteger(i) || i < 0 || i >= task.ideas.length)
        throw new RangeError(`scripted expert: seed idea ${i} is not an index of the ${task.ideas.length} ideas of ${task.spec.name}`);
    }
    this.ideas = [...seed.ideas];
    for (const i of this.ideas) this.status.set(i, { kind: 'pending' });
  }

  private get metricName(): string {
    return this.task.spec.metric.name;
  }

  private better(a: number, b: number | null): boolean {
    if (b === null) return true;
    return this.task.spec.metric.direction === 'maximize' ? a > b : a < b;
  }

  private ideaText(i: number): string {
    return this.task.ideas[i].idea.trim().replace(/\.$/, '');
  }

  /** Reads the previous observation in the light of what was asked for. */
  private observe(last: ExpertObservation | undefined): void {
    const p = this.pending;
    if (last === undefined) return;
    switch (p.kind) {
      case 'list':
        this.reflection = `The workspace listing shows: ${oneLine(last.observation, 200)}. ${SCRIPT} is the script to improve.`;
        break;
      case 'inspect':
        this.reflection = `${SCRIPT} is the baseline: it reads the data from data/, fits a model, reports a validation score and writes submission.csv.`;
        break;
      case 'baseline':
        if (ranOk(last)) {
          this.baseline = last.metric;
          this.best = last.metric;
          this.reflection = `The baseline ran and its submission scores ${this.metricName} = ${fmt(last.metric)}.`;
        } else {
          this.baseline = null;
          this.reflection = `The baseline run did not give a score (${last.outcome ?? 'no outcome'}): ${oneLine(last.observation)}`;
        }
        break;
      case 'edit':
        if (looksRejected(last)) {
          this.status.set(p.idea, { kind: 'skipped', why: 'the edit was rejected' });
          this.reflection = `The edit was not applied: ${oneLine(last.observation)}`;
        } else {
          this.current = p.after;
          this.reflection = `The edit for "${this.ideaText(p.idea)}" was applied; the diff shows the intended change.`;
          this.pending = { kind: 'run', idea: p.idea, before: p.before };
          return;
        }
        break;
      case 'run':
        if (ranOk(last) && this.better(last.metric, this.best)) {
          const was = this.best;
          this.best = last.metric;
          this.status.set(p.idea, { kind: 'kept', metric: last.metric });
          this.stale = false;
          this.reflection = `With "${this.ideaText(p.idea)}" the score is ${this.metricName} = ${fmt(last.metric)}, better than ${was === null ? 'nothing so far' : fmt(was)}.`;
        } else {
          const why = ranOk(last)
            ? `${this.metricName} = ${fmt(last.metric)} is not better than ${this.best === null ? '?' : fmt(this.best)}`
            : `the run failed (${last.outcome ?? 'no score'}): ${oneLine(last.observation, 120)}`;
          this.status.set(p.idea, { kind: 'reverted', why });
          // A graded worse run replaced the submission; a failed run left the state's metric as it was.
          if (ranOk(last)) this.stale = true;
          this.reflection = `"${this.ideaText(p.idea)}" did not help: ${why}.`;
          this.pending = { kind: 'undo', idea: p.idea, before: p.before };
          return;
        }
        break;
      case 'undo':
        if (looksRejected(last)) {
          this.reflection = `The undo failed (${oneLine(last.observation, 120)}); I will write back the previous version instead.`;
          this.pending = { kind: 'restore', text: p.before };
          return;
        }
        this.current = p.before;
        this.reflection = `The undo restored the previous version of ${SCRIPT}.`;
        break;
      case 'restore':
        if (!looksRejected(last)) this.current = p.text;
        this.reflection = looksRejected(last)
          ? `Writing back the previous version failed too: ${oneLine(last.observation, 120)}`
          : `The previous version of ${SCRIPT} is back in place.`;
        break;
      case 'rerun':
        this.stale = !ranOk(last);
        this.reflection = ranOk(last)
          ? `The best version ran again and its submission scores ${this.metricName} = ${fmt(last.metric)}.`
          : `Running the best version again failed: ${oneLine(last.observation, 120)}`;
        break;
      default:
        break;
    }
    this.pending = { kind: 'start' };
  }

  private plan(): string {
    const lines = [
      `1. Look at the files and ${SCRIPT}. [${this.stage === 'baseline' ? 'done' : 'in progress'}]`,
      `2. Run the baseline to measure ${this.metricName} (${this.task.spec.metric.direction === 'maximize' ? 'higher' : 'lower'} is better). [${
        this.baseline === undefined ? 'pending' : this.baseline === null ? 'done: it gave no score' : `done: ${fmt(this.baseline)}`
      }]`,
    ];
    this.ideas.forEach((i, k) => {
      const s = this.status.get(i) ?? { kind: 'pending' };
      const tag =
        s.kind === 'kept'
          ? `kept: ${fmt(s.metric)}`
          : s.kind === 'reverted'
            ? `reverted: ${s.why}`
            : s.kind === 'skipped'
              ? `skipped: ${s.why}`
              : s.kind === 'trying'
                ? 'in progress'
                : 'pending';
      lines.push(`${k + 3}. ${this.ideaText(i)}; keep it only if ${this.metricName} improves. [${tag}]`);
    });
    lines.push(`${this.ideas.length + 3}. Submit the best version of ${SCRIPT}.`);
    return `\n${lines.join('\n')}`;
  }

  private facts(): string {
    const f: string[] = [];
    if (this.baseline !== undefined)
      f.push(this.baseline === null ? '- The baseline gave no score: confirmed by running it.' : `- Baseline ${this.metricName} = ${fmt(this.baseline)}: confirmed by running ${SCRIPT}.`);
    for (const i of this.ideas) {
      const s = this.status.get(i);
      if (s?.kind === 'kept') f.push(`- "${this.ideaText(i)}" gives ${fmt(s.metric)}: confirmed by running ${SCRIPT}.`);
      if (s?.kind === 'reverted') f.push(`- "${this.ideaText(i)}" did not help (${s.why}): confirmed by running ${SCRIPT}.`);
    }
    return f.length === 0 ? 'Nothing is confirmed yet: no code has been run.' : `\n${f.join('\n')}`;
  }

  private say(thought: string, action: string, actionInput: ResponseParts['actionInput']): string {
    return formatResponse({
      reflection: this.reflection,
      researchPlanAndStatus: this.plan(),
      factCheck: this.facts(),
      thought,
      action,
      actionInput,
    });
  }

  /** The edit response turning the current script into `after`: one line-range edit, or the whole file. */
  private editTo(after: string, thought: string): string {
    const e = lineEditBetween(this.current, after);
    if (e && applyLineEdit(this.current, e) === after) return this.say(thought, 'Edit Script Lines', { script_name: SCRIPT, ...e });
    return this.say(thought, 'Write File', { file_name: SCRIPT, content: after });
  }

  private final(): string {
    this.pending = { kind: 'final' };
    const kept = this.ideas.filter((i) => this.status.get(i)?.kind === 'kept').map((i) => this.ideaText(i));
    const tried = this.ideas.filter((i) => this.status.get(i)?.kind !== 'pending').length;
    const base = this.baseline == null ? 'the baseline gave no score' : `the baseline scored ${this.metricName} = ${fmt(this.baseline)}`;
    const summary =
      `I measured the baseline (${base}) and tried ${tried} of ${this.ideas.length} planned improvements. ` +
      (kept.length > 0
        ? `Kept: ${kept.join('; ')}. The final ${SCRIPT} scores ${this.metricName} = ${this.best === null ? '?' : fmt(this.best)} and wrote submission.csv.`
        : `None improved the score, so ${SCRIPT} is back to the best version${this.best === null ? '' : ` (${this.metricName} = ${fmt(this.best)})`}.`);
    return this.say('Every planned idea has been tried or the step budget is nearly spent, so I submit the best version.', 'Final Answer', {
      final_answer: summary,
    });
  }

  async respond(turn: ExpertTurn): Promise<string> {
    this.observe(turn.last);
    const left = turn.stepsLeft;
    if (left <= 1) return this.final();
    const p = this.pending;
    if (p.kind === 'run') {
      this.pending = p;
      return this.say(`Run ${SCRIPT} to see whether "${this.ideaText(p.idea)}" improves ${this.metricName}.`, 'Execute Script', { script_name: SCRIPT });
    }
    if (p.kind === 'undo') {
      return this.say(`Undo the last edit of ${SCRIPT} to go back to the best version so far.`, 'Undo Edit Script', { script_name: SCRIPT });
    }
    if (p.kind === 'restore') {
      return this.say(`Write back the best version of ${SCRIPT} so far.`, 'Write File', { file_name: SCRIPT, content: p.text });
    }
    if (this.baseline === undefined) {
      if (this.stage === 'list') {
        this.stage = 'inspect';
        this.pending = { kind: 'list' };
        return this.say('Start by listing the files of the workspace.', 'List Files', { dir_path: '.' });
      }
      if (this.stage === 'inspect') {
        this.stage = 'baseline';
        this.pending = { kind: 'inspect' };
        const n = this.current.split('\n').length - (this.current.endsWith('\n') ? 1 : 0);
        return this.say(`Read ${SCRIPT} to see what the baseline does.`, 'Inspect Script Lines', {
          script_name: SCRIPT,
          start_line_number: 1,
          end_line_number: Math.max(1, Math.min(100, n)),
        });
      }
      this.pending = { kind: 'baseline' };
      return this.say(`Run the baseline ${SCRIPT} to get a score to beat.`, 'Execute Script', { script_name: SCRIPT });
    }
    // Next idea, when the budget still allows edit, run, a possible undo and re-run, and the final answer.
    for (const i of this.ideas) {
      if (this.status.get(i)?.kind !== 'pending') continue;
      if (left < 5) break;
      const r = applyIdea(this.current, this.task.ideas[i]);
      if (!r.ok) {
        this.status.set(i, { kind: 'skipped', why: 'it conflicts with an edit already kept' });
        continue;
      }
      this.status.set(i, { kind: 'trying' });
      this.pending = { kind: 'edit', idea: i, before: this.current, after: r.text };
      return this.editTo(r.text, `Next idea: ${this.ideaText(i)}. Edit ${SCRIPT} accordingly, then run it.`);
    }
    if (this.stale) {
      this.pending = { kind: 'rerun' };
      return this.say(
        `The last run was of a reverted version, so submission.csv is not the best one's: run the best ${SCRIPT} again before submitting.`,
        'Execute Script',
        { script_name: SCRIPT },
      );
    }
    return this.final();
  }
}

/** The scripted expert: a deterministic, model-free player of a task's ideas (see the file comment). */
export class ScriptedExpert implements Expert {
  readonly name = 'scripted';
  begin(task: ExpertTask, seed: SeedPlan): TrajectoryExpert {
    return new ScriptedTrajectory(task, seed);
  }
}
