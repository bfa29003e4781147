// A tiny fake task and environment for expert and collection tests: train.py is text, "running" it scores the
// script by which idea markers it contains, and some ideas are set up to fail or to make things worse.
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseResponse } from '@mlagent/env';
import { applyLineEdit } from '../src/experts/line-edit.js';
import type { ExpertObservation, ExpertTask } from '../src/experts/types.js';

export const FAKE_SCRIPT = [
  'import data',
  'x, y = data.load()',
  'model = Linear()',
  'model.fit(x, y)',
  'score = model.evaluate()',
  'model.write_submission()',
  '',
].join('\n');

export const FAKE_IDEAS = [
  { idea: 'Use gradient boosting instead of the linear model', edits: [{ find: 'model = Linear()', replace: 'model = Boosting()  # +0.10' }] },
  { idea: 'Standardise the features', edits: [{ find: 'x, y = data.load()', replace: 'x, y = data.load()\nx = standardise(x)  # +0.05' }] },
  { idea: 'Use a random forest', edits: [{ find: 'model = Linear()', replace: 'model = Forest()  # +0.07' }] },
  { idea: 'Add a broken feature step', edits: [{ find: 'model.fit(x, y)', replace: 'crash()\nmodel.fit(x, y)' }] },
  { idea: 'Drop half of the training data', edits: [{ find: 'model.fit(x, y)', replace: 'x, y = x[:1], y[:1]  # -0.20\nmodel.fit(x, y)' }] },
  {
    idea: 'Average two models and log the score',
    edits: [
      { find: 'score = model.evaluate()', replace: 'score = model.evaluate()  # +0.02' },
      { find: 'model.write_submission()', replace: 'print(score)\nmodel.write_submission()' },
    ],
  },
];

export function fakeTask(name = 'fake-task'): ExpertTask & { dir: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'rl-fake-task-'));
  mkdirSync(path.join(dir, 'env'));
  writeFileSync(path.join(dir, 'env', 'train.py'), FAKE_SCRIPT);
  return { dir, spec: { name, metric: { name: 'accuracy', direction: 'maximize' } }, envDir: path.join(dir, 'env'), ideas: FAKE_IDEAS };
}

/** The fake score of a script: 0.5 plus the "# +x" / "# -x" markers; undefined when it "crashes". */
export function fakeScore(script: string): number | undefined {
  if (script.includes('crash()')) return undefined;
  let s = 0.5;
  for (const m of script.matchAll(/# ([+-]\d\.\d+)/g)) s += Number(m[1]);
  return Math.round(s * 1000) / 1000;
}

/** Executes parsed actions on an in-memory train.py, as the real env would. */
export class FakeWorkspace {
  script = FAKE_SCRIPT;
  private history: string[] = [];
  metric: number | null = null;

  step(response: string): ExpertObservation & { done: boolean } {
    const p = parseResponse(response);
    if (!p.ok) return { observation: p.error.observation, done: false };
    const a = p.args as Record<string, string | number>;
    switch (p.action) {
      case 'List Files':
        return { action: p.action, observation: 'data/\ndata_description.txt\ntrain.py', done: false };
      case 'Inspect Script Lines':
        return { action: p.action, observation: this.script.split('\n').slice(Number(a.start_line_number) - 1, Number(a.end_line_number)).join('\n'), done: false };
      case 'Execute Script': {
        const m = fakeScore(this.script);
        if (m === undefined) return { action: p.action, observation: 'Traceback: NameError: crash', outcome: 'error', metric: null, done: false };
        this.metric = m;
        return { action: p.action, observation: `score ${m}`, outcome: 'ok', metric: m, done: false };
      }
      case 'Edit Script Lines':
        this.history.push(this.script);
        this.script = applyLineEdit(this.script, {
          start_line_number: Number(a.start_line_number),
          end_line_number: Number(a.end_line_number),
          new_content: String(a.new_content),
        });
        return { action: p.action, observation: 'The edited file is saved. Here is the diff: ...', done: false };
      case 'Write File':
        this.history.push(this.script);
        this.script = String(a.content);
        return { action: p.action, observation: 'File train.py written successfully.', done: false };
      case 'Undo Edit Script': {
        const prev = this.history.pop();
        if (prev === undefined) return { action: p.action, observation: 'EnvError: there is no edit of train.py to undo', done: false };
        this.script = prev;
        return { action: p.action, observation: `Content of train.py after undo:\n${prev}`, done: false };
      }
      case 'Final Answer':
        return { action: p.action, observation: 'end', done: true };
      default:
        return { action: p.action, observation: `EnvError: the fake env does not do ${p.action}`, done: false };
    }
  }
}
