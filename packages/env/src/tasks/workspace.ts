import { cpSync, existsSync, lstatSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { makeDirsSync } from '../fs/make-dirs.js';
import type { SandboxOptions } from '../sandbox/types.js';
import { builtinTasksDir, taskCacheDir, userTasksDir } from './paths.js';
import { DEFAULT_DISK_MB } from './spec.js';
import type { PreparedTask, TaskBudgets } from './types.js';

/**
 * Fills `dir` (created if needed) with a fresh episode workspace: a copy of the task's env/ (symlinks kept as
 * links), data_description.txt, and `data` → the read-only public data.
 */
export function createWorkspace(task: PreparedTask, dir: string): string {
  makeDirsSync(dir);
  cpSync(task.envDir, dir, { recursive: true, verbatimSymlinks: true });
  writeFileSync(path.join(dir, 'data_description.txt'), task.dataDescription);
  const data = path.join(dir, 'data');
  // lstat, not existsSync: a dangling link named data (env/data -> somewhere gone) failed in symlink with EEXIST.
  if (lstatOrNull(data)) throw new Error(`task '${task.spec.name}': env/ must not contain 'data' (the public data is mounted there)`);
  symlinkSync(task.publicDir, data);
  return dir;
}

function lstatOrNull(p: string) {
  try {
    return lstatSync(p);
  } catch {
    return null;
  }
}

/**
 * The sandbox paths for running the agent's code on a prepared task: the public data read-only; every task
 * source directory (prepare.py could regenerate answers) and every prepared private/ dir hidden.
 */
export function taskSandboxPaths(task: PreparedTask, home?: string): { readOnlyPaths: string[]; hiddenPaths: string[] } {
  const hidden = [builtinTasksDir(), userTasksDir(home), task.dir, task.privateDir];
  const cache = taskCacheDir(home);
  if (existsSync(cache)) {
    for (const n of readdirSync(cache)) {
      const p = path.join(cache, n, 'private');
      if (existsSync(p)) hidden.push(p);
    }
  }
  // A path inside another hidden one is already masked (and bwrap cannot mount onto a masked tree).
  const existing = [...new Set(hidden.filter((p) => existsSync(p)).map((p) => path.resolve(p)))];
  const outermost = existing.filter((p) => !existing.some((q) => q !== p && p.startsWith(q + path.sep)));
  return { readOnlyPaths: [task.publicDir], hiddenPaths: outermost };
}

/** The sandbox limits of one run of the agent's code under a task's budgets. */
export function taskSandboxLimits(
  b: TaskBudgets,
): Pick<SandboxOptions, 'timeoutMs' | 'memoryBytes' | 'cpuSeconds' | 'maxProcesses' | 'diskBytes' | 'maxWorkspaceFiles'> {
  return {
    timeoutMs: b.timeoutSec * 1000,
    memoryBytes: b.memoryMb * 2 ** 20,
    cpuSeconds: b.cpuSec,
    maxProcesses: b.maxProcs,
    diskBytes: (b.diskMb ?? DEFAULT_DISK_MB) * 2 ** 20,
    maxWorkspaceFiles: TASK_WORKSPACE_FILES,
  };
}

/**
 * Entries a task's workspace may hold. Every step's saved state walks and hashes the workspace, outside the run's
 * time limit: 99,000 small files cost the trainer 43 s on the development VM (session 33), so an episode's
 * workspace gets a fifth of the sandbox's default; the data stays outside it, behind the data link.
 */
export const TASK_WORKSPACE_FILES = 20_000;

/**
 * Environment for the agent's code: math libraries pinned to `threads` threads, and on x86-64 hosts with AVX2 to
 * their AVX2 kernels (cpuKernelPins). OpenMP otherwise starts one thread per host CPU it sees, which on a shared
 * or CPU-limited machine makes e.g. scikit-learn's histogram boosting 10-20x slower than single-threaded, and
 * makes timings erratic.
 */
export function taskSandboxEnv(threads = 1): Record<string, string> {
  // Math.max(1, NaN) is NaN: the agent's code would get OMP_NUM_THREADS=NaN, which the libraries warn about and ignore.
  if (typeof threads !== 'number' || !Number.isFinite(threads)) throw new RangeError(`threads must be a finite number >= 1, got ${String(threads)}`);
  const n = String(Math.max(1, Math.floor(threads)));
  return { OMP_NUM_THREADS: n, OPENBLAS_NUM_THREADS: n, MKL_NUM_THREADS: n, NUMEXPR_NUM_THREADS: n, ...cpuKernelPins() };
}

let hostHasAvx2: boolean | undefined;

/**
 * The same code must score the same on every host: task.json's baselines, and the reward's metric gains, are
 * compared across machines. torch, oneDNN and OpenBLAS each pick their kernels by the CPU, and kernels of another
 * width sum in another order: on session 29's Intel host (torch and oneDNN chose AVX-512; OpenBLAS 0.3.21, not
 * knowing the model, its SSE3 fallback) the image-classification baseline (a seeded, single-threaded CNN) scored
 * 0.327, against 0.318 on AMD hosts (AVX2 kernels) and 0.32 on session 30's AMD host with AVX-512; with the three
 * pinned to AVX2 it scores 0.318 on all of them. Empty
 * where the host has no AVX2 (pinning OpenBLAS to Haswell there would fault) or is not x86-64, and where
 * MLAGENT_CPU_KERNEL_PINS=off leaves the kernels to each library's own choice for the host.
 */
export function cpuKernelPins(): Record<string, string> {
  if (process.env.MLAGENT_CPU_KERNEL_PINS === 'off') return {};
  if (hostHasAvx2 === undefined) {
    try {
      hostHasAvx2 = process.arch === 'x64' && /^flags\s*:.*\bavx2\b/m.test(readFileSync('/proc/cpuinfo', 'utf8'));
    } catch {
      hostHasAvx2 = false;
    }
  }
  return hostHasAvx2 ? { ...AVX2_PINS } : {};
}

const AVX2_PINS: Record<string, string> = { ATEN_CPU_CAPABILITY: 'avx2', ONEDNN_MAX_CPU_ISA: 'AVX2', DNNL_MAX_CPU_ISA: 'AVX2', OPENBLAS_CORETYPE: 'Haswell' };
/** The variables cpuKernelPins may set. */
export const CPU_KERNEL_PIN_VARS: readonly string[] = Object.keys(AVX2_PINS);
