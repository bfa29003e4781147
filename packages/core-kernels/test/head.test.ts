import { describe, expect, it } from 'vitest';
import { ShapeError, f16BitsToF32, f32ToF16Bits, sizeClass, type Gpu, type Tensor } from '../src/index.js';
import { headBackward, headBackwardScratchBytes, headForward, headForwardScratchBytes, type HeadOptions, type HeadTiles } from '../src/kernels/head.js';
import { packMatmulB, type PackedMatmulB } from '../src/kernels/matmul.js';
import { cpuHeadUnfit } from '../src/kernels/head-cpu.js';
import { readTicketCounter } from '../src/kernels/tickets.js';
import { headBackwardRef, headForwardRef } from '../src/reference/head.js';
import { Rng, checkDirectional, expectClose, freshGpu, testGpu } from './helpers.js';

interface Case {
  T: number;
  H: number;
  V: number;
  tau?: number;
  wdtype?: 'f32' | 'f16';
  hdtype?: 'f32' | 'f16';
  chunkTokens?: number;
  chunkVocab?: number;
  tiles?: HeadTiles;
  kernel?: HeadOptions['kernel'];
}

const roundF16 = (x: Float32Array) => x.map((v) => f16BitsToF32(f32ToF16Bits(v)));

/** Random inputs with logits of order a few units, and about one target in five ignored. */
function inputs(rng: Rng, c: Case) {
  let hidden = rng.randn(c.T * c.H);
  let weight = rng.randn(c.V * c.H, 2 / Math.sqrt(c.H));
  if (c.hdtype === 'f16') hidden = roundF16(hidden);
  if (c.wdtype === 'f16') weight = roundF16(weight);
  const targets = Int32Array.from({ length: c.T }, () => (rng.uniform() < 0.2 ? -1 : rng.int(0, c.V - 1)));
  return { hidden, weight, targets };
}

function upload(gpu: Gpu, c: Case, x: ReturnType<typeof inputs>) {
  return {
    h: gpu.tensor([c.T, c.H], c.hdtype ?? 'f32', x.hidden),
    w: gpu.tensor([c.V, c.H], c.wdtype ?? 'f32', x.weight),
    y: gpu.tensor([c.T], 'i32', x.targets),
  };
}

const opts = (c: Case): HeadOptions => ({
  temperature: c.tau,
  chunkTokens: c.chunkTokens,
  chunkVocab: c.chunkVocab,
  tiles: c.tiles,
  kernel: c.kernel,
});

/** Forward and backward on the GPU against the float64 reference. */
async function checkCase(gpu: Gpu, c: Case, seed: number): Promise<void> {
  const rng = new Rng(seed);
  const x = inputs(rng, c);
  const { h, w, y } = upload(gpu, c, x);
  const tau = c.tau ?? 1;
  const what = JSON.stringify(c);
  const ref = headForwardRef(x.hidden, x.weight, x.targets, c.T, c.H, c.V, tau);
  const fwd = headForward(gpu, h, w, y, opts(c));
  const tol = { atol: 2e-4, rtol: 2e-4 };
  expectClose(await fwd.lse.read(), ref.lse, tol, `${what} lse`);
  expectClose(await fwd.logprob.read(), ref.logprob, tol, `${what} logprob`);
  expectClose(await fwd.entropy.read(), ref.entropy, tol, `${what} entropy`);
  expectClose(await fwd.loss.read(), [ref.loss], tol, `${what} loss`);
  expect((await fwd.count.read())[0]).toBe(ref.count);

  const dLogprob = rng.randn(c.T);
  const dEntropy = rng.randn(c.T);
  const dLoss = rng.normal();
  const dlp = gpu.tensor([c.T], 'f32', dLogprob);
  const dent = gpu.tensor([c.T], 'f32', dEntropy);
  const dh = headBackward(gpu, h, w, y, fwd, { dLogprob: dlp, dEntropy: dent, dLoss }, opts(c));
  const dhRef = headBackwardRef(x.hidden, x.weight, x.targets, c.T, c.H, c.V, { dLogprob, dEntropy, dLoss }, tau);
  const scale = Math.max(1e-3, ...dhRef.map(Math.abs));
  expectClose(await dh.read(), dhRef, { atol: 2e-4 * scale, rtol: 1e-3 }, `${what} dh`);
  for (const t of [h, w, y, dlp, dent, dh, fwd.logprob, fwd.entropy, fwd.lse, fwd.loss, fwd.count]) t.dispose();
}

