// Execute Script: runs the agent's script in the sandbox with the task's budgets, then grades submission.csv
// outside the sandbox when the run wrote one.
import { constants as fsConstants, promises as fs, type Stats } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runSandboxed } from '../sandbox/run.js';
import type { SandboxPool } from '../sandbox/pool.js';
import type { SandboxOptions, SandboxResult } from '../sandbox/types.js';
import type { PreparedTask } from '../tasks/types.js';
import { envPythonDir } from '../tasks/paths.js';
import { taskSandboxEnv, taskSandboxLimits } from '../tasks/workspace.js';
import { mib } from './file-actions.js';
import { EnvError, isDataPath, resolveForRead, type WorkspaceRoots } from './paths.js';
import type { StepOutcome } from './types.js';

/** The file the grader reads, in the workspace root. */
export const SUBMISSION_FILE = 'submission.csv';

export interface ExecuteContext {
  task: PreparedTask;
  roots: WorkspaceRoots;
  hiddenPaths: string[];
  pool?: SandboxPool;
  threads?: number;
}

export interface ExecuteResult {
  observation: string;
  outcome: StepOutcome;
  metric: number | null;
  durationSec: number;
  submissionWritten: boolean;
  /** Milestones the run reached before it ended (python/milestones/sitecustomize.py records them). */
  dataLoaded: boolean;
  modelTrained: boolean;
}

/** Where the milestone hook writes, relative to the workspace; removed before and after every run. */
const MILESTONES_FILE = '.mlagent-milestones';

function milestonesHookDir(): string {
  return path.join(envPythonDir(), 'milestones');
}

async function readMilestones(file: string): Promise<{ dataLoaded: boolean; modelTrained: boolean }> {
  // The hook writes a few short lines; a script may have put anything there: a link (not followed), a FIFO (opened
  // without blocking, then refused), a large file (ignored).
  let text = '';
  const fh = await fs.open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK).catch(() => null);
  if (fh) {
    try {
      const st = await fh.stat();
      if (st.isFile() && st.size > 0 && st.size <= 4096) {
        const buf = Buffer.alloc(st.size);
        const { bytesRead } = await fh.read(buf, 0, st.size, 0);
        text = buf.subarray(0, bytesRead).toString('utf8');
      }
    } catch {
      text = '';
    } finally {
      await fh.close();
    }
  }
  await fs.rm(file, { force: true });
  const marks = new Set(text.split('\n').map((l) => l.trim()));
  return { dataLoaded: marks.has('dataLoaded'), modelTrained: marks.has('modelTrained') };
}

function fingerprint(st: Stats | null): string {
  return st ? `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}` : 'absent';
}

/**
 * The workspace's own absolute path, as Python's tracebacks and warnings print it, made relative: `<ws>/x` becomes
 * `x` and `<ws>` alone `.`. The path holds the run's output directory and a random name, so without this the same
 * run in another directory would show the policy other text and sample differently; it is also the host's layout.
 */
export function hideWorkspacePath(text: string, workspace: string): string {
  // Only the whole path: not inside a longer one, and not the start of a longer name.
  const at = new RegExp(`(?<![\\w./-])${workspace.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(/|(?![\\w.-]))`, 'g');
  return text.replace(at, (_, slash: string) => (slash ? '' : '.'));
}

function output(r: SandboxResult, workspace: string): string {
  const parts = [r.stdout, r.stderr].filter((s) => s.trim() !== '');
  return parts.length === 0 ? '(no output)' : hideWorkspacePath(parts.join(r.stdout.endsWith('\n') ? '' : '\n'), workspace);
}

function failureObservation(r: SandboxResult, task: PreparedTask, workspace: string): { observation: string; outcome: StepOutcome } {
  const b = task.spec.budgets;
  const tail = `\nOutput before it stopped:\n${output(r, workspace)}`;
  switch (r.outcome) {
    case 'timeout':
      return { outcome: 'timeout', observation: `EnvError: The script did not finish within ${b.timeoutSec} seconds and was stopped.${tail}` };
    case 'oom':
      return { outcome: 'oom', observation: `EnvError: The script ran out of memory (limit ${b.memoryMb} MiB) and was stopped.${tail}` };
    case 'killed':
      if (r.diskLimit !== undefined) return { outcome: 'resource-limit', observation: `EnvError: ${r.errorSummary ?? r.diskLimit}${tail}` };
      if (r.signal === 'SIGXCPU' || r.signal === 'SIGXFSZ') {
        const what = r.signal === 'SIGXCPU' ? `its CPU-time limit (${b.cpuSec} s)` : 'the largest file size it may write';
        return { outcome: 'resource-limit', observation: `EnvError: The script exceeded ${what} and was stopped.${tail}` };
      }
      return {
        outcome: 'killed',
        observation: `EnvError: The script was killed (${r.errorSummary ?? r.signal ?? 'killed'}; at most ${b.maxProcs} processes and threads are allowed).${tail}`,
      };
    default: {
      // A crash by signal (a segfault, an abort) may print nothing: say how it ended.
      const crash = r.signal !== null ? `\nThe script crashed: it was ended by ${r.signal}.` : '';
      return { outcome: 'error', observation: `The script has been executed. Here is the output:\n${output(r, workspace)}${crash}` };
    }
  }
}

