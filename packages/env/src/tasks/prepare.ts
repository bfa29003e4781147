import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { makeDirsSync } from '../fs/make-dirs.js';
import { gradeSubmission } from './grade.js';
import { hashDirectory } from './hash.js';
import { corpusSourceDir, DEFAULT_PYTHON, taskCacheDir } from './paths.js';
import { checkTimeoutMs, runPython, tail } from './python.js';
import { resolveTask } from './registry.js';
import { loadIdeas, MAX_TASK_SEED } from './spec.js';
import type { PreparedTask } from './types.js';
import { pidAlive } from '../sandbox/pid-alive.js';

export interface PrepareOptions {
  /** `$MLAGENT_HOME` override. */
  home?: string;
  /** The Python that runs prepare.py and grade.py (default /usr/bin/python3). */
  python?: string;
  /** Overrides task.json's seed (a different seed is a different cache entry). */
  seed?: number;
  /** `--source` for prepare.py: the node_modules directory holding the @stdlib corpora (default: resolved). */
  source?: string;
  /** Wall-clock limit for prepare.py (default 10 minutes). */
  prepareTimeoutMs?: number;
  /** Wall-clock limit for one grade.py run (default 2 minutes). */
  gradeTimeoutMs?: number;
  /** Progress lines (e.g. "preparing house-prices ..."); prepare.py's stderr is passed through too. */
  onProgress?: (line: string) => void;
}

const inFlight = new Map<string, Promise<void>>();

/**
 * Makes every file read-only (0444) and every directory 0555. Names as bytes: a name prepare.py wrote that is not
 * UTF-8 could not be found again decoded (ENOENT), which failed the whole preparation.
 */
function makeReadOnly(p: Buffer): void {
  const st = lstatSync(p);
  if (st.isSymbolicLink()) return;
  if (st.isDirectory()) {
    for (const n of readdirSync(p, { encoding: 'buffer' })) makeReadOnly(Buffer.concat([p, Buffer.from('/'), n]));
    chmodSync(p, 0o555);
  } else chmodSync(p, 0o444);
}

/** rm -rf that also works on prepared trees made read-only (e.g. to clear `$MLAGENT_HOME/cache/tasks`). */
export function removeTree(p: string): void {
  if (!existsSync(p)) return;
  // Names as bytes: decoded, one that is not UTF-8 (prepare.py may write such) could not be found again (ENOENT).
  const unlock = (q: Buffer) => {
    const st = lstatSync(q);
    if (!st.isDirectory()) return;
    chmodSync(q, 0o755);
    for (const n of readdirSync(q, { encoding: 'buffer' })) unlock(Buffer.concat([q, Buffer.from('/'), n]));
  };
  unlock(Buffer.from(p));
  rmSync(p, { recursive: true, force: true });
}

/**
 * Removes temp dirs left by prepare runs whose process has died, of every cache key: one of a task since edited
 * (another key) was never looked at again, and kept a killed preparation's data for ever.
 */
function removeStaleTemps(root: string): void {
  for (const n of readdirSync(root)) {
    const m = /^\.tmp-.+-(\d+)-[^-]+$/.exec(n);
    if (m && !pidAlive(Number(m[1]))) removeTree(path.join(root, n));
  }
}