describe('head reference', () => {
  it('backward matches finite differences of the float64 forward', () => {
    const rng = new Rng(1);
    for (const c of [
      { T: 3, H: 4, V: 5, tau: 1 },
      { T: 4, H: 3, V: 9, tau: 0.6 },
      { T: 2, H: 5, V: 1, tau: 1.7 },
    ]) {
      const x = inputs(rng, c);
      x.targets[0] = -1;
      const a = Array.from(rng.randn(c.T));
      const b = Array.from(rng.randn(c.T));
      const dLoss = 0.7;
      const L = (hid: ArrayLike<number>) => {
        const r = headForwardRef(hid, x.weight, x.targets, c.T, c.H, c.V, c.tau);
        let s = dLoss * r.loss;
        for (let t = 0; t < c.T; t++) s += a[t] * r.logprob[t] + b[t] * r.entropy[t];
        return s;
      };
      const dh = headBackwardRef(x.hidden, x.weight, x.targets, c.T, c.H, c.V, { dLogprob: a, dEntropy: b, dLoss }, c.tau);
      const h = Float64Array.from(x.hidden);
      const eps = 1e-6;
      const fd = h.map((_, i) => {
        const p = Float64Array.from(h);
        const m = Float64Array.from(h);
        p[i] += eps;
        m[i] -= eps;
        return (L(p) - L(m)) / (2 * eps);
      });
      expectClose(dh, fd, { atol: 1e-7, rtol: 1e-6 }, `reference dh ${JSON.stringify(c)}`);
    }
  });

  it('forward agrees with a direct log-softmax on a hand-sized case', () => {
    // Two equal logits and one lower: entropy and log-probs follow from the closed form.
    const r = headForwardRef([1, 0], [2, 0, 2, 0, 0, 0], [0], 1, 2, 3);
    const lse = Math.log(2 * Math.exp(2) + 1);
    expect(r.lse[0]).toBeCloseTo(lse, 12);
    expect(r.logprob[0]).toBeCloseTo(2 - lse, 12);
    const p = [Math.exp(2 - lse), Math.exp(2 - lse), Math.exp(-lse)];
    expect(r.entropy[0]).toBeCloseTo(-p.reduce((s, q) => s + q * Math.log(q), 0), 12);
  });
});

