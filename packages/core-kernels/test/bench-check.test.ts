import { describe, expect, it } from 'vitest';
import {
  AdamW,
  add,
  allBenches,
  attention,
  attentionBackward,
  embedding,
  embeddingBackward,
  globalGradNorm,
  headBackward,
  headForward,
  loraLinear,
  matmul,
  rmsnorm,
  rope,
  runBenchmarks,
  sampleTokens,
  swiglu,
  type BenchCase,
  type Gpu,
  type Tensor,
} from '../src/index.js';
import { CHECK_TOL, ErrorMeter, checkLinear, checkLora, checkProduct, spread } from '../src/bench/check.js';
import { checkAttentionBackward, checkAttentionForward } from '../src/bench/check-attention.js';
import { checkHeadBackward, checkHeadForward } from '../src/bench/check-head.js';
import { checkAdd, checkEmbedding, checkEmbeddingBackward, checkRmsnorm, checkRope, checkSwiglu } from '../src/bench/check-ops.js';
import { checkAdamwFirstStep, checkGradNorm, checkSample } from '../src/bench/check-optim.js';
import { benchValues } from '../src/bench/data.js';
import { testGpu } from './helpers.js';

const values = (n: number, seed: number, scale = 2) => benchValues(n, scale, seed);

/** x with the last element of each row (one term of every dot product along K) set to zero. */
function lastColumnZeroed(x: Float32Array, K: number): Float32Array {
  const y = x.slice();
  for (let i = K - 1; i < y.length; i += K) y[i] = 0;
  return y;
}

const dispose = (...ts: Tensor[]) => ts.forEach((t) => t.dispose());

