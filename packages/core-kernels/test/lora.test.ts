import { describe, expect, it } from 'vitest';
import { ShapeError, roundToF16, type Gpu } from '../src/index.js';
import { loraDropout, loraLinear, loraLinearBackward, type LoraOptions } from '../src/kernels/lora.js';
import { loraBackwardRef, loraKeep, loraRef, type LoraRefDims } from '../src/reference/lora.js';
import { Rng, checkDirectional, dot, expectClose, testGpu } from './helpers.js';

const TOL = { atol: 2e-4, rtol: 2e-4 };

function inputs(rng: Rng, d: LoraRefDims, wType: 'f32' | 'f16') {
  const x = rng.randn(d.T * d.inF);
  const W0 = rng.randn(d.outF * d.inF, 0.3);
  return {
    x,
    W: wType === 'f16' ? roundToF16(W0) : W0,
    bias: rng.randn(d.outF),
    A: rng.randn(d.r * d.inF, 0.3),
    B: rng.randn(d.outF * d.r, 0.3),
  };
}

async function forward(gpu: Gpu, d: LoraRefDims, v: ReturnType<typeof inputs>, wType: 'f32' | 'f16', withBias = true) {
  const t = {
    x: gpu.tensor([d.T, d.inF], 'f32', v.x),
    W: gpu.tensor([d.outF, d.inF], wType, v.W),
    A: gpu.tensor([d.r, d.inF], 'f32', v.A),
    B: gpu.tensor([d.outF, d.r], 'f32', v.B),
    bias: gpu.tensor([d.outF], 'f32', v.bias),
  };
  const opts = { alpha: d.alpha, dropout: d.dropout, seed: d.seed, bias: withBias ? t.bias : undefined };
  const { y, h } = loraLinear(gpu, t.x, t.W, t.A, t.B, opts);
  return { t, y, h, opts };
}

describe('lora dropout mask', () => {
  it('matches its CPU twin exactly and keeps about 1 - p', async () => {
    const gpu = await testGpu();
    const n = 5000;
    const x = gpu.tensor([n], 'f32', new Float32Array(n).fill(1));
    for (const [p, seed] of [[0.1, 7], [0.5, 123456789]] as const) {
      const y = await loraDropout(gpu, x, p, seed).read();
      let kept = 0;
      for (let i = 0; i < n; i++) {
        const keep = loraKeep(seed, i, p);
        kept += keep ? 1 : 0;
        expect(y[i]).toBeCloseTo(keep ? 1 / (1 - p) : 0, 5);
      }
      expect(Math.abs(kept / n - (1 - p))).toBeLessThan(0.03);
    }
    // Different seeds give different masks.
    const a = await loraDropout(gpu, x, 0.5, 1).read();
    const b = await loraDropout(gpu, x, 0.5, 2).read();
    expect(a.some((v, i) => v !== b[i])).toBe(true);
  });
});

