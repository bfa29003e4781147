import { afterAll, describe, expect, it } from 'vitest';
import { ShapeError, type Gpu } from '../src/index.js';
import { sampleGathering, sampleTokens, sampleUniform, type SampleOptions } from '../src/kernels/sampling.js';
import { sampleDistRef, sampleRef, type SampleRefRow } from '../src/reference/sampling.js';
import { Rng, expectClose, freshGpu, testGpu } from './helpers.js';

interface Sampled {
  ids: Int32Array;
  lp: Float32Array;
  lpTemp: Float32Array;
}

async function run(
  gpu: Gpu,
  logits: Float32Array,
  B: number,
  V: number,
  opts: SampleOptions,
  dtype: 'f32' | 'f16' = 'f32',
  sample: typeof sampleTokens = sampleTokens,
): Promise<Sampled> {
  const x = gpu.tensor([B, V], dtype, logits);
  const r = sample(gpu, x, opts);
  const out = { ids: await r.ids.read(), lp: await r.logprobs.read(), lpTemp: await r.tempLogprobs.read() };
  for (const t of [x, r.ids, r.logprobs, r.tempLogprobs]) t.dispose();
  return out;
}

/**
 * Checks every row against the float64 reference: the id is in the kept set, the row's uniform draw falls in the
 * id's CDF interval (up to f32 rounding of the cumulative sums), and both log-probabilities match. Where the top-p
 * mass of a boundary token lies within f32 rounding of topP (a 24-token nucleus at 0.9 - 1.6e-7 in one test row),
 * the kernel may keep it or not: the reference with topP moved by that rounding either way is accepted too.
 */
async function checkAgainstRef(
  gpu: Gpu,
  logits: Float32Array,
  B: number,
  V: number,
  opts: SampleOptions,
  temps?: number[],
  dtype: 'f32' | 'f16' = 'f32',
  sample: typeof sampleTokens = sampleTokens,
): Promise<Sampled> {
  const s = await run(gpu, logits, B, V, temps ? { ...opts, temperature: gpu.tensor([B], 'f32', temps) } : opts, dtype, sample);
  const cdfTol = 2e-6 * Math.sqrt(V) + 1e-6;
  const slack = 2e-7 * Math.sqrt(V) + 1e-6;
  const topPs = opts.topP !== undefined && opts.topP < 1 ? [opts.topP, opts.topP - slack, opts.topP + slack] : [opts.topP];
  for (let r = 0; r < B; r++) {
    const row = logits.subarray(r * V, (r + 1) * V);
    const T = temps ? temps[r] : (opts.temperature as number | undefined) ?? 1;
    const id = s.ids[r];
    const where = `row ${r} (V=${V}, T=${T}, k=${opts.topK}, p=${opts.topP}) id ${id}`;
    const failures = topPs.map((topP) => {
      const ref = sampleDistRef(row, { temperature: T, topK: opts.topK, topP, greedy: opts.greedy });
      return mismatch(ref, id, s.lp[r], s.lpTemp[r], sampleUniform(opts.seed ?? 0, opts.step ?? 0, r), cdfTol);
    });
    if (failures.every((f) => f !== undefined)) throw new Error(`${where}: ${failures[0]}`);
  }
  return s;
}

/** Why a sampled (id, logprobs) does not fit the reference row, or undefined if it does. */
function mismatch(ref: SampleRefRow, id: number, lp: number, lpTemp: number, u: number, cdfTol: number): string | undefined {
  if (!(id >= 0 && id < ref.probs.length) || !(ref.probs[id] > 0)) return 'id outside the kept set';
  if (!ref.greedy) {
    let before = 0;
    for (let i = 0; i < id; i++) before += ref.probs[i];
    if (u < before - cdfTol || u > before + ref.probs[id] + cdfTol) return `draw ${u} outside the CDF [${before}, ${before + ref.probs[id]})`;
  }
  const close = (got: number, want: number) => Math.abs(got - want) <= 2e-5 + 1e-5 * Math.abs(want);
  if (!close(lp, Math.log(ref.probs[id]))) return `logprob ${lp}, expected ${Math.log(ref.probs[id])}`;
  if (!close(lpTemp, Math.log(ref.tempProbs[id]))) return `temp logprob ${lpTemp}, expected ${Math.log(ref.tempProbs[id])}`;
  return undefined;
}