describe('head forward and backward vs reference', () => {
  const cases: Case[] = [
    { T: 1, H: 3, V: 1 },
    { T: 5, H: 33, V: 7, tau: 0.7 },
    { T: 17, H: 64, V: 1000, wdtype: 'f16', tau: 1.3 },
    { T: 5, H: 3, V: 5003, chunkVocab: 512 },
    { T: 17, H: 33, V: 1000, chunkTokens: 4, chunkVocab: 77, tau: 0.9, tiles: [8, 4] },
    { T: 40, H: 64, V: 300, wdtype: 'f16', hdtype: 'f16' },
    { T: 40, H: 64, V: 300, wdtype: 'f16', hdtype: 'f16', kernel: 'tiled' },
    { T: 40, H: 17, V: 300, tiles: [4, 8] },
    { T: 130, H: 33, V: 700, chunkVocab: 600, tiles: [8, 8] },
    // A large H on the GPU path; on a CPU adapter the fused kernels at this H take ~30 s to compile.
    { T: 7, H: 600, V: 50, kernel: 'tiled' },
  ];
  for (const [i, c] of cases.entries()) {
    it(`T=${c.T} H=${c.H} V=${c.V} ${c.wdtype ?? 'f32'} tau=${c.tau ?? 1} chunks=${c.chunkTokens ?? '-'}x${c.chunkVocab ?? '-'} tiles=${c.tiles ?? 'auto'} kernel=${c.kernel ?? 'auto'}`, async () => {
      await checkCase(await testGpu(), c, 100 + i);
    });
  }

  it('runs at the real vocabulary size (V = 152064, f16 weight)', async () => {
    await checkCase(await testGpu(), { T: 8, H: 32, V: 152064, wdtype: 'f16', tau: 0.8 }, 7);
  });

  it('never holds the full [T, V] logits: memory stays at one chunk tile', async () => {
    const gpu = await testGpu();
    const c: Case = { T: 32, H: 4, V: 20000, chunkVocab: 1000 };
    const rng = new Rng(13);
    const x = inputs(rng, c);
    const { h, w, y } = upload(gpu, c, x);
    await gpu.sync();
    gpu.allocator.resetPeak();
    const before = gpu.memory().inUse;
    const fwd = headForward(gpu, h, w, y, opts(c));
    const dh = headBackward(gpu, h, w, y, fwd, { dLoss: 1 }, opts(c));
    const extra = gpu.memory().peak - before;
    expect(extra).toBeLessThan((c.T * c.V * 4) / 8);
    const ref = headForwardRef(x.hidden, x.weight, x.targets, c.T, c.H, c.V);
    expectClose(await fwd.entropy.read(), ref.entropy, { atol: 2e-4, rtol: 2e-4 }, 'entropy');
    const dhRef = headBackwardRef(x.hidden, x.weight, x.targets, c.T, c.H, c.V, { dLoss: 1 });
    expectClose(await dh.read(), dhRef, { atol: 1e-5, rtol: 1e-3 }, 'dh');
  });

  it('allocates the scratch that headForwardScratchBytes and headBackwardScratchBytes tell planners', async () => {
    const gpu = await testGpu();
    const cases: Case[] = [
      // The tiled path's own matmul (`tiles`; a CPU adapter would otherwise run the cpu-tiled one, whose window
      // copies are its own scratch): split K over 8 tokens, and two token chunks.
      { T: 40, H: 32, V: 3000, kernel: 'tiled', tiles: [4, 4] },
      { T: 8, H: 64, V: 5000, kernel: 'tiled', tiles: [1, 4] },
      { T: 600, H: 8, V: 700, kernel: 'tiled', tiles: [4, 8] },
      ...(cpuHeadUnfit(gpu, gpu.tensor([2, 8], 'f32'), gpu.tensor([5, 8], 'f32')) ? [] : ([
        { T: 20, H: 36, V: 1003, kernel: 'cpu' },
        { T: 600, H: 64, V: 3000, kernel: 'cpu' },
      ] as Case[])),
    ];
    for (const c of cases) {
      const { h, w, y } = upload(gpu, c, inputs(new Rng(17), c));
      const kind = { cpu: c.kernel === 'cpu', maxBinding: gpu.maxBinding, maxWorkgroups: gpu.maxWorkgroups, tiles: c.tiles };
      // Measured scratch: the peak above what was in use, less the outputs (buffers of size classes; with the
      // cache emptied, no bigger cached buffer is handed out instead).
      const scratchOf = async (run: () => Tensor[]) => {
        await gpu.sync();
        gpu.allocator.emptyCache();
        gpu.allocator.resetPeak();
        const before = gpu.memory().inUse;
        const outs = run();
        await gpu.sync();
        return gpu.memory().peak - before - outs.reduce((n, t) => n + sizeClass(t.byteLength), 0);
      };
      let fwd!: ReturnType<typeof headForward>;
      const sf = await scratchOf(() => {
        fwd = headForward(gpu, h, w, y, opts(c));
        return [fwd.logprob, fwd.entropy, fwd.lse, fwd.loss, fwd.count];
      });
      const sb = await scratchOf(() => [headBackward(gpu, h, w, y, fwd, { dLoss: 1 }, opts(c))]);
      // The estimates are raw bytes; each buffer is handed out in a size class (at most 1/8 more, 256 at least),
      // and the forward's two-float accumulator is the planner's to add.
      const fe = headForwardScratchBytes(c.T, c.H, c.V, kind);
      const be = headBackwardScratchBytes(c.T, c.H, c.V, kind);
      expect(sf, `${JSON.stringify(c)} forward`).toBeGreaterThanOrEqual(fe);
      expect(sf, `${JSON.stringify(c)} forward`).toBeLessThanOrEqual(fe * 1.125 + 3 * 256);
      expect(sb, `${JSON.stringify(c)} backward`).toBeGreaterThanOrEqual(be);
      expect(sb, `${JSON.stringify(c)} backward`).toBeLessThanOrEqual(be * 1.125 + 2 * 256);
    }
  });

  it('binds windows of the weight, hidden and outputs when they exceed one binding', async () => {
    const gpu = await freshGpu({ maxBindingBytes: 4096 });
    try {
      for (const [i, c] of [
        { T: 17, H: 64, V: 300 },
        { T: 9, H: 33, V: 257, wdtype: 'f16', tau: 1.5 },
      ].entries() as Iterable<[number, Case]>) {
        expect(c.V * c.H * 2).toBeGreaterThan(gpu.maxBinding);
        await checkCase(gpu, c, 200 + i);
      }
      // A hidden view starting mid-buffer, at an offset that is not binding-aligned.
      const c = { T: 6, H: 33, V: 200 };
      const rng = new Rng(5);
      const x = inputs(rng, c);
      const big = gpu.tensor([c.T + 1, c.H], 'f32', new Float32Array([...rng.randn(c.H), ...x.hidden]));
      const h = big.rows(1, c.T);
      expect(h.byteOffset % gpu.storageAlign).not.toBe(0);
      const w = gpu.tensor([c.V, c.H], 'f32', x.weight);
      const y = gpu.tensor([c.T], 'i32', x.targets);
      const ref = headForwardRef(x.hidden, x.weight, x.targets, c.T, c.H, c.V);
      const fwd = headForward(gpu, h, w, y);
      expectClose(await fwd.logprob.read(), ref.logprob, { atol: 2e-4, rtol: 2e-4 }, 'view logprob');
      const dh = headBackward(gpu, h, w, y, fwd, { dLoss: 1 });
      const dhRef = headBackwardRef(x.hidden, x.weight, x.targets, c.T, c.H, c.V, { dLoss: 1 });
      expectClose(await dh.read(), dhRef, { atol: 1e-4, rtol: 1e-3 }, 'view dh');
    } finally {
      gpu.destroy();
    }
  });
});

