import { afterAll, describe, expect, it } from 'vitest';
import { ShapeError, roundToF16, type Gpu } from '../src/index.js';
import { ROPE_MAX_POSITION, rope, ropeBackward, ropeQK } from '../src/kernels/rope.js';
import { ropeBackwardRef, ropeRef } from '../src/reference/rope.js';
import { Rng, checkDirectional, dot, expectClose, freshGpu, testGpu } from './helpers.js';

const f64 = (a: ArrayLike<number>) => Float64Array.from(a) as unknown as Float32Array;

/** Per-token positions of a [B, T] batch whose sequence b starts at starts[b] (plus offset). */
function seqPositions(starts: number[], t: number, offset = 0): Int32Array {
  const out = new Int32Array(starts.length * t);
  starts.forEach((s, b) => {
    for (let i = 0; i < t; i++) out[b * t + i] = s + i + offset;
  });
  return out;
}

describe('rope', () => {
  it('matches the float64 reference with per-token positions over awkward shapes', async () => {
    const gpu = await testGpu();
    const rng = new Rng(21);
    for (const [b, t, h, d] of [[1, 1, 1, 2], [2, 3, 3, 6], [1, 17, 2, 34], [3, 5, 7, 130], [1, 9, 28, 128]]) {
      const x = rng.randn(b * t * h * d);
      const pos = Int32Array.from({ length: b * t }, () => rng.int(0, 5000));
      const tx = gpu.tensor([b, t, h, d], 'f32', x);
      const tp = gpu.tensor([b, t], 'i32', pos);
      const y = rope(gpu, tx, { theta: 1e4, positions: tp });
      const dy = rng.randn(x.length);
      const dx = ropeBackward(gpu, gpu.tensor([b, t, h, d], 'f32', dy), { theta: 1e4, positions: tp });
      const what = `[${b},${t},${h},${d}]`;
      expectClose(await y.read(), ropeRef(x, pos, h, d, 1e4), { atol: 2e-6, rtol: 2e-6 }, `y ${what}`);
      expectClose(await dx.read(), ropeBackwardRef(dy, pos, h, d, 1e4), { atol: 2e-6, rtol: 2e-6 }, `dx ${what}`);
    }
  });

  it('keeps angles accurate at large positions (theta 1e6, up to the 2^20 limit)', async () => {
    // An f32 angle would be off by up to |angle|·2^-24: ~2e-3 at 32768, ~0.03 near 2^20. The tables keep ~1e-6.
    const gpu = await testGpu();
    const rng = new Rng(22);
    const [h, d] = [2, 128];
    const pos = Int32Array.from([0, 1, 1023, 1024, 32767, 32768, 131071, 500_000, ROPE_MAX_POSITION]);
    const x = rng.randn(pos.length * h * d);
    const y = rope(gpu, gpu.tensor([pos.length, h, d], 'f32', x), { theta: 1e6, positions: gpu.tensor([pos.length], 'i32', pos) });
    expectClose(await y.read(), ropeRef(x, pos, h, d, 1e6), { atol: 3e-6, rtol: 3e-6 });
  });

  it('takes a start per sequence, an offset, or neither (decode and prefill)', async () => {
    const gpu = await testGpu();
    const rng = new Rng(23);
    const [b, t, h, d] = [3, 4, 2, 10];
    const x = rng.randn(b * t * h * d);
    const tx = gpu.tensor([b, t, h, d], 'f32', x);
    const starts = [0, 7, 40000];
    const cases: Array<[Parameters<typeof rope>[2], Int32Array]> = [
      [{ theta: 1e4, positions: gpu.tensor([b], 'i32', starts) }, seqPositions(starts, t)],
      [{ theta: 1e4, positions: gpu.tensor([b], 'i32', starts), offset: 5 }, seqPositions(starts, t, 5)],
      [{ theta: 1e4, offset: 123 }, seqPositions([123, 123, 123], t)],
      [{ theta: 1e4 }, seqPositions([0, 0, 0], t)],
    ];
    for (const [opts, pos] of cases) {
      expectClose(await rope(gpu, tx, opts).read(), ropeRef(x, pos, h, d, 1e4), { atol: 2e-6, rtol: 2e-6 }, JSON.stringify(opts.offset));
    }
  });

  it('clamps positions read on the GPU into range', async () => {
    const gpu = await testGpu();
    const rng = new Rng(24);
    const x = rng.randn(3 * 4);
    const y = rope(gpu, gpu.tensor([3, 1, 4], 'f32', x), { theta: 1e4, positions: gpu.tensor([3], 'i32', [-5, 3, ROPE_MAX_POSITION + 10]) });
    expectClose(await y.read(), ropeRef(x, [0, 3, ROPE_MAX_POSITION], 1, 4, 1e4), { atol: 2e-6, rtol: 2e-6 });
  });

  it('rotates f16 in place and out of place alike', async () => {
    const gpu = await testGpu();
    const rng = new Rng(25);
    const [b, t, h, d] = [2, 5, 3, 34];
    const x = roundToF16(rng.randn(b * t * h * d));
    const pos = Int32Array.from({ length: b * t }, () => rng.int(0, 3000));
    const tp = gpu.tensor([b, t], 'i32', pos);
    const tx = gpu.tensor([b, t, h, d], 'f16', x);
    const y = rope(gpu, tx, { theta: 1e4, positions: tp });
    expect(y.dtype).toBe('f16');
    expect(rope(gpu, tx, { theta: 1e4, positions: tp, out: tx })).toBe(tx);
    const want = ropeRef(x, pos, h, d, 1e4);
    expectClose(await y.read(), want, { atol: 2e-3, rtol: 2e-3 }, 'f16');
    expectClose(await tx.read(), await y.read(), { atol: 0, rtol: 0 }, 'in place');
    const back = ropeBackward(gpu, tx, { theta: 1e4, positions: tp, out: tx });
    expectClose(await back.read(), x, { atol: 4e-3, rtol: 4e-3 }, 'backward undoes forward');
  });

  it('runs in token windows when x exceeds one binding', async () => {
    const gpu: Gpu = await freshGpu({ maxBindingBytes: 1 << 17 });
    const rng = new Rng(26);
    const [b, t, h, d] = [2, 300, 7, 8];
    const x = rng.randn(b * t * h * d);
    const pos = Int32Array.from({ length: b * t }, () => rng.int(0, 100000));
    const tp = gpu.tensor([b, t], 'i32', pos);
    const tx = gpu.tensor([b, t, h, d], 'f32', x);
    expectClose(await rope(gpu, tx, { theta: 1e4, positions: tp }).read(), ropeRef(x, pos, h, d, 1e4), { atol: 2e-6, rtol: 2e-6 });
    rope(gpu, tx, { theta: 1e4, positions: tp, out: tx });
    expectClose(await tx.read(), ropeRef(x, pos, h, d, 1e4), { atol: 2e-6, rtol: 2e-6 }, 'in place');
    gpu.destroy();
  });

  it('gives the same results on both paths, bit for bit (4 pairs or one at a time, every position mode, in place, q+k, windows)', async () => {
    const gpus: Gpu[] = [await testGpu(), await freshGpu({ maxBindingBytes: 1 << 17 })];
    const rng = new Rng(29);
    for (const gpu of gpus) {
      // d 16: 4 pairs at a time on the rows path; d 10: one; 300 tokens: more than a CPU grid's workgroups.
      for (const [b, t, hq, hk, d] of [[2, 150, 3, 1, 16], [1, 300, 2, 2, 10]]) {
        for (const dt of ['f32', 'f16'] as const) {
          const modes = [
            { theta: 1e4, positions: gpu.tensor([b, t], 'i32', Int32Array.from({ length: b * t }, () => rng.int(0, 1 << 20))) },
            { theta: 1e6, positions: gpu.tensor([b], 'i32', Array.from({ length: b }, () => rng.int(0, 5000))), offset: 2 },
            { theta: 1e4, offset: 5 },
          ];
          for (const opts of modes) {
            const what = `[${b},${t},${hq}+${hk},${d}] ${dt} ${opts.positions ? opts.positions.shape.join('x') : 'none'} maxBinding=${gpu.maxBinding}`;
            const x = roundToF16(rng.randn(b * t * hq * d));
            const k = roundToF16(rng.randn(b * t * hk * d));
            const out = async (path: 'rows' | 'elements') => {
              const tx = gpu.tensor([b, t, hq, d], dt, x);
              const y = await rope(gpu, tx, { ...opts, path }).read();
              const back = await ropeBackward(gpu, tx, { ...opts, path }).read();
              const [tq, tk] = [gpu.tensor([b, t, hq, d], dt, x), gpu.tensor([b, t, hk, d], dt, k)];
              ropeQK(gpu, tq, tk, { ...opts, path });
              return [y, back, await tq.read(), await tk.read()];
            };
            const [rows, elements] = [await out('rows'), await out('elements')];
            for (const [i, part] of ['y', 'backward', 'q', 'k'].entries()) {
              expect(Array.from(rows[i]), `${part} ${what}`).toEqual(Array.from(elements[i]));
            }
          }
        }
      }
    }
    gpus[1].destroy();
  });

  it('ropeQK rotates q and k in place in one dispatch, bit for bit as two ropes (every position mode, windows)', async () => {
    // 128 KiB bindings (the rope table takes 64 KiB): 300 tokens of 7 heads of 8 f32 (134 KB) need two windows.
    const gpus: Gpu[] = [await testGpu(), await freshGpu({ maxBindingBytes: 1 << 17 })];
    const rng = new Rng(28);
    const [b, t, hq, hk, d] = [2, 300, 5, 2, 8];
    for (const gpu of gpus) {
      for (const dt of ['f32', 'f16'] as const) {
        const modes = [
          { theta: 1e4, positions: gpu.tensor([b, t], 'i32', Int32Array.from({ length: b * t }, () => rng.int(0, 9000))) },
          { theta: 1e6, positions: gpu.tensor([b], 'i32', [3, 700]), offset: 2 },
          { theta: 1e4, offset: 5 },
        ];
        for (const opts of modes) {
          const what = `${dt} ${opts.positions ? opts.positions.shape.join('x') : 'none'} maxBinding=${gpu.maxBinding}`;
          const [q, k] = [roundToF16(rng.randn(b * t * hq * d)), roundToF16(rng.randn(b * t * hk * d))];
          // k as a view two elements into its buffer, off any binding alignment, so its windows start mid-binding.
          const kBuf = gpu.tensor([k.length + 2], dt, Float32Array.from([0, 0, ...k]));
          const tq = gpu.tensor([b, t, hq, d], dt, q);
          const tk = kBuf.rows(2, k.length).reshape([b, t, hk, d]);
          ropeQK(gpu, tq, tk, opts);
          const wantQ = await rope(gpu, gpu.tensor([b, t, hq, d], dt, q), opts).read();
          const wantK = await rope(gpu, gpu.tensor([b, t, hk, d], dt, k), opts).read();
          expect(Array.from(await tq.read()), `q ${what}`).toEqual(Array.from(wantQ));
          expect(Array.from(await tk.read()), `k ${what}`).toEqual(Array.from(wantK));
        }
      }
    }
    const gpu = gpus[0];
    const q = gpu.tensor([b, t, hq, d], 'f32');
    expect(() => ropeQK(gpu, q, gpu.tensor([b, t, hk, d + 2], 'f32'), { theta: 1e4 })).toThrowError(/same batch, sequence, head dim and dtype/);
    expect(() => ropeQK(gpu, q, gpu.tensor([b, t, hk, d], 'f16'), { theta: 1e4 })).toThrowError(/same batch/);
    expect(() => ropeQK(gpu, q, q, { theta: 1e4 })).toThrowError(/bytes of their own/);
    // Disjoint slices of one buffer are fine (one token's fused q/k/v output); overlapping ones are refused.
    const [q1, k1] = [rng.randn(hq * d), rng.randn(hk * d)];
    const fused = gpu.tensor([(hq + hk) * d], 'f32', [...q1, ...k1]);
    const [sq, sk] = [fused.rows(0, hq * d).reshape([1, 1, hq, d]), fused.rows(hq * d, hk * d).reshape([1, 1, hk, d])];
    ropeQK(gpu, sq, sk, { theta: 1e4, offset: 3 });
    expect(Array.from(await sq.read())).toEqual(Array.from(await rope(gpu, gpu.tensor([1, 1, hq, d], 'f32', q1), { theta: 1e4, offset: 3 }).read()));
    expect(Array.from(await sk.read())).toEqual(Array.from(await rope(gpu, gpu.tensor([1, 1, hk, d], 'f32', k1), { theta: 1e4, offset: 3 }).read()));
    const late = fused.rows(hq * d - d, hk * d).reshape([1, 1, hk, d]);
    expect(() => ropeQK(gpu, sq, late, { theta: 1e4 })).toThrowError(/bytes of their own/);
    gpus[1].destroy();
  });

  it('backward agrees with finite differences of the GPU forward and of the reference', async () => {
    const gpu = await testGpu();
    const rng = new Rng(27);
    const [b, t, h, d] = [2, 3, 2, 6];
    const pos = Int32Array.from({ length: b * t }, () => rng.int(0, 100));
    const tp = gpu.tensor([b, t], 'i32', pos);
    const x = rng.randn(b * t * h * d);
    const c = rng.randn(x.length);
    const dx = await ropeBackward(gpu, gpu.tensor([b, t, h, d], 'f32', c), { theta: 1e4, positions: tp }).read();
    const loss = async (xs: Float32Array) => dot(await rope(gpu, gpu.tensor([b, t, h, d], 'f32', xs), { theta: 1e4, positions: tp }).read(), c);
    await checkDirectional(loss, x, dx, rng, { what: 'gpu dx' });
    const refDx = ropeBackwardRef(c, pos, h, d, 1e4);
    await checkDirectional((xs) => dot(ropeRef(xs, pos, h, d, 1e4), c), f64(x), refDx, rng, { eps: 1e-5, rtol: 1e-8, what: 'ref dx' });
  });

  it('scaled frequencies and an attention factor (rope_scaling) match the reference on both paths, with finite differences', async () => {
    const gpu = await testGpu();
    const rng = new Rng(31);
    // d 16: the rows path's 4 pairs at a time; d 10: one at a time. Frequencies of no closed form, factor 1.17.
    for (const [b, t, h, d] of [[2, 5, 3, 16], [1, 7, 2, 10]]) {
      const scaling = { invFreq: Array.from({ length: d / 2 }, (_, i) => 0.9 ** i / (1 + i)), attentionFactor: 1.17 };
      const x = rng.randn(b * t * h * d);
      const dy = rng.randn(x.length);
      const pos = Int32Array.from({ length: b * t }, () => rng.int(0, 40000));
      const tp = gpu.tensor([b, t], 'i32', pos);
      const what = `[${b},${t},${h},${d}]`;
      for (const path of ['rows', 'elements'] as const) {
        const y = await rope(gpu, gpu.tensor([b, t, h, d], 'f32', x), { theta: 1e4, scaling, positions: tp, path }).read();
        const dx = await ropeBackward(gpu, gpu.tensor([b, t, h, d], 'f32', dy), { theta: 1e4, scaling, positions: tp, path }).read();
        expectClose(y, ropeRef(x, pos, h, d, 1e4, false, scaling), { atol: 3e-6, rtol: 3e-6 }, `y ${path} ${what}`);
        expectClose(dx, ropeBackwardRef(dy, pos, h, d, 1e4, scaling), { atol: 3e-6, rtol: 3e-6 }, `dx ${path} ${what}`);
      }
      // The same frequencies without the factor: a table of its own, not the cached one with it.
      const plain = await rope(gpu, gpu.tensor([b, t, h, d], 'f32', x), { theta: 1e4, scaling: { invFreq: scaling.invFreq }, positions: tp }).read();
      expectClose(plain, ropeRef(x, pos, h, d, 1e4, false, { invFreq: scaling.invFreq }), { atol: 3e-6, rtol: 3e-6 }, `factor 1 ${what}`);
      const loss = async (xs: Float32Array) => dot(await rope(gpu, gpu.tensor([b, t, h, d], 'f32', xs), { theta: 1e4, scaling, positions: tp }).read(), dy);
      const dx = await ropeBackward(gpu, gpu.tensor([b, t, h, d], 'f32', dy), { theta: 1e4, scaling, positions: tp }).read();
      await checkDirectional(loss, x, dx, rng, { what: `gpu dx ${what}` });
      await checkDirectional((xs) => dot(ropeRef(xs, pos, h, d, 1e4, false, scaling), dy), f64(x), ropeBackwardRef(dy, pos, h, d, 1e4, scaling), rng, { eps: 1e-5, rtol: 1e-8, what: `ref dx ${what}` });
    }
    const x = gpu.tensor([1, 2, 1, 8], 'f32');
    expect(() => rope(gpu, x, { theta: 1e4, scaling: { invFreq: [1, 0.5, 0.25] } })).toThrowError(/scaling.invFreq must hold D\/2 = 4 positive finite numbers, got 3/);
    expect(() => rope(gpu, x, { theta: 1e4, scaling: { invFreq: [1, 0.5, NaN, 0.1] } })).toThrowError(/scaling.invFreq/);
    expect(() => rope(gpu, x, { theta: 1e4, scaling: { invFreq: [1, 0.5, 0.2, 0.1], attentionFactor: 0 } })).toThrowError(/attentionFactor must be a positive finite number, got 0/);
    await gpu.sync();
  });

  it('rejects bad shapes and options before GPU work', async () => {
    const gpu = await testGpu();
    const x = gpu.tensor([2, 3, 4, 8], 'f32');
    expect(() => rope(gpu, gpu.tensor([2, 3, 4, 7], 'f32'), { theta: 1e4 })).toThrowError(/even head dim/);
    expect(() => rope(gpu, gpu.tensor([3, 8], 'f32'), { theta: 1e4 })).toThrowError(ShapeError);
    expect(() => rope(gpu, x, { theta: 1e4, positions: gpu.tensor([3, 2], 'i32') })).toThrowError(/positions/);
    expect(() => rope(gpu, x, { theta: 1e4, positions: gpu.tensor([2, 3], 'f32') })).toThrowError(/i32/);
    expect(() => rope(gpu, x, { theta: 1e4, offset: -1 })).toThrowError(/offset/);
    expect(() => rope(gpu, x, { theta: 0 })).toThrowError(/theta/);
    expect(() => rope(gpu, x, { theta: 1e4, out: gpu.tensor([2, 3, 4, 8], 'f16') })).toThrowError(ShapeError);
    await gpu.sync();
  });
});

afterAll(async () => {
  await (await testGpu()).sync();
});
