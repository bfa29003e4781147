import { lstatSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runSandboxed } from '../sandbox/run.js';
import type { ExecutionOutcome } from '../sandbox/types.js';
import { prepareTask, removeTree, type PrepareOptions } from './prepare.js';
import { pythonPrefixPaths } from './python.js';
import type { PreparedTask } from './types.js';
import { createWorkspace, taskSandboxEnv, taskSandboxLimits, taskSandboxPaths } from './workspace.js';

/** What `mlagent tasks baseline NAME --json` prints. */
export interface BaselineReport {
  task: string;
  metric: string;
  direction: 'maximize' | 'minimize';
  /** The graded score, or null when the run failed or the submission was invalid. */
  score: number | null;
  outcome: ExecutionOutcome;
  /** Wall-clock seconds of `python -u train.py`. */
  seconds: number;
  /** Why there is no score (the run's error summary or the grader's complaint); null when outcome is 'ok'. */
  error: string | null;
}

export interface BaselineResult extends BaselineReport {
  stdout: string;
  stderr: string;
}

export interface BaselineOptions extends PrepareOptions {
  /** Keep the workspace (its path is returned as `workspace`) instead of deleting it. */
  keepWorkspace?: boolean;
  /** Replaces env/train.py's text in the workspace (e.g. with ideas applied). */
  trainPy?: string;
  /** Threads for numpy/scikit-learn/torch math (OMP_NUM_THREADS etc.; default 1). */
  threads?: number;
}

/**
 * Prepares a task, copies env/ into a temporary workspace with data/ linked to the public data, runs
 * `python -u train.py` there in the sandbox with the task's budgets, and grades submission.csv.
 */
export async function runBaseline(nameOrDir: string, opts: BaselineOptions = {}): Promise<BaselineResult & { workspace?: string }> {
  // Before prepareTask, which may take minutes: a bad threads would only fail once the data is ready.
  if (opts?.threads !== undefined) taskSandboxEnv(opts.threads);
  const task = await prepareTask(nameOrDir, opts);
  return runInWorkspace(task, opts);
}

/** The run-and-grade half of runBaseline, for an already prepared task. */
export async function runInWorkspace(task: PreparedTask, opts: BaselineOptions = {}): Promise<BaselineResult & { workspace?: string }> {
  const { spec } = task;
  const ws = createWorkspace(task, mkdtempSync(path.join(tmpdir(), `mlagent-${spec.name}-`)));
  try {
    if (opts.trainPy !== undefined) {
      writeFileSync(path.join(ws, 'train.py'), opts.trainPy);
    }
    const python = opts.python ?? '/usr/bin/python3';
    const paths = taskSandboxPaths(task, opts.home);
    const r = await runSandboxed({
      command: [python, '-u', 'train.py'],
      workspace: ws,
      ...taskSandboxLimits(spec.budgets),
      ...paths,
      readOnlyPaths: [...paths.readOnlyPaths, ...pythonPrefixPaths(python)],
      env: taskSandboxEnv(opts.threads),
    });
    const base = { task: spec.name, metric: spec.metric.name, direction: spec.metric.direction, seconds: Math.round(r.wallSeconds * 100) / 100 };
    const io = { stdout: r.stdout, stderr: r.stderr, workspace: opts.keepWorkspace ? ws : undefined };
    if (r.outcome !== 'ok') return { ...base, ...io, score: null, outcome: r.outcome, error: r.errorSummary ?? `the run ended with outcome '${r.outcome}'` };
    // The grader runs outside the sandbox: a submission.csv linked to the hidden answers (their path is in
    // /proc/self/mountinfo) would be graded as the answers themselves, a perfect score. As the episode does.
    const submission = path.join(ws, 'submission.csv');
    const st = lstatOrNull(submission);
    if (st && !st.isFile()) {
      return { ...base, ...io, score: null, outcome: 'invalid-submission', error: 'submission.csv must be a regular file, not a link or a directory' };
    }
    const g = await task.grade(submission);
    if (!g.ok) return { ...base, ...io, score: null, outcome: 'invalid-submission', error: g.error };
    return { ...base, ...io, score: g.score, outcome: 'ok', error: null };
  } finally {
    if (!opts.keepWorkspace) removeTree(ws);
  }
}

function lstatOrNull(p: string) {
  try {
    return lstatSync(p);
  } catch {
    return null;
  }
}
