import { describe, expect, it } from 'vitest';
import { GpuLimitError, type Gpu } from '../src/index.js';
import { attention } from '../src/kernels/attention.js';
import { attentionBackward } from '../src/kernels/attention-backward.js';
import { attentionCacheAppend, attentionCacheAppendKV, attentionDecode } from '../src/kernels/attention-decode.js';
import { attentionBackwardRef, attentionCacheAppendRef, attentionDecodeRef, attentionRef } from '../src/reference/attention.js';
import { Rng, expectClose, freshGpu } from './helpers.js';

const TOL = { atol: 1e-4, rtol: 1e-3 };

// Tensors past maxStorageBufferBindingSize: the ops run on runs of batch items that fit one binding
// (attention-batches.ts), on views where the run's offset is aligned for binding (16 bytes on lavapipe) and on
// copies where it is not. A small binding limit stands in for the real ones.
describe('attention over tensors larger than one binding', () => {
  async function withLimit(bytes: number, fn: (gpu: Gpu) => Promise<void>): Promise<void> {
    const gpu = await freshGpu({ maxBindingBytes: bytes });
    try {
      await fn(gpu);
    } finally {
      gpu.destroy();
    }
  }

  it('forward and backward, padded, in runs of 3 and 2 sequences', async () => {
    // q holds 1920 bytes a sequence: 3 fit 6000 bytes. The second run starts at sequence 3, where q, k and v's
    // offsets are aligned (views) but lse's (360 bytes) and lengths' (12) are not (copies).
    await withLimit(6000, async (gpu) => {
      const dims = { B: 5, T: 5, S: 7, Hq: 6, Hkv: 2, D: 16 };
      const lengths = [7, 4, 7, 6, 2];
      const rng = new Rng(71);
      const { B, T, S, Hq, Hkv, D } = dims;
      const x = { q: rng.randn(B * T * Hq * D), k: rng.randn(B * S * Hkv * D), v: rng.randn(B * S * Hkv * D), dO: rng.randn(B * T * Hq * D) };
      const q = gpu.tensor([B, T, Hq, D], 'f32', x.q);
      const k = gpu.tensor([B, S, Hkv, D], 'f32', x.k);
      const v = gpu.tensor([B, S, Hkv, D], 'f32', x.v);
      const dO = gpu.tensor([B, T, Hq, D], 'f32', x.dO);
      expect(q.byteLength).toBeGreaterThan(gpu.maxBinding);
      const opts = { causal: true, lengths: gpu.tensor([B], 'i32', lengths) };
      const ref = attentionRef(x.q, x.k, x.v, dims, { causal: true, lengths });
      const { o, lse } = attention(gpu, q, k, v, opts);
      expectClose(await o.read(), ref.o, TOL, 'o');
      expectClose(await lse.read(), ref.lse, TOL, 'lse');
      const g = attentionBackward(gpu, q, k, v, o, lse, dO, opts);
      const gref = attentionBackwardRef(x.q, x.k, x.v, x.dO, dims, { causal: true, lengths });
      expectClose(await g.dq.read(), gref.dq, TOL, 'dq');
      expectClose(await g.dk.read(), gref.dk, TOL, 'dk');
      expectClose(await g.dv.read(), gref.dv, TOL, 'dv');
    });
  });

  for (const D of [6, 16]) {
    // D 6: a cache holds 216 bytes a sequence, so the second run (sequence 3) starts unaligned and its cache is
    // copied out and, after the append, back. D 16: 576 bytes, runs of 2 on views.
    it(`cache append and decode, head dim ${D}`, async () => {
      const dims = { B: 5, T: 3, Smax: 9, Hq: 2, Hkv: 1, D };
      const { B, T, Smax, Hq, Hkv } = dims;
      await withLimit(D === 6 ? 700 : 1500, async (gpu) => {
        const rng = new Rng(72 + D);
        const xk = rng.randn(B * T * Hkv * D);
        const xv = rng.randn(B * T * Hkv * D);
        const x1 = rng.randn(B * Hkv * D);
        const positions = [0, 2, 1, 6, 0];
        const kc = gpu.zeros([B, Smax, Hkv, D], 'f32');
        const vc = gpu.zeros([B, Smax, Hkv, D], 'f32');
        expect(kc.byteLength).toBeGreaterThan(gpu.maxBinding);
        attentionCacheAppendKV(gpu, kc, vc, gpu.tensor([B, T, Hkv, D], 'f32', xk), gpu.tensor([B, T, Hkv, D], 'f32', xv), gpu.tensor([B], 'i32', positions));
        // One more key per sequence through the single-cache append, at the next position.
        const next = positions.map((p) => p + T);
        attentionCacheAppend(gpu, kc, gpu.tensor([B, 1, Hkv, D], 'f32', x1), gpu.tensor([B], 'i32', next));
        const kRef = new Float64Array(B * Smax * Hkv * D);
        const vRef = new Float64Array(B * Smax * Hkv * D);
        attentionCacheAppendRef(kRef, xk, { B, T, Smax, Hkv, D }, positions);
        attentionCacheAppendRef(vRef, xv, { B, T, Smax, Hkv, D }, positions);
        attentionCacheAppendRef(kRef, x1, { B, T: 1, Smax, Hkv, D }, next);
        expectClose(await kc.read(), kRef, { atol: 0, rtol: 0 }, 'k cache');
        expectClose(await vc.read(), vRef, { atol: 0, rtol: 0 }, 'v cache');

        const qd = rng.randn(B * Hq * D);
        const lengths = next.map((p) => Math.min(Smax, p + 1));
        const o = attentionDecode(gpu, gpu.tensor([B, 1, Hq, D], 'f32', qd), kc, vc, gpu.tensor([B], 'i32', lengths));
        expectClose(await o.read(), attentionDecodeRef(qd, kRef, vRef, { B, T: 1, Smax, Hq, Hkv, D }, lengths), TOL, 'decode o');
      });
    });
  }

  it('refuses, naming the op, a batch item larger than one binding', async () => {
    await withLimit(1024, async (gpu) => {
      const q = gpu.zeros([1, 8, 4, 16], 'f32'); // 2048 bytes in one sequence
      expect(() => attention(gpu, q, q, q)).toThrowError(GpuLimitError);
      expect(() => attention(gpu, q, q, q)).toThrowError(/one batch item takes 2048 bytes, over maxStorageBufferBindingSize 1024.*op=attention/);
    });
  });
});
