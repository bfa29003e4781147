import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Gpu } from '@mlagent/core-kernels';
import { ContextLengthError, NonFiniteError, QwenModel, sequenceLogprobs, type QwenArch } from '../src/index.js';
import { fillTensor, writeModel } from './fixtures.js';

const PYTHON = '/usr/bin/python3';
const ORACLE = resolve(dirname(fileURLToPath(import.meta.url)), '../../../tools/oracle/qwen_oracle.py');

/** Two sequences of different lengths, scored in one padded batch (ids taken modulo the vocabulary). */
const BASE_SEQS = [
  [17, 4242, 99, 151000, 3, 64, 1200],
  [8, 150, 77777, 12],
];

/** log softmax(row / t)[id] and the entropy of softmax(row / t), in float64. */
function scoreRow(row: ArrayLike<number>, id: number, t = 1): { logprob: number; entropy: number } {
  let mx = -Infinity;
  for (let j = 0; j < row.length; j++) mx = Math.max(mx, row[j] / t);
  let sum = 0;
  for (let j = 0; j < row.length; j++) sum += Math.exp(row[j] / t - mx);
  const lse = mx + Math.log(sum);
  let entropy = 0;
  for (let j = 0; j < row.length; j++) {
    const lp = row[j] / t - lse;
    entropy -= Math.exp(lp) * lp;
  }
  return { logprob: row[id] / t - lse, entropy };
}

/** Float64 logits [T, V] of one sequence from the independent PyTorch oracle (raw float64 through a file). */
function oracleRows(dir: string, ids: number[]): Float64Array {
  const out = join(dir, 'oracle-rows.f64');
  const r = spawnSync(PYTHON, [ORACLE, dir, JSON.stringify([ids]), '--out', out], { encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new Error(`oracle ${ORACLE} failed (status ${r.status}): ${r.error?.message ?? ''}\n${r.stderr}`);
  const bytes = readFileSync(out);
  return new Float64Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 8);
}

let gpu: Gpu;
const dirs: string[] = [];

beforeAll(async () => {
  gpu = await Gpu.create();
});

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('sequenceLogprobs', () => {
  // qwen3 bf16 with Qwen's full 152k vocabulary; qwen2 f32 with 4096 tokens (the 152k-row logits of forward, which
  // the comparison needs, cost seconds per pass on lavapipe).
  for (const [arch, seed, dtype, vocabSize] of [
    ['qwen2', 51, 'F32', 4096],
    ['qwen3', 52, 'BF16', undefined],
  ] as [QwenArch, number, 'F32' | 'BF16', number | undefined][]) {
    it(`${arch} ${dtype} (vocabulary ${vocabSize ?? '152k'}): a padded batch matches log-softmax of forward logits and the PyTorch oracle`, async () => {
      const dir = writeModel(arch, seed, dtype, { vocabSize });
      dirs.push(dir);
      const model = await QwenModel.load(gpu, dir);
      const V = model.config.vocabSize;
      const seqs = BASE_SEQS.map((s) => s.map((id) => id % V));
      const got = await sequenceLogprobs(model, seqs);
      // Every intermediate is released (the first call may leave kernel caches, e.g. RoPE tables): checked below.
      const inUse = gpu.memory().inUse;
      let errForward = 0;
      let errOracle = 0;
      let errEntropy = 0;
      for (const [b, seq] of seqs.entries()) {
        expect(got[b].logprobs).toHaveLength(seq.length);
        expect(got[b].logprobs[0]).toBeNull();
        expect(got[b].entropy[0]).toBeNull();
        const logits = model.forward([seq]);
        const ours = await logits.read();
        logits.dispose();
        const ref = oracleRows(dir, seq);
        for (let i = 1; i < seq.length; i++) {
          const lp = got[b].logprobs[i]!;
          const fwd = scoreRow(ours.subarray((i - 1) * V, i * V), seq[i]);
          const orc = scoreRow(ref.subarray((i - 1) * V, i * V), seq[i]);
          errForward = Math.max(errForward, Math.abs(lp - fwd.logprob));
          errOracle = Math.max(errOracle, Math.abs(lp - orc.logprob));
          errEntropy = Math.max(errEntropy, Math.abs(got[b].entropy[i]! - orc.entropy));
          // Random tiny models are far from uniform: the scores must vary and be far below log(1/V) at times.
          expect(lp).toBeLessThan(0);
        }
      }
      console.log(`${arch} ${dtype}: max |logprob err| vs forward ${errForward.toExponential(2)}, vs oracle ${errOracle.toExponential(2)}; entropy ${errEntropy.toExponential(2)}`);
      expect(errForward).toBeLessThanOrEqual(1e-4);
      expect(errOracle).toBeLessThanOrEqual(1e-3);
      expect(errEntropy).toBeLessThanOrEqual(1e-3);
      const spread = got[0].logprobs.slice(1) as number[];
      expect(Math.max(...spread) - Math.min(...spread)).toBeGreaterThan(0.1);

      // Temperature scales the logits before the softmax, as generate() reports logprobs.
      const hot = await sequenceLogprobs(model, [seqs[1]], { temperature: 0.7 });
      expect(gpu.memory().inUse).toBe(inUse);
      const logits = model.forward([seqs[1]]);
      const rows = await logits.read();
      logits.dispose();
      for (let i = 1; i < seqs[1].length; i++) {
        expect(hot[0].logprobs[i]).toBeCloseTo(scoreRow(rows.subarray((i - 1) * V, i * V), seqs[1][i], 0.7).logprob, 4);
      }
      model.dispose();
    });
  }

  it('rejects bad input naming the problem', async () => {
    const dir = writeModel('qwen3', 53);
    dirs.push(dir);
    const model = await QwenModel.load(gpu, dir);
    await expect(sequenceLogprobs(model, [])).rejects.toThrow(/at least one sequence/);
    await expect(sequenceLogprobs(model, [[1, 2], []])).rejects.toThrow(/sequence 1 is empty/);
    await expect(sequenceLogprobs(model, [[1, 200000]])).rejects.toThrow(/token id 200000 at \[0, 1\] is outside the vocabulary/);
    await expect(sequenceLogprobs(model, [[1, 2]], { temperature: 0 })).rejects.toThrow(/temperature must be/);
    const long = sequenceLogprobs(model, [[1], new Array<number>(32769).fill(5)]);
    await expect(long).rejects.toThrow(/sequence 1 has 32769 tokens, more than max_position_embeddings 32768/);
    await expect(long).rejects.toBeInstanceOf(ContextLengthError);
    await expect(long).rejects.toMatchObject({ tokens: 32769, newTokens: 0, context: 32768 });
    // A one-token sequence has nothing to score.
    expect(await sequenceLogprobs(model, [[5]])).toEqual([{ logprobs: [null], entropy: [null] }]);
    model.dispose();
  });
});

describe('sequenceLogprobs with non-finite weights', () => {
  it('fails with a NonFiniteError rather than return NaN (printed as null, like the first position)', async () => {
    const dir = writeModel('qwen2', 54);
    dirs.push(dir);
    fillTensor(dir, 'model.norm.weight', Infinity);
    const model = await QwenModel.load(gpu, dir);
    try {
      const r = sequenceLogprobs(model, [[5], [1, 2, 3]]);
      await expect(r).rejects.toThrow(/^sequenceLogprobs: non-finite log-probability of token 1 of sequence 1;/);
      await expect(r).rejects.toBeInstanceOf(NonFiniteError);
    } finally {
      model.dispose();
    }
  });
});
