import { describe, expect, it } from 'vitest';
import { ShapeError, add } from '../src/index.js';
import { addRef } from '../src/reference/add.js';
import { CPU_STRIDE_WORKGROUPS } from '../src/kernels/wgsl.js';
import { Rng, awkwardSizes, expectClose, freshGpu, testGpu } from './helpers.js';

describe('add', () => {
  it('matches the float64 reference on awkward sizes, vec4 and element-wise, f32 and f16', async () => {
    const gpu = await testGpu();
    const rng = new Rng(31);
    // Past CPU_STRIDE_WORKGROUPS · 256 items each invocation loops over several; below it each takes one or none.
    const big = CPU_STRIDE_WORKGROUPS * 256 * 4 * 3 + 8;
    for (const n of [1, 3, 4, 8, 1021, 1024, big, big + 3, ...awkwardSizes(rng, 4, 70000)]) {
      for (const dtype of gpu.features.shaderF16 ? (['f32', 'f16'] as const) : (['f32'] as const)) {
        // Values exact in f16, so the sum is exact in either dtype.
        const a = rng.randn(n).map((x) => Math.round(x * 64) / 64);
        const b = rng.randn(n).map((x) => Math.round(x * 64) / 64);
        const ta = gpu.tensor([n], dtype, a);
        const tb = gpu.tensor([n], dtype, b);
        const y = add(gpu, ta, tb);
        expectClose(await y.read(), addRef(a, b), { atol: 0, rtol: 0 }, `add ${dtype} n=${n}`);
        for (const t of [ta, tb, y]) t.dispose();
      }
    }
  });

  it('refuses an out in the buffer of a or b before recording anything (a read would fail the whole batch)', async () => {
    const gpu = await testGpu();
    const x = gpu.tensor([2, 4], 'f32', [1, 2, 3, 4, 5, 6, 7, 8]);
    const y = gpu.tensor([2, 4], 'f32', [1, 1, 1, 1, 1, 1, 1, 1]);
    const before = gpu.memory().inUse;
    // In place, into b, through a reshaped view, and into other rows of a's buffer.
    for (const [a, b, out] of [[x, x, x], [x, y, y], [x, y, x.reshape([1, 2, 4])], [x.rows(0, 1), y.rows(0, 1), x.rows(1, 1)]]) {
      const fn = () => add(gpu, a, b, out);
      expect(fn).toThrowError(ShapeError);
      expect(fn).toThrowError(/add output must not alias a or b \[op=add shapes=f32\[.*\] \+ f32\[.*\] -> f32/);
    }
    expect(gpu.memory().inUse).toBe(before);
    // Reading the same buffer twice is fine; so is the batch after the refusals.
    expect(Array.from(await add(gpu, x, x).read())).toEqual([2, 4, 6, 8, 10, 12, 14, 16]);
  });

  it('adds window by window where the tensors exceed a binding', async () => {
    const gpu = await freshGpu({ maxBindingBytes: 4096 });
    try {
      const rng = new Rng(32);
      for (const n of [10000, 10003]) {
        expect(gpu.windows(n, 4, 4).length).toBeGreaterThan(5);
        const a = rng.randn(n);
        const b = rng.randn(n);
        const y = add(gpu, gpu.tensor([n], 'f32', a), gpu.tensor([n], 'f32', b));
        expectClose(await y.read(), addRef(a, b), { atol: 1e-6, rtol: 1e-6 }, `windowed add n=${n}`);
      }
    } finally {
      gpu.destroy();
    }
  });
});
