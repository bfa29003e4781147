import { describe, expect, it } from 'vitest';
import { benchNormalValues, benchTensor, benchValues } from '../src/bench/data.js';
import { roundToF16 } from '../src/index.js';
import { testGpu } from './helpers.js';

describe('benchmark inputs', () => {
  it('fill every element with benchValues, small tensors directly and big ones by repeating a block on the GPU', async () => {
    const gpu = await testGpu();
    const small = benchTensor(gpu, [3, 5], 'f32', 2, 9);
    expect(Array.from(await small.read())).toEqual(Array.from(benchValues(15, 2, 9)));
    const block = 1 << 20;
    for (const dtype of ['f32', 'f16'] as const) {
      // 2.5 blocks: two whole copies and a partial one.
      const n = block * 2 + block / 2;
      const big = benchTensor(gpu, [n / 64, 64], dtype, 2, 3);
      const got = await big.read();
      const want = dtype === 'f16' ? roundToF16(benchValues(block, 2, 3)) : benchValues(block, 2, 3);
      for (const at of [0, block - 1, block, 2 * block + 7, n - 1]) expect(got[at], `${dtype} element ${at}`).toBe(want[at % block]);
      let zeros = 0;
      for (let i = 0; i < n; i++) if (got[i] === 0) zeros++;
      expect(zeros).toBe(0);
      big.dispose();
    }
    small.dispose();
  });

  it('benchNormalValues are deterministic, finite and normal with the asked standard deviation', () => {
    const n = 200001;
    const x = benchNormalValues(n, 3, 7);
    expect(Array.from(benchNormalValues(11, 3, 7))).toEqual(Array.from(x.subarray(0, 11)));
    expect(Array.from(benchNormalValues(11, 3, 8))).not.toEqual(Array.from(x.subarray(0, 11)));
    let sum = 0;
    let sq = 0;
    let within1 = 0;
    let bad = 0;
    for (const v of x) {
      if (!Number.isFinite(v)) bad++;
      sum += v;
      sq += v * v;
      if (Math.abs(v) <= 3) within1++;
    }
    expect(bad).toBe(0);
    const mean = sum / n;
    const sd = Math.sqrt(sq / n - mean * mean);
    expect(Math.abs(mean)).toBeLessThan(0.03);
    expect(Math.abs(sd - 3)).toBeLessThan(0.03);
    // One standard deviation holds 68.27% of a normal distribution (a uniform one would give 57.7% here).
    expect(Math.abs(within1 / n - 0.6827)).toBeLessThan(0.005);
  });
});