async function runPrepare(dir: string, name: string, root: string, key: string, seed: number, opts: PrepareOptions): Promise<void> {
  const final = path.join(root, key);
  if (existsSync(final)) return;
  // Under $MLAGENT_HOME, the user's path: a bad one must fail, not hang as Node's recursive mkdir can (see makeDirs).
  makeDirsSync(root);
  removeStaleTemps(root);
  const tmp = path.join(root, `.tmp-${key}-${process.pid}-${randomBytes(4).toString('hex')}`);
  makeDirsSync(path.join(tmp, 'public'));
  // Only the trainer's uid may enter: a run dropped to another uid without bwrap (level 'none') must not read answers.
  mkdirSync(path.join(tmp, 'private'), { mode: 0o700 });
  const python = opts.python ?? DEFAULT_PYTHON;
  const args = [path.join(dir, 'prepare.py'), '--public', path.join(tmp, 'public'), '--private', path.join(tmp, 'private'), '--seed', String(seed)];
  const source = opts.source ?? corpusSourceDir();
  if (source) args.push('--source', source);
  opts.onProgress?.(`preparing ${name} (seed ${seed}) into ${final}`);
  const started = Date.now();
  try {
    const r = await runPython(python, args, {
      cwd: dir,
      timeoutMs: opts.prepareTimeoutMs ?? 600_000,
      onStderr: opts.onProgress ? (c) => c.trimEnd() && opts.onProgress?.(c.trimEnd()) : undefined,
    });
    if (r.timedOut) throw new Error(`prepare.py of task '${name}' timed out after ${(opts.prepareTimeoutMs ?? 600_000) / 1000} s`);
    if (r.code !== 0) throw new Error(`prepare.py of task '${name}' failed (exit ${r.code ?? r.signal}):\n${tail(r.stderr || r.stdout)}`);
    if (readdirSync(path.join(tmp, 'public')).length === 0) throw new Error(`prepare.py of task '${name}' wrote nothing into --public`);
    makeReadOnly(Buffer.from(path.join(tmp, 'public')));
    try {
      renameSync(tmp, final);
    } catch (e) {
      // Another process finished the same key first: its copy is complete, keep it.
      const code = (e as NodeJS.ErrnoException).code;
      if ((code !== 'ENOTEMPTY' && code !== 'EEXIST') || !existsSync(final)) throw e;
      removeTree(tmp);
    }
    opts.onProgress?.(`prepared ${name} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  } catch (e) {
    removeTree(tmp);
    throw e;
  }
}

/** Checks the options up front, naming the bad one: after minutes of prepare.py is no time to find them wrong. */
function checkPrepareOptions(opts: PrepareOptions): void {
  if (opts === null || typeof opts !== 'object') throw new TypeError(`prepareTask: options must be an object, got ${String(opts)}`);
  // As task.json's seed: a NaN or 1.5 here failed inside prepare.py's argument parser, 2^40 inside numpy's.
  if (opts.seed !== undefined && (typeof opts.seed !== 'number' || !Number.isInteger(opts.seed) || opts.seed < 0)) {
    throw new RangeError(`prepareTask: seed must be a non-negative integer, got ${String(opts.seed)}`);
  }
  if (opts.seed !== undefined && opts.seed > MAX_TASK_SEED) {
    throw new RangeError(`prepareTask: seed must be at most ${MAX_TASK_SEED} (numpy's seed range), got ${String(opts.seed)}`);
  }
  checkTimeoutMs(opts.prepareTimeoutMs, 'prepareTask: prepareTimeoutMs');
  checkTimeoutMs(opts.gradeTimeoutMs, 'prepareTask: gradeTimeoutMs');
  if (opts.python !== undefined && (typeof opts.python !== 'string' || opts.python === '')) {
    throw new TypeError(`prepareTask: python must be the path of a Python interpreter, got ${JSON.stringify(opts.python) ?? String(opts.python)}`);
  }
}

/**
 * Resolves a task (name or directory), runs its prepare.py once per (task contents, seed) into
 * `$MLAGENT_HOME/cache/tasks/<name>-<hash>/{public,private}` and returns everything an episode needs.
 * Preparation is atomic: it happens in a temp directory renamed into place, so concurrent callers and killed
 * runs never see partial data. Throws when the task is malformed or prepare.py fails.
 */
export async function prepareTask(nameOrDir: string, opts: PrepareOptions = {}): Promise<PreparedTask> {
  checkPrepareOptions(opts);
  const { spec, dir } = resolveTask(nameOrDir, { home: opts.home });
  const ideas = loadIdeas(dir);
  const seed = opts.seed ?? spec.seed;
  const key = `${spec.name}-${hashDirectory(dir, `seed=${seed}`).slice(0, 16)}`;
  const root = taskCacheDir(opts.home);
  const final = path.join(root, key);
  if (!existsSync(final)) {
    let job = inFlight.get(final);
    if (!job) {
      job = runPrepare(dir, spec.name, root, key, seed, opts).finally(() => inFlight.delete(final));
      inFlight.set(final, job);
    }
    await job;
  }
  const python = opts.python ?? DEFAULT_PYTHON;
  const privateDir = path.join(final, 'private');
  // Entries only appear complete (renamed into place), so a part missing was removed since (e.g. an interrupted
  // removeTree of the cache): the episode would fail later on its data with no word of why.
  for (const part of [path.join(final, 'public'), privateDir]) {
    if (!existsSync(part)) throw new Error(`the prepared data of task '${spec.name}' at ${final} is incomplete (${path.basename(part)}/ is missing); remove ${final} (removeTree) to prepare it again`);
  }
  return {
    spec: { ...spec, seed },
    dir,
    researchProblem: readFileSync(path.join(dir, 'research_problem.md'), 'utf8'),
    dataDescription: readFileSync(path.join(dir, 'data_description.md'), 'utf8'),
    envDir: path.join(dir, 'env'),
    publicDir: path.join(final, 'public'),
    privateDir,
    ideas,
    grade: (submissionPath: string) => gradeSubmission(dir, privateDir, submissionPath, { python, timeoutMs: opts.gradeTimeoutMs }),
  };
}
