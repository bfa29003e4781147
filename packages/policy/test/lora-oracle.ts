import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SeededRng } from '@mlagent/core-kernels';
import type { LoraAdapter } from '../src/index.js';

export const PYTHON = '/usr/bin/python3';
export const ORACLE = resolve(dirname(fileURLToPath(import.meta.url)), '../../../tools/oracle/qwen_oracle.py');

export interface OracleTrainSpec {
  model: string;
  adapter: string | null;
  seqs: number[][];
  dLogprob: number[][];
  dEntropy: number[][];
  temperature?: number;
  value?: { dir: string; dValue: number[][] };
}

export interface OracleTrainResult {
  logprobs: number[][];
  entropies: number[][];
  grads: Record<string, number[]>;
  values?: number[][];
  valueGrads?: Record<string, number[]>;
}

/** Throws with the reason when /usr/bin/python3 cannot import torch (CI installs it; a missing torch must fail). */
export function assertTorch(): void {
  const r = spawnSync(PYTHON, ['-c', 'import torch, numpy; print(torch.__version__)'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    throw new Error(
      `${PYTHON} cannot import torch/numpy, which the LoRA tests compare against (install python3-torch: npm run setup):\n` +
        `${r.error?.message ?? ''}${r.stderr}`,
    );
  }
}

/** Float64 logprobs, entropies and LoRA / value-head gradients from the PyTorch oracle. */
export function oracleTrain(workDir: string, spec: OracleTrainSpec): OracleTrainResult {
  const path = join(workDir, 'oracle-spec.json');
  writeFileSync(path, JSON.stringify(spec));
  const r = spawnSync(PYTHON, [ORACLE, '--train', path], { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (r.error || r.status !== 0) throw new Error(`oracle ${ORACLE} --train failed (status ${r.status}): ${r.error?.message ?? ''}\n${r.stderr}`);
  return JSON.parse(r.stdout) as OracleTrainResult;
}

/** Random ids, one sequence per length. */
export function randomSeqs(rng: SeededRng, lengths: number[], vocab = 3000): number[][] {
  return lengths.map((n) => Array.from({ length: n }, () => rng.int(0, vocab - 1)));
}

/** Random per-token coefficients shaped like `seqs`. */
export function randomCoefs(rng: SeededRng, seqs: number[][], scale = 1): number[][] {
  return seqs.map((s) => Array.from({ length: s.length }, () => scale * rng.normal()));
}

/** Gives every B matrix random values (a fresh adapter's B = 0 would leave every dA zero). */
export function randomizeB(adapter: LoraAdapter, rng: SeededRng, scale = 0.3): void {
  for (const s of adapter.slots()) s.B.write(rng.randn(s.B.size, scale));
}

/** max |ours − ref| / max |ref| over one tensor. */
export function relErr(ours: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (ours.length !== ref.length) throw new Error(`length ${ours.length} vs reference ${ref.length}`);
  let err = 0;
  let scale = 0;
  for (let i = 0; i < ref.length; i++) {
    const e = Math.abs(ours[i] - ref[i]);
    err = Number.isNaN(e) ? Infinity : Math.max(err, e);
    scale = Math.max(scale, Math.abs(ref[i]));
  }
  return scale > 0 ? err / scale : err;
}

/** Max absolute difference between per-token arrays, skipping index 0 when `skipFirst`. */
export function maxAbsDiff(ours: ArrayLike<number>[], ref: number[][], skipFirst = true): number {
  let m = 0;
  ref.forEach((r, b) => {
    if (ours[b].length !== r.length) throw new Error(`sequence ${b}: ${ours[b].length} values vs reference ${r.length}`);
    for (let t = skipFirst ? 1 : 0; t < r.length; t++) {
      const e = Math.abs(ours[b][t] - r[t]);
      m = Number.isNaN(e) ? Infinity : Math.max(m, e);
    }
  });
  return m;
}