describe('benchmark checks (bench kernels --check)', () => {
  // One case of each kind (each wires its check to its own tensors and shape), the cheapest to compile; `mlagent
  // bench kernels --check` runs them all (about 12 s here with a warm shader cache, 140 s with a cold one).
  const wiring = [
    'matmul f32 1024x1024x1024 (tiled path)',
    'linear gemv T=1 3584->3584 f16 W',
    'lm-head gemv T=1 64->151936 f32 W',
    'lora small T=64 512->512 r=8',
    'attention fwd causal f32 B4 T672 Hq4 Hkv2 D32 (scalar path)',
    'attention bwd causal f32 B4 T672 Hq4 Hkv2 D32 (scalar path)',
    'attention decode f32 B4 T1 Hq4 Hkv2 D32 S800 (scalar path)',
    'attention cache append k+v f32 B4 T1 Hkv2 D32 S800',
    'head fwd f32 weight T=16 H=64 V=151936 (tiled path)',
    'head bwd f32 weight T=16 H=64 V=151936 (tiled path)',
    // Every CPU-sized case of the other families.
    ...allBenches.filter((c) => c.size === 'cpu' && ['ops', 'elementwise', 'optim'].includes(c.family)).map((c) => c.name),
  ];
  it('pass on one CPU-sized case of each kind, at the case’s own shape and path', async () => {
    const gpu = await testGpu();
    for (const name of wiring) {
      const c = allBenches.find((x) => x.name === name && x.size === 'cpu');
      expect(c, name).toBeDefined();
      const p = (c as BenchCase).prepare(gpu);
      try {
        expect(p.check, name).toBeDefined();
        const k = await p.check!();
        expect(k.err, name).toBeLessThan(k.tol);
        expect(k.samples, name).toBeGreaterThan(0);
      } finally {
        p.dispose();
      }
    }
  }, 300_000);

  it('are run by the harness on request, and flag an error over its bound', async () => {
    const gpu = await testGpu();
    let calls = 0;
    const fake = (name: string, err: number | undefined): BenchCase => ({
      family: 'test',
      name,
      size: 'cpu',
      prepare: () => ({
        run: () => undefined,
        dispose: () => undefined,
        check: err === undefined ? undefined : async () => (calls++, { err, tol: 0.01, samples: 3 }),
      }),
    });
    const cases = [fake('right', 0.001), fake('wrong', 0.5), fake('none', undefined)];
    const plain = await runBenchmarks(gpu, cases, { iterations: 1 });
    expect(calls).toBe(0);
    expect(plain.map((r) => r.check)).toEqual([undefined, undefined, undefined]);
    const [right, wrong, none] = await runBenchmarks(gpu, cases, { iterations: 1, check: true });
    expect(right.check).toEqual({ err: 0.001, tol: 0.01, samples: 3, ok: true });
    expect(wrong.check?.ok).toBe(false);
    expect(none.check).toBeUndefined();
  });

  it('count a NaN as an infinite error, and sample distinct sorted indices from both ends', () => {
    const m = new ErrorMeter();
    m.addSum(1.0001, 1, 1);
    expect(m.err).toBeCloseTo(1e-4, 8);
    m.add(NaN, 1);
    m.add(1, 1);
    expect(m.result(CHECK_TOL)).toEqual({ err: Infinity, tol: CHECK_TOL, samples: 3 });
    const s = spread(1000, 8);
    expect(s).toHaveLength(8);
    expect(s[0]).toBe(0);
    expect(s[7]).toBe(999);
    expect(new Set(s).size).toBe(8);
    expect([...s].sort((a, b) => a - b)).toEqual(s);
    expect(spread(3, 8)).toEqual([0, 1, 2]);
    expect(spread(0, 8)).toEqual([]);
  });

  // Each check must catch an output that lost one term of its sums, or took a wrong input.
  it('catch a product that lost one term of K', async () => {
    const gpu = await testGpu();
    const [T, N, K] = [3, 40, 3584];
    const xv = values(T * K, 1);
    const x = gpu.tensor([T, K], 'f32', xv);
    const w = gpu.tensor([N, K], 'f16', values(N * K, 2, 0.2));
    const y = matmul(gpu, x, w, { transB: true });
    expect((await checkLinear(x, w, y, T, N, K)).err).toBeLessThan(CHECK_TOL);
    const xLess = gpu.tensor([T, K], 'f32', lastColumnZeroed(xv, K));
    const yLess = matmul(gpu, xLess, w, { transB: true });
    expect((await checkLinear(x, w, yLess, T, N, K)).err).toBeGreaterThan(CHECK_TOL);
    // A·B with B [K, N]: its last row zeroed drops the last term of every entry.
    const [M, K2] = [20, 1000];
    const a = gpu.tensor([M, K2], 'f32', values(M * K2, 3));
    const bv = values(K2 * N, 4);
    const b = gpu.tensor([K2, N], 'f32', bv);
    const bLess = gpu.tensor([K2, N], 'f32', bv.map((v, i) => (i >= (K2 - 1) * N ? 0 : v)));
    const c = matmul(gpu, a, b);
    const cLess = matmul(gpu, a, bLess);
    expect((await checkProduct(a, b, c, M, N, K2)).err).toBeLessThan(CHECK_TOL);
    expect((await checkProduct(a, b, cLess, M, N, K2)).err).toBeGreaterThan(CHECK_TOL);
    dispose(x, w, y, xLess, yLess, a, b, bLess, c, cLess);
  });

  it('catch an attention whose last query row was masked as padding, and gradients of another dO', async () => {
    const gpu = await testGpu();
    const d = { B: 1, T: 200, S: 200, Hq: 4, Hkv: 2, D: 32, causal: true };
    const n = d.T * d.Hq * d.D;
    const q = gpu.tensor([1, d.T, d.Hq, d.D], 'f32', values(n, 5, 3.4));
    const k = gpu.tensor([1, d.S, d.Hkv, d.D], 'f32', values(d.S * d.Hkv * d.D, 6, 3.4));
    const v = gpu.tensor([1, d.S, d.Hkv, d.D], 'f32', values(d.S * d.Hkv * d.D, 7, 3.4));
    // The scalar kernels (what GPUs run for f32); the checks do not depend on the path.
    const { o, lse } = attention(gpu, q, k, v, { causal: true, path: 'scalar' });
    expect((await checkAttentionForward(d, q, k, v, o, lse)).err).toBeLessThan(CHECK_TOL);
    // Length S - 1: the last query row is padding (zero output, lse 0).
    const lengths = gpu.tensor([1], 'i32', [d.S - 1]);
    const short = attention(gpu, q, k, v, { causal: true, lengths, path: 'scalar' });
    expect((await checkAttentionForward(d, q, k, v, short.o, short.lse)).err).toBeGreaterThan(CHECK_TOL);
    // The same without lse: the output alone shows it.
    expect((await checkAttentionForward(d, q, k, v, short.o)).err).toBeGreaterThan(CHECK_TOL);

    const dov = values(n, 8, 3.4);
    const dO = gpu.tensor(q.shape, 'f32', dov);
    const g = attentionBackward(gpu, q, k, v, o, lse, dO, { path: 'scalar' });
    expect((await checkAttentionBackward(d, { q, k, v, o, lse, dO }, g)).err).toBeLessThan(CHECK_TOL);
    // dO of the last query row zeroed: that row's dq, and every key's dk and dv, lose its part.
    const dOLess = gpu.tensor(q.shape, 'f32', dov.map((x, i) => (i >= n - d.Hq * d.D ? 0 : x)));
    const gLess = attentionBackward(gpu, q, k, v, o, lse, dOLess, { path: 'scalar' });
    expect((await checkAttentionBackward(d, { q, k, v, o, lse, dO }, gLess)).err).toBeGreaterThan(CHECK_TOL);
    dispose(q, k, v, o, lse, lengths, short.o, short.lse, dO, g.dq, g.dk, g.dv, dOLess, gLess.dq, gLess.dk, gLess.dv);
  });

  it('catch a head with other targets, and a head gradient of other weights', async () => {
    const gpu = await testGpu();
    const [T, H, V] = [5, 48, 3000];
    const x = {
      h: gpu.tensor([T, H], 'f32', values(T * H, 9)),
      w: gpu.tensor([V, H], 'f32', values(V * H, 10, 0.5)),
      y: gpu.tensor([T], 'i32', [3, 1500, 2999, 0, 77]),
      T,
      H,
      V,
    };
    const other = gpu.tensor([T], 'i32', [4, 1501, 2998, 1, 78]);
    const r = headForward(gpu, x.h, x.w, x.y);
    const rOther = headForward(gpu, x.h, x.w, other);
    expect((await checkHeadForward(x, r)).err).toBeLessThan(CHECK_TOL);
    expect((await checkHeadForward(x, rOther)).err).toBeGreaterThan(CHECK_TOL);
    const a = gpu.tensor([T], 'f32', values(T, 11));
    const b = gpu.tensor([T], 'f32', values(T, 12));
    const dh = headBackward(gpu, x.h, x.w, x.y, r, { dLogprob: a, dEntropy: b });
    expect((await checkHeadBackward(x, a, b, dh)).err).toBeLessThan(CHECK_TOL);
    const dhOther = headBackward(gpu, x.h, x.w, x.y, r, { dLogprob: b, dEntropy: a });
    expect((await checkHeadBackward(x, a, b, dhOther)).err).toBeGreaterThan(CHECK_TOL);
    const outs = (z: typeof r) => [z.logprob, z.entropy, z.lse, z.loss, z.count];
    dispose(x.h, x.w, x.y, other, ...outs(r), ...outs(rOther), a, b, dh, dhOther);
  });

  it('catch a LoRA output with another dropout mask', async () => {
    const gpu: Gpu = await testGpu();
    const [T, inF, outF, r] = [6, 300, 50, 4];
    const l = {
      x: gpu.tensor([T, inF], 'f32', values(T * inF, 13)),
      w: gpu.tensor([outF, inF], 'f16', values(outF * inF, 14, 0.2)),
      a: gpu.tensor([r, inF], 'f32', values(r * inF, 15, 0.2)),
      b: gpu.tensor([outF, r], 'f32', values(outF * r, 16, 0.2)),
      T,
      inF,
      outF,
      r,
      alpha: 8,
      dropout: 0.1,
      seed: 1,
    };
    const right = loraLinear(gpu, l.x, l.w, l.a, l.b, { alpha: 8, dropout: 0.1, seed: 1 });
    const other = loraLinear(gpu, l.x, l.w, l.a, l.b, { alpha: 8, dropout: 0.1, seed: 2 });
    expect((await checkLora(l, right.y, right.h)).err).toBeLessThan(CHECK_TOL);
    expect((await checkLora(l, other.y, other.h)).err).toBeGreaterThan(CHECK_TOL);
    dispose(l.x, l.w, l.a, l.b, right.y, right.h, other.y, other.h);
  });

  it('catch wrong outputs of the row-wise ops, the optimizer and sampling', async () => {
    const gpu = await testGpu();
    const ok = async (p: Promise<{ err: number }>) => expect((await p).err).toBeLessThan(CHECK_TOL);
    const bad = async (p: Promise<{ err: number }>) => expect((await p).err).toBeGreaterThan(CHECK_TOL);
    const [T, H] = [6, 96];
    const x = gpu.tensor([T, H], 'f32', values(T * H, 17));
    const w = gpu.tensor([H], 'f32', values(H, 18));
    const w2 = gpu.tensor([H], 'f32', values(H, 19));
    // rmsnorm with other weights.
    const r1 = rmsnorm(gpu, x, w);
    const r2 = rmsnorm(gpu, x, w2);
    await ok(checkRmsnorm(x, w, r1.y, r1.rstd, H));
    await bad(checkRmsnorm(x, w, r2.y, r2.rstd, H));
    // rope with another theta.
    const q = gpu.tensor([1, T, 2, 48], 'f32', values(T * H, 20));
    const positions = gpu.tensor([1, T], 'i32', [0, 1, 5, 9, 100, 2000]);
    await ok(checkRope(q, rope(gpu, q, { theta: 1e6, positions }), positions, 1e6));
    await bad(checkRope(q, rope(gpu, q, { theta: 1e4, positions }), positions, 1e6));
    // swiglu with gate and up swapped; add of a + a.
    await ok(checkSwiglu(x, x.reshape([T, H]), H, { y: swiglu(gpu, x, x) }));
    const u = gpu.tensor([T, H], 'f32', values(T * H, 21));
    await bad(checkSwiglu(x, u, H, { y: swiglu(gpu, u, x) }));
    const sum = gpu.tensor([T, H], 'f32');
    add(gpu, x, u, sum);
    await ok(checkAdd(x, u, sum));
    add(gpu, x, x, sum);
    await bad(checkAdd(x, u, sum));
    // embedding of other ids; its backward accumulated twice.
    const table = gpu.tensor([50, H], 'f32', values(50 * H, 22));
    const ids = gpu.tensor([T], 'i32', [3, 7, 3, 49, 0, 12]);
    const ids2 = gpu.tensor([T], 'i32', [3, 7, 4, 49, 0, 12]);
    await ok(checkEmbedding(ids, table, embedding(gpu, ids, table)));
    await bad(checkEmbedding(ids, table, embedding(gpu, ids2, table)));
    const dTable = gpu.zeros([50, H], 'f32');
    embeddingBackward(gpu, ids, x, 50, { accumulate: dTable });
    await ok(checkEmbeddingBackward(ids, x, dTable));
    embeddingBackward(gpu, ids, x, 50, { accumulate: dTable });
    await bad(checkEmbeddingBackward(ids, x, dTable));
    // The norm of other gradients; an AdamW step from other parameters than the check was told.
    const grads = [x, u].map((t) => t.reshape([T * H]));
    await ok(checkGradNorm(grads, globalGradNorm(gpu, grads)));
    await bad(checkGradNorm(grads, globalGradNorm(gpu, [x.reshape([T * H]), x.reshape([T * H])])));
    const pv = [values(T * H, 23), values(T * H, 24)];
    const fresh = () => pv.map((v) => gpu.tensor([T * H], 'f32', v));
    const o1 = new AdamW(gpu, fresh(), { lr: 1e-3, maxGradNorm: 0.5 });
    await ok(checkAdamwFirstStep(o1, pv, grads));
    const o2 = new AdamW(gpu, fresh(), { lr: 1e-3, maxGradNorm: 0.5 });
    await bad(checkAdamwFirstStep(o2, [pv[1], pv[0]], grads));
    await expect(checkAdamwFirstStep(o2, pv, grads)).rejects.toThrow(/has taken no step/);
    // A drawn id outside the top-k set, and a wrong log-probability.
    const logits = gpu.tensor([2, 300], 'f32', values(600, 25, 12));
    const o = { temperature: 0.7, topK: 5 };
    const s = sampleTokens(gpu, logits, { ...o, seed: 3 });
    await ok(checkSample(logits, o, s));
    const lh = await logits.read();
    let low = 0;
    for (let i = 0; i < 300; i++) if (lh[i] < lh[low]) low = i;
    await bad(checkSample(logits, o, { ...s, ids: gpu.tensor([2], 'i32', [low, (await s.ids.read())[1]]) }));
    await bad(checkSample(logits, o, { ...s, logprobs: gpu.tensor([2], 'f32', [-0.1, -0.1]) }));
  });
});
