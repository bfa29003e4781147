import { describe, expect, it } from 'vitest';
import { benchTensor, benchValues } from '../src/bench/data.js';
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
});
