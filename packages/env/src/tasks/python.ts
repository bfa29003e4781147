import { spawn } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { SANDBOX_SYSTEM_PATHS, inside } from '../sandbox/isolation.js';

export interface PythonRun {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

const KEEP = 64_000;
/** setTimeout's longest delay; a longer one (Infinity included) fires after 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

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
    // Past MAX_TIMER_MS setTimeout would fire after 1 ms, so such a limit (e.g. Infinity) means none.
    const timer =
      opts.timeoutMs > MAX_TIMER_MS
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            // The whole process group: a grader's or preparer's children must not outlive it.
            if (child.pid) process.kill(-child.pid, 'SIGKILL');
          }, opts.timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${python}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}

/** The last `n` lines of a text, for error messages. */
export function tail(text: string, n = 15): string {
  return text.trimEnd().split('\n').slice(-n).join('\n');
}