describe('head CPU-adapter kernels (head-cpu.ts)', () => {
  // H a multiple of 4 but not of the 32 a lane group covers, T not a multiple of the token block, V not of 8.
  const cases: Case[] = [
    { T: 5, H: 36, V: 1003, tau: 0.8, kernel: 'cpu' },
    { T: 19, H: 64, V: 777, chunkVocab: 300, chunkTokens: 11, kernel: 'cpu' },
    { T: 3, H: 8, V: 517, wdtype: 'f16', hdtype: 'f16', tau: 1.4, kernel: 'cpu' },
    { T: 4, H: 100, V: 301, kernel: 'cpu' },
  ];
  for (const [i, c] of cases.entries()) {
    it(`T=${c.T} H=${c.H} V=${c.V} ${c.wdtype ?? 'f32'} chunks=${c.chunkTokens ?? '-'}x${c.chunkVocab ?? '-'}`, async () => {
      const gpu = await testGpu();
      await checkCase(gpu, c, 400 + i);
    });
  }

  it('keeps the raw logits for backward (keepLogits), which reads them: the same results bit for bit', async () => {
    const gpu = await testGpu();
    if (cpuHeadUnfit(gpu, gpu.tensor([2, 8], 'f32'), gpu.tensor([5, 8], 'f32'))) return;
    const cases: Case[] = [
      { T: 19, H: 64, V: 777, chunkVocab: 300, chunkTokens: 11, kernel: 'cpu' },
      { T: 5, H: 36, V: 1003, tau: 0.8, kernel: 'cpu' },
      { T: 3, H: 8, V: 517, wdtype: 'f16', hdtype: 'f16', tau: 1.4, kernel: 'cpu' },
    ];
    for (const [i, c] of cases.entries()) {
      const what = JSON.stringify(c);
      const rng = new Rng(470 + i);
      const x = inputs(rng, c);
      const { h, w, y } = upload(gpu, c, x);
      const plain = headForward(gpu, h, w, y, opts(c));
      const kept = headForward(gpu, h, w, y, { ...opts(c), keepLogits: true });
      expect(plain.logits, what).toBeUndefined();
      expect(kept.logits?.shape, what).toEqual([c.T, c.V]);
      const z = await kept.logits!.read();
      const want = new Float64Array(c.T * c.V);
      for (let t = 0; t < c.T; t++) {
        for (let v = 0; v < c.V; v++) {
          let sum = 0;
          for (let k = 0; k < c.H; k++) sum += x.hidden[t * c.H + k] * x.weight[v * c.H + k];
          want[t * c.V + v] = sum;
        }
      }
      expectClose(z, want, { atol: 1e-4, rtol: 1e-4 }, `${what} logits`);
      for (const k of ['lse', 'logprob', 'entropy', 'loss'] as const) {
        expect(Array.from(await kept[k].read()), `${what} ${k}`).toEqual(Array.from(await plain[k].read()));
      }
      const grads = { dLogprob: gpu.tensor([c.T], 'f32', rng.randn(c.T)), dEntropy: gpu.tensor([c.T], 'f32', rng.randn(c.T)), dLoss: 0.3 };
      const dh0 = await headBackward(gpu, h, w, y, plain, grads, opts(c)).read();
      const dh1 = await headBackward(gpu, h, w, y, kept, grads, opts(c)).read();
      expect(Array.from(dh1), `${what} dh`).toEqual(Array.from(dh0));
      // It reads them: other logits give another gradient.
      const shifted = gpu.tensor([c.T, c.V], 'f32', z.map((v, j) => (j % 7 === 0 ? v + 1 : v)));
      const dh2 = await headBackward(gpu, h, w, y, { ...kept, logits: shifted }, grads, opts(c)).read();
      expect(dh2.some((v, j) => v !== dh0[j]), `${what} shifted logits`).toBe(true);
      expect(() => headBackward(gpu, h, w, y, { ...kept, logits: gpu.tensor([c.T, c.V + 1], 'f32') }, grads, opts(c))).toThrowError(/logits must be f32/);
      for (const t of [h, w, y, shifted, grads.dLogprob, grads.dEntropy, kept.logits!]) t.dispose();
    }
    // Into a view of a larger buffer (logitsOut), as a reused scratch buffer would hold them.
    {
      const c: Case = { T: 13, H: 16, V: 200, chunkVocab: 72, kernel: 'cpu' };
      const { h, w, y } = upload(gpu, c, inputs(new Rng(478), c));
      const big = gpu.tensor([40, c.V], 'f32');
      const fresh = headForward(gpu, h, w, y, { ...opts(c), keepLogits: true });
      const into = headForward(gpu, h, w, y, { ...opts(c), logitsOut: big.rows(0, c.T) });
      expect(Array.from(await into.logits!.read())).toEqual(Array.from(await fresh.logits!.read()));
      expect(() => headForward(gpu, h, w, y, { ...opts(c), logitsOut: big.rows(0, c.T + 1) })).toThrowError(/logitsOut must be f32\[13,200\]/);
      for (const t of [h, w, y, big, fresh.logits!]) t.dispose();
    }
    // Not on the tiled path, which never holds all the logits.
    const c: Case = { T: 7, H: 16, V: 300, kernel: 'tiled' };
    const { h, w, y } = upload(gpu, c, inputs(new Rng(479), c));
    expect(headForward(gpu, h, w, y, { ...opts(c), keepLogits: true }).logits).toBeUndefined();
  });

  it('leaves the tile counter at zero after forward and backward (fewer tiles than threads, and many)', async () => {
    const gpu = await freshGpu();
    try {
      await checkCase(gpu, { T: 1, H: 8, V: 9, kernel: 'cpu' }, 450);
      expect(await readTicketCounter(gpu)).toBe(0);
      await checkCase(gpu, { T: 21, H: 16, V: 2000, kernel: 'cpu' }, 451);
      expect(await readTicketCounter(gpu)).toBe(0);
    } finally {
      gpu.destroy();
    }
  });

  it('auto takes the tiled path on the cpu-tiled matmul where the token block would be thin, and is right there', async () => {
    const gpu = await testGpu();
    if (!cpuHeadUnfit(gpu, gpu.tensor([2, 8], 'f32'), gpu.tensor([5, 8], 'f32'))) {
      // H 132: a token block of 4 (head-cpu.ts), so the fused kernels only below 96 tokens.
      const ops = async (c: Case) => {
        gpu.profiling = true;
        await checkCase(gpu, c, 460 + c.T);
        const names = new Set((await gpu.takeTimings()).map((t) => t.op));
        gpu.profiling = false;
        return names;
      };
      const wide = await ops({ T: 100, H: 132, V: 301 });
      expect(wide.has('matmul-cpu-tiled')).toBe(true);
      expect(wide.has('headForward:cpu-stats') || wide.has('headBackward:cpu-dh')).toBe(false);
      const few = await ops({ T: 20, H: 132, V: 301 });
      expect(few.has('headForward:cpu-stats') && few.has('headBackward:cpu-dh')).toBe(true);
      expect(few.has('matmul-cpu-tiled')).toBe(false);
    }
  });

  it('the tiled path reads a weight packed once (packMatmulB) in vocabulary chunks cut on its column groups', async () => {
    const gpu = await testGpu();
    if (cpuHeadUnfit(gpu, gpu.tensor([2, 8], 'f32'), gpu.tensor([5, 8], 'f32'))) return;
    // H 132 over two windows of K: 128-column groups, so chunks of 700 rows become 640 (the last 520).
    const c: Case = { T: 100, H: 132, V: 1800, chunkVocab: 700, kernel: 'tiled' };
    const rng = new Rng(470);
    const x = inputs(rng, c);
    const { h, w, y } = upload(gpu, c, x);
    const packed = packMatmulB(gpu, w, { transB: true })!;
    expect(packed.columnGroup).toBe(128);
    await gpu.sync();
    const run = async (packedWeight?: PackedMatmulB) => {
      gpu.profiling = true;
      const fwd = headForward(gpu, h, w, y, { ...opts(c), packedWeight });
      const lse = await fwd.lse.read();
      const timings = await gpu.takeTimings();
      gpu.profiling = false;
      return { lse, ops: new Set(timings.map((t) => t.op)), tiles: new Set(timings.filter((t) => t.op.startsWith('headForward')).map((t) => t.shapes.match(/tile (\d+x\d+)/)?.[1])) };
    };
    const plain = await run();
    const fast = await run(packed);
    expect(plain.ops.has('matmul-cpu-tiled-pack')).toBe(true);
    expect(fast.ops.has('matmul-cpu-tiled')).toBe(true);
    expect(fast.ops.has('matmul-cpu-tiled-pack')).toBe(false);
    expect([...plain.tiles, ...fast.tiles]).toEqual(['100x700', '100x640']);
    const ref = headForwardRef(x.hidden, x.weight, x.targets, c.T, c.H, c.V, 1);
    expectClose(fast.lse, ref.lse, { atol: 2e-4, rtol: 2e-4 }, 'lse from the packed weight');
    // Given as a function, it is asked for only where the tiled path runs.
    let asked = 0;
    const provider = () => (asked++, packed);
    const results = [headForward(gpu, h, w, y, { kernel: 'cpu', packedWeight: provider })];
    expect(asked).toBe(0);
    results.push(headForward(gpu, h, w, y, { ...opts(c), packedWeight: provider }));
    expect(asked).toBe(1);
    expectClose(await results[1].lse.read(), ref.lse, { atol: 2e-4, rtol: 2e-4 }, 'lse, packed weight from a function');
    results.forEach((r) => [r.lse, r.logprob, r.entropy, r.loss, r.count].forEach((t) => t.dispose()));
    packed.dispose();
    [h, w, y].forEach((t) => t.dispose());
  });

  it('is what auto picks on this adapter exactly where it can run', async () => {
    const gpu = await testGpu();
    const unfit = cpuHeadUnfit(gpu, gpu.tensor([2, 8], 'f32'), gpu.tensor([5, 8], 'f32'));
    expect(unfit === undefined).toBe(/llvmpipe|lavapipe|swiftshader|cpu/i.test(JSON.stringify(gpu.adapter)));
    expect(cpuHeadUnfit(gpu, gpu.tensor([2, 6], 'f32'), gpu.tensor([5, 6], 'f32'))).toBeDefined();
    const h = gpu.tensor([2, 6], 'f32');
    expect(() => headForward(gpu, h, gpu.tensor([5, 6], 'f32'), gpu.tensor([2], 'i32'), { kernel: 'cpu' })).toThrowError(/kernel 'cpu'/);
  });
});