/** The kernel without gathering: every phase and the draw pass over the row. */
const scanningRows: typeof sampleTokens = (gpu, logits, opts = {}) => sampleGathering(gpu, logits, opts, 0);

function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

describe('sampleTokens', () => {
  it('greedy is argmax, lowest index on ties, with temperature 0 or the flag', async () => {
    const gpu = await testGpu();
    const rng = new Rng(1);
    const [B, V] = [4, 1000];
    const logits = rng.randn(B * V);
    logits[5] = logits[300] = logits[999] = 9; // row 0: three-way tie
    logits[V + 998] = logits[V + 999] = 7; // row 1: tie at the end
    const want = Array.from({ length: B }, (_, r) => argmax(logits.subarray(r * V, (r + 1) * V)));
    expect(want.slice(0, 2)).toEqual([5, 998]);
    for (const opts of [{ temperature: 0 }, { temperature: 0.7, greedy: true, topK: 3, seed: 9 }]) {
      const s = await checkAgainstRef(gpu, logits, B, V, opts);
      expect(Array.from(s.ids)).toEqual(want);
      expect(Array.from(s.lp)).toEqual([0, 0, 0, 0]);
    }
  });

  it('top-k = 1 gives the argmax at any temperature and seed', async () => {
    const gpu = await testGpu();
    const rng = new Rng(2);
    const [B, V] = [6, 517];
    const logits = rng.randn(B * V, 2);
    const want = Array.from({ length: B }, (_, r) => argmax(logits.subarray(r * V, (r + 1) * V)));
    for (const seed of [1, 2]) {
      const s = await checkAgainstRef(gpu, logits, B, V, { temperature: 1.5, topK: 1, seed });
      expect(Array.from(s.ids)).toEqual(want);
      expectClose(s.lp, new Float32Array(B), { atol: 1e-6, rtol: 0 }, 'top-1 logprob');
    }
  });

  it('matches the reference for temperature, top-k, top-p and both, on awkward V', async () => {
    const gpu = await testGpu();
    const rng = new Rng(3);
    const configs: SampleOptions[] = [
      { temperature: 0.7 },
      { temperature: 1.3, topK: 20 },
      { temperature: 0.8, topP: 0.9 },
      { temperature: 1, topK: 50, topP: 0.5 },
      { temperature: 2, topK: 3, topP: 0.99 },
    ];
    for (const V of [1, 7, 300, 1031]) {
      const B = 5;
      const logits = rng.randn(B * V, 3);
      for (const [c, opts] of configs.entries()) {
        for (const sample of [sampleTokens, scanningRows]) await checkAgainstRef(gpu, logits, B, V, { ...opts, seed: 100 + c, step: V }, undefined, 'f32', sample);
      }
    }
  });

  it('gathers a kept set that fits in workgroup memory and draws what the passes over the row draw', async () => {
    const gpu = await testGpu();
    const rng = new Rng(11);
    const [B, V] = [6, 6000];
    const logits = rng.randn(B * V, 2);
    // Ties: 20 values, ~300 tokens each, so top-k and top-p boundaries fall inside groups of equal logits.
    const ties = Float32Array.from({ length: B * V }, () => Math.floor(rng.uniform() * 20) * 0.21);
    // 5000 tokens tied at the top: more at the threads' maxima than any workgroup gathers, so top-k takes the
    // radix passes even for a small k.
    const crowded = Float32Array.from({ length: B * V }, (_, i) => (i % V < 5000 ? 1 : rng.randn(1)[0] - 3));
    let same = 0;
    let rows = 0;
    for (const x of [logits, ties, crowded]) {
      for (const opts of [
        { temperature: 0.7, topK: 50, topP: 0.9, seed: 1 },
        { temperature: 0.9, topK: 7, seed: 5 },
        { temperature: 0.8, topP: 0.9, seed: 6 }, // a flat nucleus: more mass than the threads' maxima reach
        { temperature: 0.25, topP: 0.95, seed: 7 }, // a peaked one, within them
        { temperature: 1, topK: 1000, seed: 2 },
        { temperature: 1.3, topK: 1900, topP: 0.6, seed: 3 },
        { temperature: 1, topK: 5000, topP: 0.95, seed: 4 }, // more than any workgroup gathers: passes over the row
      ]) {
        const gathered = await checkAgainstRef(gpu, x, B, V, opts);
        const scanned = await checkAgainstRef(gpu, x, B, V, opts, undefined, 'f32', scanningRows);
        same += gathered.ids.filter((id, r) => id === scanned.ids[r]).length;
        rows += B;
      }
    }
    // Both ways keep the same set and walk it in index order; only f32 rounding of the sums may move a draw.
    expect(same).toBeGreaterThanOrEqual(rows - 2);
  });

  it('takes per-row temperatures, 0 meaning greedy for that row', async () => {
    const gpu = await testGpu();
    const rng = new Rng(4);
    const [B, V] = [5, 250];
    const logits = rng.randn(B * V, 2);
    const temps = [0.5, 0, 1, 2, 0];
    const s = await checkAgainstRef(gpu, logits, B, V, { topP: 0.8, seed: 5 }, temps);
    expect(s.ids[1]).toBe(argmax(logits.subarray(V, 2 * V)));
    expect(s.lp[4]).toBe(0);
  });

  it('is reproducible per seed and step, differs across them, and does not depend on how rows are dispatched', async () => {
    const gpu = await testGpu();
    const rng = new Rng(5);
    const [B, V] = [64, 100];
    const logits = rng.randn(B * V, 0.5);
    const opts = { temperature: 1, topP: 0.95, seed: 11, step: 3 };
    const a = await run(gpu, logits, B, V, opts);
    const b = await run(gpu, logits, B, V, opts);
    expect(Array.from(b.ids)).toEqual(Array.from(a.ids));
    const differ = (x: Int32Array, y: Int32Array) => x.filter((v, i) => v !== y[i]).length;
    expect(differ(a.ids, (await run(gpu, logits, B, V, { ...opts, seed: 12 })).ids)).toBeGreaterThan(B / 2);
    expect(differ(a.ids, (await run(gpu, logits, B, V, { ...opts, step: 4 })).ids)).toBeGreaterThan(B / 2);
    // A 1 KiB binding cap makes the rows run in many windows (several dispatches).
    const small = await freshGpu({ maxBindingBytes: 1024 });
    try {
      expect(small.windows(B * V, 4, V).length).toBeGreaterThan(4);
      const w = await run(small, logits, B, V, opts);
      expect(Array.from(w.ids)).toEqual(Array.from(a.ids));
      expectClose(w.lp, a.lp, { atol: 0, rtol: 0 }, 'windowed logprobs');
    } finally {
      small.destroy();
    }
  });

  it('draws with the frequencies of the filtered distribution (chi-square, fixed seed)', async () => {
    const gpu = await testGpu();
    const rng = new Rng(6);
    const [B, V] = [2500, 37];
    const row = rng.randn(V, 1.5);
    const logits = new Float32Array(B * V);
    for (let r = 0; r < B; r++) logits.set(row, r * V);
    for (const opts of [
      { temperature: 0.9, topK: 20, topP: 0.95, seed: 77 },
      { temperature: 1.4, seed: 78 },
    ]) {
      const s = await run(gpu, logits, B, V, opts);
      const q = sampleDistRef(row, opts).probs;
      const counts = new Float64Array(V);
      for (const id of s.ids) counts[id]++;
      let chi2 = 0;
      let df = -1;
      let restObs = 0;
      let restExp = 0;
      for (let i = 0; i < V; i++) {
        if (q[i] === 0) {
          expect(counts[i], `token ${i} is outside the kept set`).toBe(0);
          continue;
        }
        if (q[i] * B < 5) {
          restObs += counts[i];
          restExp += q[i] * B;
          continue;
        }
        chi2 += (counts[i] - q[i] * B) ** 2 / (q[i] * B);
        df++;
      }
      if (restExp > 0) {
        chi2 += (restObs - restExp) ** 2 / restExp;
        df++;
      }
      expect(df).toBeGreaterThan(5);
      // Mean df, sd sqrt(2 df): six sd is far out for a correct sampler and well inside for a biased one.
      expect(chi2).toBeLessThan(df + 6 * Math.sqrt(2 * df));
    }
  });

  it('never draws masked (-inf) logits', async () => {
    const gpu = await testGpu();
    const rng = new Rng(7);
    const [B, V] = [40, 333];
    const logits = rng.randn(B * V);
    for (let i = 0; i < B * V; i++) if (i % V > 3 && rng.uniform() < 0.9) logits[i] = -Infinity;
    logits.fill(-Infinity, 0, V - 1); // row 0: one token left
    for (const opts of [
      { temperature: 1, seed: 1 },
      { temperature: 0.5, topK: 200, seed: 2 },
      { temperature: 0.5, topK: 20, topP: 0.9, seed: 4 }, // fewer than 20 threads may see a finite logit
      { temperature: 1, topP: 0.999, seed: 3 },
      { temperature: 0 },
    ]) {
      for (const sample of [sampleTokens, scanningRows]) {
        const s = await checkAgainstRef(gpu, logits, B, V, opts, undefined, 'f32', sample);
        for (let r = 0; r < B; r++) expect(logits[r * V + s.ids[r]]).toBeGreaterThan(-Infinity);
        expect(s.ids[0]).toBe(V - 1);
      }
    }
  });

  it('draws among logits whose logit/T overflows as their limit, and gives NaN, +inf or all -inf rows the sentinel (-1, NaN logprobs)', async () => {
    const gpu = await testGpu();
    const rng = new Rng(12);
    const V = 40;
    const row = (edit: (x: number[]) => void) => {
      const x = Array.from(rng.randn(V));
      edit(x);
      return x;
    };
    // At T = 2^-120 a logit of 1000 is +inf in f32 (1.3e39) while the randn ones stay finite (< 1e37).
    const rows = [
      row((x) => (x[5] = 1000)),
      row((x) => {
        [3, 17, 30].forEach((i) => (x[i] = 1000));
        x.fill(-Infinity, 20, 25);
      }),
      row((x) => (x[11] = NaN)),
      row((x) => x.fill(NaN)),
      row((x) => x.fill(-Infinity)),
      row(() => {}),
      row((x) => ((x[2] = Infinity), (x[9] = NaN))),
      row((x) => (x[7] = Infinity)), // an overflow in the model: no distribution, not a sure token
    ];
    const sentinel = [2, 3, 4, 6, 7];
    const B = rows.length;
    const logits = Float32Array.from(rows.flat());
    const cdfTol = 2e-6 * Math.sqrt(V) + 1e-6;
    const tiny = 2 ** -120;
    for (const opts of [
      { temperature: tiny, seed: 1 },
      { temperature: tiny, topK: 2, seed: 2 }, // top-2 of three tied overflows keeps all three
      { temperature: tiny, topK: 5, topP: 0.5, seed: 3 },
      { temperature: tiny, topP: 0.9, seed: 4 },
      { temperature: 0 },
      { temperature: tiny, greedy: true, topK: 3 },
    ] as SampleOptions[]) {
      for (const sample of [sampleTokens, scanningRows]) {
        const s = await run(gpu, logits, B, V, opts, 'f32', sample);
        for (let r = 0; r < B; r++) {
          const where = `row ${r} ${JSON.stringify(opts)} id ${s.ids[r]} lp ${s.lp[r]} ${s.lpTemp[r]}`;
          if (sentinel.includes(r)) {
            expect([s.ids[r], s.lp[r], s.lpTemp[r]], where).toEqual([-1, NaN, NaN]);
            continue;
          }
          // Float64 has the range the f32 kernel lacks: its softmax is the limit the kernel must give.
          const ref = sampleDistRef(logits.subarray(r * V, (r + 1) * V), { ...opts, temperature: opts.temperature as number });
          expect(mismatch(ref, s.ids[r], s.lp[r], s.lpTemp[r], sampleUniform(opts.seed ?? 0, 0, r), cdfTol), where).toBeUndefined();
        }
        expect([s.ids[0], s.lp[0] + 0, s.lpTemp[0] + 0]).toEqual([5, 0, 0]); // + 0: greedy's -log(1) is -0
        expect([3, 17, 30]).toContain(s.ids[1]);
        expectClose([s.lpTemp[1]], [-Math.log(3)], { atol: 1e-6, rtol: 0 }, 'three tied maxima');
      }
    }
  });

  it('gives the sentinel to rows whose per-row temperature the host would refuse, and refuses such a number', async () => {
    const gpu = await testGpu();
    const rng = new Rng(13);
    const [B, V] = [6, 30];
    const logits = rng.randn(B * V, 2);
    // NaN, +inf and a subnormal (1/T overflows f32, and GPUs may flush it to 0); then valid ones, 0 and -1 greedy.
    const temps = [NaN, Infinity, 1e-40, 0.8, 0, -1];
    const s = await run(gpu, logits, B, V, { temperature: gpu.tensor([B], 'f32', temps), seed: 3 });
    for (let r = 0; r < B; r++) {
      const where = `row ${r} T ${temps[r]}`;
      if (r < 3) {
        expect([s.ids[r], s.lp[r], s.lpTemp[r]], where).toEqual([-1, NaN, NaN]);
        continue;
      }
      const ref = sampleDistRef(logits.subarray(r * V, (r + 1) * V), { temperature: temps[r] });
      expect(mismatch(ref, s.ids[r], s.lp[r], s.lpTemp[r], sampleUniform(3, 0, r), 1e-5), where).toBeUndefined();
    }
    const x = gpu.tensor([B, V], 'f32', logits);
    const before = gpu.memory().inUse;
    for (const temperature of [1e-40, 1e-45, 2 ** -127, Infinity]) {
      const fn = () => sampleTokens(gpu, x, { temperature, seed: 1 });
      expect(fn).toThrowError(ShapeError);
      expect(fn).toThrowError(/temperature must be finite and 0 \(greedy\) or at least 2\^-126, got .* \[op=sampleTokens /);
    }
    expect(gpu.memory().inUse).toBe(before);
    x.dispose();
    // A tiny temperature that is still a normal f32 samples as the argmax, as the reference does.
    await checkAgainstRef(gpu, logits, B, V, { temperature: 1e-30, seed: 4 });
  });

  it('handles the full Qwen vocabulary (V = 152064)', async () => {
    const gpu = await testGpu();
    const rng = new Rng(8);
    const [B, V] = [2, 152064];
    const logits = rng.randn(B * V, 3);
    for (const opts of [
      { temperature: 0.7, topK: 50, topP: 0.9, seed: 4 },
      { temperature: 1, seed: 5 },
    ]) {
      await checkAgainstRef(gpu, logits, B, V, opts);
    }
  });

  it('keeps every tie at the top-k and top-p boundaries, and settles the threshold early where it can', async () => {
    const gpu = await testGpu();
    const rng = new Rng(10);
    const [B, V] = [4, 5000];
    // Logits from 12 values: the k-th largest sits in a group of ~400 equal ones.
    const ties = Float32Array.from({ length: B * V }, () => Math.floor(rng.uniform() * 12) * 0.37);
    // 50 logits near 10 among ones near 0: the first passes find a bin holding exactly the top 50; the top-p set
    // within them ends in a bin of one.
    const apart = Float32Array.from({ length: B * V }, (_, i) => (i % 100 === 7 ? 10 + rng.uniform() : rng.uniform() * 0.1));
    for (const logits of [ties, apart]) {
      for (const opts of [
        { temperature: 1, topK: 50, seed: 1 },
        { temperature: 0.7, topP: 0.3, seed: 2 },
        { temperature: 1.2, topK: 700, topP: 0.5, seed: 3 },
        { temperature: 1, topK: 1, seed: 4 },
        { temperature: 1, topK: 50, topP: 0.9, seed: 5 },
      ]) {
        await checkAgainstRef(gpu, logits, B, V, opts);
      }
    }
  });

  it('reads f16 logits', async () => {
    const gpu = await testGpu();
    if (!gpu.features.shaderF16) return expect(() => gpu.tensor([1], 'f16')).toThrowError(ShapeError);
    const rng = new Rng(9);
    const [B, V] = [3, 301];
    // Values exactly representable in f16, so the reference sees the same logits.
    const logits = rng.randn(B * V, 2).map((x) => Math.round(x * 256) / 256);
    await checkAgainstRef(gpu, logits, B, V, { temperature: 0.8, topK: 40, topP: 0.9, seed: 6 }, undefined, 'f16');
  });

  it('validates arguments before any GPU work', async () => {
    const gpu = await testGpu();
    const x = gpu.tensor([2, 5], 'f32');
    expect(() => sampleTokens(gpu, x.reshape([10]))).toThrowError(ShapeError);
    expect(() => sampleTokens(gpu, gpu.tensor([2, 5], 'i32'))).toThrowError(/f32 or f16/);
    expect(() => sampleTokens(gpu, x, { temperature: gpu.tensor([3], 'f32') })).toThrowError(/per-row temperature/);
    expect(() => sampleTokens(gpu, x, { topK: 1.5 })).toThrowError(/topK/);
    expect(() => sampleTokens(gpu, x, { topP: 0 })).toThrowError(/topP/);
    expect(() => sampleTokens(gpu, x, { out: { ids: gpu.tensor([2], 'f32') as never } })).toThrowError(/ids/);
    x.dispose();
  });
});

describe('sampling reference', () => {
  it('filters as Hugging Face does on a hand-made row', () => {
    const logits = [Math.log(0.1), Math.log(0.4), Math.log(0.2), Math.log(0.3)];
    const top2 = sampleDistRef(logits, { temperature: 1, topK: 2 }).probs;
    expectClose(top2, [0, 4 / 7, 0, 3 / 7], { atol: 1e-12, rtol: 0 });
    const nucleus = sampleDistRef(logits, { temperature: 1, topP: 0.65 }).probs;
    expectClose(nucleus, [0, 4 / 7, 0, 3 / 7], { atol: 1e-12, rtol: 0 });
    const nucleus3 = sampleDistRef(logits, { temperature: 1, topP: 0.75 }).probs;
    expectClose(nucleus3, [0, 4 / 9, 2 / 9, 3 / 9], { atol: 1e-12, rtol: 0 });
    expect(sampleRef([0, 0.5, 0, 0.5], 0.49)).toBe(1);
    expect(sampleRef([0, 0.5, 0, 0.5], 0.5)).toBe(3);
    expect(sampleRef([0.2, 0.8, 0], 0.9999999)).toBe(1);
  });

  it('hash draws look uniform', () => {
    const n = 20000;
    let mean = 0;
    const bins = new Float64Array(10);
    for (let r = 0; r < n; r++) {
      const u = sampleUniform(1, 2, r);
      mean += u / n;
      bins[Math.floor(u * 10)]++;
    }
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.01);
    for (const b of bins) expect(Math.abs(b - n / 10)).toBeLessThan(6 * Math.sqrt(n / 10));
  });
});

afterAll(async () => {
  await (await testGpu()).sync();
});
