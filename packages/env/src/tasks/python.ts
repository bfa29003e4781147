import { spawn } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { SANDBOX_SYSTEM_PATHS, inside } from '../sandbox/isolation.js';
import { MAX_TIMER_MS } from '../timers.js';

export interface PythonRun {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

const KEEP = 64_000;

/**
 * Checks a wall-clock limit given by the caller: a positive number of milliseconds, Infinity for none. NaN, 0 or a
 * negative number would make setTimeout fire at once and every run "time out" straight away.
 */
export function checkTimeoutMs(value: unknown, name: string): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || Number.isNaN(value) || value <= 0) {
    throw new RangeError(`${name} must be a positive number of milliseconds (or Infinity for no limit), got ${String(value)}`);
  }
}

/**
 * What the sandbox must show read-only for an interpreter outside its system directories (a venv, a conda
 * prefix): the prefix above its bin/, as given and as resolved. Nothing for Debian's /usr/bin/python3.
 */
export function pythonPrefixPaths(python: string): string[] {
  if (!path.isAbsolute(python) || !existsSync(python)) return [];
  const prefixes = [python, realpathSync(python)].map((p) => path.dirname(path.dirname(p)));
  return [...new Set(prefixes.filter((d) => d !== '/' && !SANDBOX_SYSTEM_PATHS.some((s) => inside(d, s))))];
}

/** Runs a trusted Python script (prepare.py, grade.py) outside any sandbox, with a wall-clock timeout. */
export function runPython(python: string, args: string[], opts: { cwd: string; timeoutMs: number; onStderr?: (chunk: string) => void }): Promise<PythonRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(python, args, {
      cwd: opts.cwd,
      env: { ...process.env, PYTHONHASHSEED: '0', PYTHONDONTWRITEBYTECODE: '1', MPLBACKEND: 'Agg' },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout = (stdout + c).slice(-KEEP)));
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      stderr = (stderr + c).slice(-KEEP);
      opts.onStderr?.(c);
    });
    // Throws ESRCH when the group is gone: the leader exited and its last child left the group (setsid), which in
    // a timer callback was an uncaught exception that killed the trainer.
    const killGroup = () => {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    };
    let settled = false;
    let exited: { code: number | null; signal: string | null } | undefined;
    let grace: NodeJS.Timeout | undefined;
    const settle = () => {
      if (settled || !exited) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(grace);
      resolve({ ...exited, stdout, stderr, timedOut });
    };
    // Past MAX_TIMER_MS setTimeout would fire after 1 ms, so such a limit (e.g. Infinity) means none.
    const timer =
      opts.timeoutMs > MAX_TIMER_MS
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            // The whole process group: a grader's or preparer's children must not outlive it.
            killGroup();
          }, opts.timeoutMs);
    child.on('error', (e) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new Error(`cannot run ${python}: ${e.message}`));
    });
    // 'close' waits for every holder of the output pipes: a child the script left behind (a detached one included)
    // kept a finished grader "running" until the timeout. At the script's exit its group is killed, and what the
    // pipes hold is read for a moment; a holder outside the group then no longer delays the result.
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      killGroup();
      grace = setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        settle();
      }, EXIT_GRACE_MS);
    });
    child.on('close', (code, signal) => {
      exited ??= { code, signal };
      settle();
    });
  });
}

/** How long output is still read after the script exited, for pipes that its leftover processes hold open. */
const EXIT_GRACE_MS = 1000;

/** The last `n` lines of a text, for error messages. */
export function tail(text: string, n = 15): string {
  return text.trimEnd().split('\n').slice(-n).join('\n');
}