describe('head backward finite differences on the GPU forward', () => {
  const cases: Case[] = [
    { T: 5, H: 33, V: 1000, tau: 0.8, chunkVocab: 300 },
    { T: 17, H: 16, V: 77, wdtype: 'f16', chunkTokens: 6 },
    { T: 6, H: 12, V: 301, tau: 0.9, chunkVocab: 200, kernel: 'cpu' },
  ];
  for (const [i, c] of cases.entries()) {
    it(`L = Σ a·logprob + b·entropy + c·loss, T=${c.T} H=${c.H} V=${c.V}`, async () => {
      const gpu = await testGpu();
      const rng = new Rng(300 + i);
      const x = inputs(rng, c);
      const { h, w, y } = upload(gpu, c, x);
      const a = rng.randn(c.T);
      const b = rng.randn(c.T);
      const dLoss = 0.5;
      const L = async (hid: Float32Array) => {
        const ht = gpu.tensor([c.T, c.H], 'f32', hid);
        const r = headForward(gpu, ht, w, y, opts(c));
        const [lp, ent, loss] = [await r.logprob.read(), await r.entropy.read(), await r.loss.read()];
        [ht, r.logprob, r.entropy, r.lse, r.loss, r.count].forEach((t) => t.dispose());
        let s = dLoss * loss[0];
        for (let t = 0; t < c.T; t++) s += a[t] * lp[t] + b[t] * ent[t];
        return s;
      };
      const fwd = headForward(gpu, h, w, y, opts(c));
      const dlp = gpu.tensor([c.T], 'f32', a);
      const dent = gpu.tensor([c.T], 'f32', b);
      const dh = await headBackward(gpu, h, w, y, fwd, { dLogprob: dlp, dEntropy: dent, dLoss }, opts(c)).read();
      for (let k = 0; k < 3; k++) await checkDirectional(L, x.hidden, dh, rng, { eps: 1e-2, rtol: 2e-2, what: 'dh' });
    });
  }
});