const submissionLimits = new WeakMap<PreparedTask, Promise<number>>();

/** The largest submission.csv graded: 16x the bytes of the task's hidden answers, plus 1 MiB (measured once a task). */
function maxSubmissionBytes(task: PreparedTask): Promise<number> {
  let limit = submissionLimits.get(task);
  if (!limit) {
    limit = answersBytes(task.privateDir).then((answers) => 2 ** 20 + 16 * answers);
    submissionLimits.set(task, limit);
  }
  return limit;
}

async function answersBytes(dir: string): Promise<number> {
  let bytes = 0;
  for (const e of await fs.readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) bytes += await answersBytes(p);
    else if (e.isFile()) bytes += (await fs.stat(p).catch(() => null))?.size ?? 0;
  }
  return bytes;
}

/** Grades a copy of submission.csv, so the grader never follows a link the agent planted. */
async function grade(task: PreparedTask, workspace: string): Promise<{ score: number } | { error: string }> {
  const file = path.join(workspace, SUBMISSION_FILE);
  const st = await fs.lstat(file);
  if (!st.isFile()) return { error: `${SUBMISSION_FILE} must be a regular file, not a link or a directory` };
  // The grader runs outside the sandbox, with no memory limit: a huge submission must not reach it.
  const max = await maxSubmissionBytes(task);
  if (st.size > max) {
    return { error: `${SUBMISSION_FILE} is ${mib(st.size)}; a submission for this task may be at most ${mib(max)} (16 times the size of its answers, plus 1 MiB)` };
  }
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mlagent-grade-'));
  try {
    const copy = path.join(dir, SUBMISSION_FILE);
    await fs.copyFile(file, copy);
    const g = await task.grade(copy);
    return g.ok ? { score: g.score } : { error: g.error };
  } catch (e) {
    // A grader that crashes is a task bug (see gradeSubmission); the agent still gets an observation.
    console.warn(`mlagent env: the grader of task '${task.spec.name}' failed: ${(e as Error).message}`);
    // Its message holds the grader's output and the host's paths, which are not the agent's to read.
    return { error: 'the grader failed on this submission (a task error, logged by the trainer)' };
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

let warned = false;

/** Says once per process when the agent's code ran without the guarantees the tasks rely on. */
function warnOnce(r: SandboxResult): void {
  if (warned || r.warnings.length === 0) return;
  warned = true;
  const risk = r.isolation === 'bwrap' ? '' : ' (the hidden answers may be readable)';
  console.warn(`mlagent env: agent code runs with isolation '${r.isolation}': ${r.warnings.join('; ')}${risk}`);
}

export async function executeScript(ctx: ExecuteContext, scriptName: unknown): Promise<ExecuteResult> {
  const { rel, abs } = await resolveForRead(ctx.roots, scriptName, 'script_name');
  if (isDataPath(rel)) throw new EnvError(`script_name "${rel}" is in data/; only scripts of the workspace can be run`);
  if (!(await fs.stat(abs)).isFile()) throw new EnvError(`script_name "${rel}" is not a file`);
  const submission = path.join(ctx.roots.workspace, SUBMISSION_FILE);
  const before = fingerprint(await fs.lstat(submission).catch(() => null));
  const milestonesFile = path.join(ctx.roots.workspace, MILESTONES_FILE);
  await fs.rm(milestonesFile, { force: true }); // a file the agent left there must not count
  const opts: SandboxOptions = {
    command: ['/usr/bin/python3', '-u', `./${rel}`],
    workspace: ctx.roots.workspace,
    ...taskSandboxLimits(ctx.task.spec.budgets),
    // The milestone hook is bound in explicitly: the sandbox's /tmp is a fresh tmpfs, and a checkout may live there.
    readOnlyPaths: [ctx.roots.publicDir, milestonesHookDir()],
    hiddenPaths: ctx.hiddenPaths,
    env: { ...taskSandboxEnv(ctx.threads), PYTHONPATH: milestonesHookDir(), MLAGENT_MILESTONES_FILE: MILESTONES_FILE },
  };
  const r = ctx.pool ? await ctx.pool.run(opts) : await runSandboxed(opts);
  warnOnce(r);
  const after = await fs.lstat(submission).catch(() => null);
  const submissionWritten = after !== null && fingerprint(after) !== before;
  const base = { durationSec: r.wallSeconds, submissionWritten, ...(await readMilestones(milestonesFile)) };
  if (r.outcome !== 'ok') return { ...base, ...failureObservation(r, ctx.task, ctx.roots.workspace), metric: null };
  const observation = `The script has been executed. Here is the output:\n${output(r, ctx.roots.workspace)}`;
  if (!submissionWritten) return { ...base, observation, outcome: 'ok', metric: null };
  const g = await grade(ctx.task, ctx.roots.workspace);
  if ('error' in g) {
    return { ...base, observation: `${observation}\nEnvError: ${SUBMISSION_FILE} is not a valid submission: ${g.error}`, outcome: 'invalid-submission', metric: null };
  }
  return { ...base, observation, outcome: 'ok', metric: g.score };
}