describe('lora linear', () => {
  const cases: Array<[string, LoraRefDims, 'f32' | 'f16']> = [
    ['f32 W, no dropout', { T: 7, inF: 33, outF: 17, r: 4, alpha: 8 }, 'f32'],
    ['f16 W, dropout', { T: 19, inF: 40, outF: 65, r: 3, alpha: 16, dropout: 0.25, seed: 42 }, 'f16'],
    ['decode T=1 (GEMV), dropout', { T: 1, inF: 70, outF: 9, r: 8, alpha: 4, dropout: 0.5, seed: 3 }, 'f32'],
  ];
  for (const [name, d, wType] of cases) {
    it(`forward and backward match the float64 reference: ${name}`, async () => {
      const gpu = await testGpu();
      const rng = new Rng(d.T * 31 + d.inF);
      const v = inputs(rng, d, wType);
      const { t, y, h, opts } = await forward(gpu, d, v, wType);
      const ref = loraRef(v.x, v.W, v.bias, v.A, v.B, d);
      expectClose(await y.read(), ref.y, TOL, 'y');
      expectClose(await h.read(), ref.h, TOL, 'h');
      const dyv = rng.randn(d.T * d.outF);
      const dy = gpu.tensor([d.T, d.outF], 'f32', dyv);
      const g = loraLinearBackward(gpu, t.x, t.W, t.A, t.B, h, dy, opts);
      const gr = loraBackwardRef(v.x, v.W, v.A, v.B, dyv, d);
      const [dx, dA, dB] = [await g.dx.read(), await g.dA.read(), await g.dB.read()];
      expectClose(dx, gr.dx, TOL, 'dx');
      expectClose(dA, gr.dA, TOL, 'dA');
      expectClose(dB, gr.dB, TOL, 'dB');

      // Finite differences of the GPU forward, loss = <dy, y>, same seed so the same mask.
      const loss = async (xv: Float32Array, Av: Float32Array, Bv: Float32Array) => {
        const [xt, At, Bt] = [gpu.tensor([d.T, d.inF], 'f32', xv), gpu.tensor([d.r, d.inF], 'f32', Av), gpu.tensor([d.outF, d.r], 'f32', Bv)];
        const out = loraLinear(gpu, xt, t.W, At, Bt, opts);
        const l = dot(await out.y.read(), dyv);
        [xt, At, Bt, out.y, out.h].forEach((z) => z.dispose());
        return l;
      };
      await checkDirectional((z) => loss(z, v.A, v.B), v.x, dx, rng, { what: 'dx (gpu fd)' });
      await checkDirectional((z) => loss(v.x, z, v.B), v.A, dA, rng, { what: 'dA (gpu fd)' });
      await checkDirectional((z) => loss(v.x, v.A, z), v.B, dB, rng, { what: 'dB (gpu fd)' });
      // The reference backward against finite differences of the reference forward.
      const refLoss = (xv: ArrayLike<number>, Av: ArrayLike<number>, Bv: ArrayLike<number>) => dot(loraRef(xv, v.W, v.bias, Av, Bv, d).y, dyv);
      const o = { eps: 1e-2, rtol: 1e-3 };
      await checkDirectional((z) => refLoss(z, v.A, v.B), v.x, gr.dx, rng, { ...o, what: 'dx (ref fd)' });
      await checkDirectional((z) => refLoss(v.x, z, v.B), v.A, gr.dA, rng, { ...o, what: 'dA (ref fd)' });
      await checkDirectional((z) => refLoss(v.x, v.A, z), v.B, gr.dB, rng, { ...o, what: 'dB (ref fd)' });
    });
  }

  it('accepts batched x [B, T, in] and keeps its leading shape', async () => {
    const gpu = await testGpu();
    const rng = new Rng(9);
    const d: LoraRefDims = { T: 6, inF: 12, outF: 5, r: 2, alpha: 2, dropout: 0.1, seed: 5 };
    const v = inputs(rng, d, 'f32');
    const x = gpu.tensor([2, 3, 12], 'f32', v.x);
    const { y } = loraLinear(gpu, x, gpu.tensor([5, 12], 'f32', v.W), gpu.tensor([2, 12], 'f32', v.A), gpu.tensor([5, 2], 'f32', v.B), { alpha: 2, dropout: 0.1, seed: 5 });
    expect(y.shape).toEqual([2, 3, 5]);
    expectClose(await y.read(), loraRef(v.x, v.W, undefined, v.A, v.B, d).y, TOL, 'batched y');
  });

  it('takes no tokens: an empty y, and zero gradients for A and B', async () => {
    const gpu = await testGpu();
    const rng = new Rng(10);
    const [x, W, A, B] = [gpu.tensor([0, 8], 'f32'), gpu.tensor([5, 8], 'f32', rng.randn(40)), gpu.tensor([2, 8], 'f32', rng.randn(16)), gpu.tensor([5, 2], 'f32', rng.randn(10))];
    const opts = { alpha: 4, dropout: 0.1, seed: 3 };
    const { y, h } = loraLinear(gpu, x, W, A, B, opts);
    expect(y.shape).toEqual([0, 5]);
    const g = loraLinearBackward(gpu, x, W, A, B, h, gpu.tensor([0, 5], 'f32'), opts);
    expect(g.dx.shape).toEqual([0, 8]);
    expect(Array.from(await g.dA.read())).toEqual(new Array(16).fill(0));
    expect(Array.from(await g.dB.read())).toEqual(new Array(10).fill(0));
  });

  it('rejects mismatched shapes and dtypes', async () => {
    const gpu = await testGpu();
    const x = gpu.tensor([3, 8], 'f32');
    const W = gpu.tensor([5, 8], 'f16');
    const A = gpu.tensor([2, 8], 'f32');
    const B = gpu.tensor([5, 2], 'f32');
    expect(() => loraLinear(gpu, gpu.tensor([3, 7], 'f32'), W, A, B, { alpha: 1 })).toThrowError(ShapeError);
    expect(() => loraLinear(gpu, x, W, gpu.tensor([2, 7], 'f32'), B, { alpha: 1 })).toThrowError(/A must be/);
    expect(() => loraLinear(gpu, x, W, A, gpu.tensor([5, 3], 'f32'), { alpha: 1 })).toThrowError(/B must be/);
    expect(() => loraLinear(gpu, x, W, A, B, { alpha: 1, dropout: 1 })).toThrowError(/dropout/);
    expect(() => loraLinear(gpu, x, W, A, B, { alpha: 1, bias: gpu.tensor([4], 'f32') })).toThrowError(/bias/);
    const { h } = loraLinear(gpu, x, W, A, B, { alpha: 1 });
    expect(() => loraLinearBackward(gpu, x, W, A, B, h, gpu.tensor([3, 4], 'f32'), { alpha: 1 })).toThrowError(/dy/);
  });

  it('refuses a missing or non-finite alpha under its own op name, before recording or allocating anything', async () => {
    const gpu = await testGpu();
    const [x, W, A, B] = [gpu.tensor([2, 3], 'f32'), gpu.tensor([2, 3], 'f32'), gpu.tensor([1, 3], 'f32'), gpu.tensor([2, 1], 'f32')];
    const [h, dy] = [gpu.tensor([2, 1], 'f32'), gpu.tensor([2, 2], 'f32')];
    const before = gpu.memory().inUse;
    // JavaScript callers (or a config with the field missing) can leave out the required alpha.
    for (const alpha of [undefined, NaN, Infinity, '8']) {
      const opts = { alpha, dropout: 0.1 } as unknown as LoraOptions;
      for (const [op, fn] of [['loraLinear', () => loraLinear(gpu, x, W, A, B, opts)], ['loraLinearBackward', () => loraLinearBackward(gpu, x, W, A, B, h, dy, opts)]] as const) {
        expect(fn).toThrowError(ShapeError);
        expect(fn).toThrowError(new RegExp(`alpha must be a finite number, got ${alpha} \\[op=${op} `));
      }
    }
    expect(gpu.memory().inUse).toBe(before);
  });
});