describe('head semantics', () => {
  it('ignores negative targets, makes out-of-vocabulary targets NaN, and averages the loss over the rest', async () => {
    const gpu = await testGpu();
    const c = { T: 4, H: 8, V: 10 };
    const rng = new Rng(9);
    const x = inputs(rng, c);
    x.targets.set([3, -1, -100, 9]);
    const { h, w, y } = upload(gpu, c, x);
    const ref = headForwardRef(x.hidden, x.weight, x.targets, c.T, c.H, c.V);
    const fwd = headForward(gpu, h, w, y);
    const lp = await fwd.logprob.read();
    expect(lp[1]).toBe(0);
    expect(lp[2]).toBe(0);
    expect((await fwd.count.read())[0]).toBe(2);
    expectClose(await fwd.loss.read(), [-(ref.logprob[0] + ref.logprob[3]) / 2], { atol: 1e-5, rtol: 1e-5 });

    y.write([3, -1, 10, -1]);
    const bad = headForward(gpu, h, w, y);
    const badLp = await bad.logprob.read();
    expect(Number.isNaN(badLp[2])).toBe(true);
    expect(Number.isNaN((await bad.loss.read())[0])).toBe(true);

    y.write([-1, -1, -1, -1]);
    const none = headForward(gpu, h, w, y);
    expect((await none.loss.read())[0]).toBe(0);
    expect((await none.count.read())[0]).toBe(0);
    // Entropy is still defined where the target is ignored, and so is its gradient.
    expectClose(await none.entropy.read(), ref.entropy, { atol: 1e-5, rtol: 1e-5 });
    const ones = gpu.tensor([c.T], 'f32', [1, 1, 1, 1]);
    const dh = await headBackward(gpu, h, w, y, none, { dLogprob: ones, dEntropy: ones }).read();
    const dhRef = headBackwardRef(x.hidden, x.weight, [-1, -1, -1, -1], c.T, c.H, c.V, { dEntropy: [1, 1, 1, 1] });
    expectClose(dh, dhRef, { atol: 1e-5, rtol: 1e-4 });
  });

  it('accumulates into out when asked', async () => {
    const gpu = await testGpu();
    const c = { T: 3, H: 5, V: 40 };
    const rng = new Rng(11);
    const x = inputs(rng, c);
    const { h, w, y } = upload(gpu, c, x);
    const fwd = headForward(gpu, h, w, y);
    const prior = rng.randn(c.T * c.H);
    const out = gpu.tensor([c.T, c.H], 'f32', prior) as Tensor<'f32'>;
    headBackward(gpu, h, w, y, fwd, { dLoss: 1 }, { out, accumulate: true, chunkVocab: 16 });
    const dhRef = headBackwardRef(x.hidden, x.weight, x.targets, c.T, c.H, c.V, { dLoss: 1 });
    expectClose(await out.read(), dhRef.map((v, i) => v + prior[i]), { atol: 1e-5, rtol: 1e-4 });
  });

  it('validates shapes, dtypes and options before any GPU work', async () => {
    const gpu = await testGpu();
    const h = gpu.tensor([2, 4], 'f32');
    const w = gpu.tensor([5, 4], 'f32');
    const y = gpu.tensor([2], 'i32');
    const lse = gpu.tensor([2], 'f32');
    expect(() => headForward(gpu, h, gpu.tensor([5, 3], 'f32'), y)).toThrowError(ShapeError);
    expect(() => headForward(gpu, h, w, gpu.tensor([2], 'f32'))).toThrowError(/targets must be i32/);
    expect(() => headForward(gpu, h, w, gpu.tensor([3], 'i32'))).toThrowError(ShapeError);
    expect(() => headForward(gpu, h, w, y, { temperature: 0 })).toThrowError(/temperature/);
    expect(() => headForward(gpu, h, w, y, { chunkVocab: 2.5 })).toThrowError(/chunkVocab/);
    expect(() => headForward(gpu, h, w, y, { tiles: [2, 4] as unknown as HeadTiles })).toThrowError(/tiles/);
    expect(() => headBackward(gpu, h, w, y, { lse }, { dEntropy: lse })).toThrowError(/dEntropy needs/);
    expect(() => headBackward(gpu, h, w, y, { lse }, { dLoss: 1 })).toThrowError(/dLoss needs/);
    expect(() => headBackward(gpu, h, w, y, { lse: gpu.tensor([3], 'f32') }, {})).toThrowError(/lse must be/);
  });
});
