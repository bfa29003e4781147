import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * A script of packages/policy/bench: found from dist/ or src/bench/ in the repo, and from .device/pkg/ in the
 * device bundle (which copies them to .device/bench/).
 */
export function benchScript(name: string): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const rel of ['../bench', '../../bench']) {
    const p = join(here, rel, name);
    if (existsSync(p)) return p;
  }
  throw new Error(`${name} not found near ${here} (looked in ../bench and ../../bench)`);
}

export interface TorchBenchSource {
  /** Directory with config.json (and the checkpoint unless randomSeed is given). */
  modelDir: string;
  /** Draw the weights on torch's device from this seed instead of reading the checkpoint (7B shapes). */
  randomSeed?: number;
  /** torch dtype of the base matrices (default float32). */
  dtype?: 'float32' | 'float16' | 'bfloat16';
}

/** What every torch bench script prints besides its timings. */
interface TorchBenchInfo {
  threads: number;
  /** The CPU reference's BLAS and kernels ("OpenBLAS 0.3.21, Haswell kernels"), or '' (CUDA, or not OpenBLAS). */
  blas?: string;
  device: string;
  torch: string;
  dtype: string;
}

/**
 * Runs `python script args... [--dtype D] [--random-weights SEED]` and parses the JSON it prints; its stderr
 * lines (progress) go to `onProgress` as they come and are quoted in the error if it fails.
 */
export async function runTorchBench<T>(
  python: string,
  script: string,
  args: readonly (string | number)[],
  src: TorchBenchSource,
  onProgress?: (msg: string) => void,
): Promise<T & TorchBenchInfo & { device: string }> {
  const argv = [benchScript(script), src.modelDir, ...args.map(String)];
  if (src.dtype) argv.push('--dtype', src.dtype);
  if (src.randomSeed !== undefined) argv.push('--random-weights', String(src.randomSeed));
  const child = spawn(python, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => {
    const s = d.toString();
    stderr += s;
    for (const line of s.split('\n')) if (line.trim()) onProgress?.(`  ${line}`);
  });
  // A time limit (`timeout` sends SIGTERM) must not leave torch running on the GPU after we are gone.
  const stop = (signal: NodeJS.Signals) => {
    child.kill('SIGKILL');
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGTERM', stop).once('SIGINT', stop);
  const status = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  })
    .catch((e: Error) => {
      throw new Error(`${script}: could not run ${python}: ${e.message}`);
    })
    .finally(() => process.off('SIGTERM', stop).off('SIGINT', stop));
  if (status !== 0) throw new Error(`${script} failed (exit ${status}):\n${stderr.trim().split('\n').slice(-15).join('\n')}`);
  let out: T & TorchBenchInfo;
  try {
    out = JSON.parse(stdout) as T & TorchBenchInfo;
  } catch {
    throw new Error(`${script} printed no JSON result; its output was:\n${stdout.slice(-2000)}`);
  }
  const where = out.device === 'cpu' ? `cpu (${out.threads} threads${out.blas ? `, ${out.blas}` : ''})` : out.device;
  return { ...out, device: `torch ${out.torch} on ${where}, ${out.dtype}` };
}
