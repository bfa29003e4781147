import { describe, expect, it } from 'vitest';
import { ShapeError, roundToF16, type Gpu, type Tensor } from '../src/index.js';
import { attention, type AttentionTile } from '../src/kernels/attention.js';
import { attentionBackward } from '../src/kernels/attention-backward.js';
import { attentionCacheAppend, attentionCacheAppendKV, attentionDecode, attentionDecodePath } from '../src/kernels/attention-decode.js';
import { cpuDecodeRowBlock } from '../src/kernels/attention-cpu.js';
import { attentionPath } from '../src/kernels/attention-common.js';
import {
  attentionBackwardRef,
  attentionCacheAppendRef,
  attentionDecodeRef,
  attentionRef,
  type AttentionDims,
} from '../src/reference/attention.js';
import { Rng, checkDirectional, dot, expectClose, freshGpu, testGpu } from './helpers.js';
import { readTicketCounter } from '../src/kernels/tickets.js';

type F = 'f32' | 'f16';

interface Case extends AttentionDims {
  causal?: boolean;
  lengths?: number[];
  dtype?: F;
  tile?: AttentionTile;
  /** Force the tile counter on or off (default: on for a software adapter, as here). */
  tickets?: boolean;
  /** Kernels under test: the workgroup kernels (default here) or the CPU ones (attention-cpu.ts). */
  path?: Path;
  /** Rows a lane owns in the CPU kernels (default by head dim). */
  cpuRows?: number;
}

type Path = 'scalar' | 'cpu-tiled';
const PATHS: Path[] = ['scalar', 'cpu-tiled'];

const TOL = {
  f32: { atol: 1e-4, rtol: 1e-3 },
  f16: { atol: 4e-3, rtol: 1e-2 },
};

function label(c: Case): string {
  const tile = c.tile ? ` tile ${c.tile.bq}x${c.tile.bk}` : '';
  const lens = c.lengths ? ` lengths [${c.lengths}]` : '';
  const tickets = c.tickets === undefined ? '' : ` tickets ${c.tickets ? 'on' : 'off'}`;
  const rows = c.cpuRows ? ` ${c.cpuRows} rows a lane` : '';
  return `${c.path ?? 'scalar'}${rows}: B${c.B} T${c.T} S${c.S} Hq${c.Hq} Hkv${c.Hkv} D${c.D} ${c.dtype ?? 'f32'}${c.causal === false ? ' non-causal' : ''}${lens}${tile}${tickets}`;
}

/** Random inputs, rounded to the storage dtype so the reference sees what the GPU sees. */
function inputs(c: Case, rng: Rng) {
  const r = (n: number) => (c.dtype === 'f16' ? roundToF16(rng.randn(n)) : rng.randn(n));
  return { q: r(c.B * c.T * c.Hq * c.D), k: r(c.B * c.S * c.Hkv * c.D), v: r(c.B * c.S * c.Hkv * c.D), dO: r(c.B * c.T * c.Hq * c.D) };
}

function upload(gpu: Gpu, c: Case, x: ReturnType<typeof inputs>) {
  const dt = c.dtype ?? 'f32';
  return {
    q: gpu.tensor([c.B, c.T, c.Hq, c.D], dt, x.q),
    k: gpu.tensor([c.B, c.S, c.Hkv, c.D], dt, x.k),
    v: gpu.tensor([c.B, c.S, c.Hkv, c.D], dt, x.v),
    dO: gpu.tensor([c.B, c.T, c.Hq, c.D], dt, x.dO),
    lengths: c.lengths ? gpu.tensor([c.B], 'i32', c.lengths) : undefined,
  };
}

function dispose(...ts: Array<Tensor | undefined>) {
  for (const t of ts) t?.dispose();
}

const FWD_CASES: Case[] = [
  { B: 1, T: 5, S: 5, Hq: 2, Hkv: 2, D: 8 },
  { B: 2, T: 17, S: 17, Hq: 6, Hkv: 2, D: 16, lengths: [17, 9] },
  { B: 1, T: 33, S: 40, Hq: 7, Hkv: 1, D: 24 },
  { B: 2, T: 1, S: 33, Hq: 4, Hkv: 2, D: 32, lengths: [33, 20] },
  { B: 2, T: 17, S: 29, Hq: 4, Hkv: 4, D: 20, causal: false, lengths: [29, 11] },
  { B: 2, T: 13, S: 13, Hq: 6, Hkv: 3, D: 7, lengths: [0, 13] },
  { B: 1, T: 9, S: 9, Hq: 2, Hkv: 1, D: 128 },
  { B: 1, T: 9, S: 12, Hq: 2, Hkv: 1, D: 128, dtype: 'f16' },
  { B: 2, T: 33, S: 33, Hq: 4, Hkv: 2, D: 16, dtype: 'f16', lengths: [33, 30] },
  { B: 1, T: 70, S: 70, Hq: 2, Hkv: 1, D: 16 },
  { B: 1, T: 33, S: 37, Hq: 3, Hkv: 1, D: 12, tile: { bq: 8, bk: 4 } },
  { B: 2, T: 33, S: 33, Hq: 2, Hkv: 2, D: 12, tile: { bq: 8, bk: 4 }, lengths: [30, 5], causal: false },
  // One workgroup per tile, as on a GPU (the other cases draw tiles from the counter on this adapter).
  { B: 2, T: 17, S: 17, Hq: 6, Hkv: 2, D: 16, lengths: [17, 9], tickets: false },
  { B: 1, T: 33, S: 37, Hq: 3, Hkv: 1, D: 12, tile: { bq: 8, bk: 4 }, tickets: false },
  // The CPU kernels. D 16 at its default rows a lane (8 forward, 4 backward: the tiny policy's, which the policy
  // tests check against PyTorch too); other head dims with fewer rows, since llvmpipe's compile time grows fast
  // with the unrolled rows (docs/BENCHMARKS.md): D 12 (three vec4 a row) at 3, D 32 at 2, D 8 at 1 and in f16 at 2.
  // T and S are not multiples of the blocks or of the 8 keys a step.
  { B: 1, T: 5, S: 5, Hq: 2, Hkv: 2, D: 8, path: 'cpu-tiled', cpuRows: 1 },
  { B: 2, T: 17, S: 17, Hq: 6, Hkv: 2, D: 16, lengths: [17, 9], path: 'cpu-tiled' },
  { B: 1, T: 70, S: 70, Hq: 2, Hkv: 1, D: 16, path: 'cpu-tiled' },
  { B: 1, T: 77, S: 81, Hq: 7, Hkv: 1, D: 12, path: 'cpu-tiled', cpuRows: 3 },
  { B: 2, T: 1, S: 33, Hq: 4, Hkv: 2, D: 32, lengths: [33, 20], path: 'cpu-tiled', cpuRows: 2 },
  { B: 2, T: 40, S: 45, Hq: 4, Hkv: 2, D: 32, lengths: [45, 26], path: 'cpu-tiled', cpuRows: 2 },
  { B: 2, T: 17, S: 29, Hq: 4, Hkv: 4, D: 12, causal: false, lengths: [29, 11], path: 'cpu-tiled', cpuRows: 3 },
  { B: 2, T: 13, S: 13, Hq: 6, Hkv: 3, D: 8, lengths: [0, 13], path: 'cpu-tiled', cpuRows: 1 },
  { B: 1, T: 21, S: 26, Hq: 2, Hkv: 1, D: 8, path: 'cpu-tiled', cpuRows: 1 },
  { B: 2, T: 33, S: 33, Hq: 4, Hkv: 2, D: 8, dtype: 'f16', lengths: [33, 30], path: 'cpu-tiled', cpuRows: 2 },
];

describe('attention forward', () => {
  for (const c of FWD_CASES) {
    it(`matches the float64 reference: ${label(c)}`, async () => {
      const gpu = await testGpu();
      const rng = new Rng(1000 + c.T * 31 + c.D);
      const x = inputs(c, rng);
      const t = upload(gpu, c, x);
      const { o, lse } = attention(gpu, t.q, t.k, t.v, { causal: c.causal, lengths: t.lengths, tile: c.tile, tickets: c.tickets, path: c.path ?? 'scalar', cpuRows: c.cpuRows });
      const ref = attentionRef(x.q, x.k, x.v, c, { causal: c.causal, lengths: c.lengths });
      const tol = TOL[c.dtype ?? 'f32'];
      expectClose(await o.read(), ref.o, tol, 'o');
      expectClose(await lse.read(), ref.lse, { atol: 1e-4, rtol: 1e-4 }, 'lse');
      dispose(t.q, t.k, t.v, t.dO, t.lengths, o, lse);
    });
  }

  for (const path of PATHS) {
    it(`${path}: zeroes padded rows and ignores what padded keys hold`, async () => {
      const gpu = await testGpu();
      const c: Case = { B: 2, T: 19, S: 19, Hq: 4, Hkv: 2, D: 16, lengths: [19, 7] };
      const rng = new Rng(7);
      const x = inputs(c, rng);
      const t = upload(gpu, c, x);
      const a = (await attention(gpu, t.q, t.k, t.v, { lengths: t.lengths, path }).o.read()).slice();
      // Garbage in sequence 1's padded key rows must not change anything.
      const k2 = x.k.slice();
      const v2 = x.v.slice();
      for (let j = 7; j < 19; j++) {
        for (let e = 0; e < c.Hkv * c.D; e++) {
          k2[(19 + j) * c.Hkv * c.D + e] = 1e4;
          v2[(19 + j) * c.Hkv * c.D + e] = -1e4;
        }
      }
      t.k.write(k2);
      t.v.write(v2);
      const b = await attention(gpu, t.q, t.k, t.v, { lengths: t.lengths, path }).o.read();
      expect(Array.from(b)).toEqual(Array.from(a));
      const row = c.Hq * c.D;
      for (let i = 7; i < 19; i++) for (let e = 0; e < row; e++) expect(b[(19 + i) * row + e] === 0).toBe(true);
      expect(b.slice(19 * row, 26 * row).some((y) => y !== 0)).toBe(true);
      dispose(t.q, t.k, t.v, t.dO, t.lengths);
    });

    it(`${path}: a chunk of queries after cached keys equals the tail of the full causal pass`, async () => {
      const gpu = await testGpu();
      const c: Case = { B: 1, T: 21, S: 21, Hq: 4, Hkv: 2, D: 16 };
      const x = inputs(c, new Rng(11));
      const t = upload(gpu, c, x);
      const full = await attention(gpu, t.q, t.k, t.v, { path }).o.read();
      const tail = 6;
      const row = c.Hq * c.D;
      const qTail = gpu.tensor([1, tail, c.Hq, c.D], 'f32', x.q.slice((c.T - tail) * row));
      const part = await attention(gpu, qTail, t.k, t.v, { path }).o.read();
      expectClose(part, full.slice((c.T - tail) * row), { atol: 1e-5, rtol: 1e-4 }, 'chunk');
      dispose(t.q, t.k, t.v, t.dO, qTail);
    });

    it(`${path}: honours a custom scale`, async () => {
      const gpu = await testGpu();
      const c: Case = { B: 1, T: 6, S: 6, Hq: 2, Hkv: 1, D: 16 };
      const x = inputs(c, new Rng(5));
      const t = upload(gpu, c, x);
      const { o } = attention(gpu, t.q, t.k, t.v, { scale: 0.9, path });
      expectClose(await o.read(), attentionRef(x.q, x.k, x.v, c, { scale: 0.9 }).o, TOL.f32, 'o');
      dispose(t.q, t.k, t.v, t.dO, o);
    });

    it(`${path}: draws tiles from the counter (the default on a software adapter), which is back at zero after forward and backward`, async () => {
      const gpu = await freshGpu();
      try {
        const c: Case = { B: 2, T: 21, S: 21, Hq: 4, Hkv: 2, D: 16, lengths: [21, 12] };
        const x = inputs(c, new Rng(77));
        const t = upload(gpu, c, x);
        const { o, lse } = attention(gpu, t.q, t.k, t.v, { lengths: t.lengths, tickets: true, path });
        expect(await readTicketCounter(gpu)).toBe(0);
        const g = attentionBackward(gpu, t.q, t.k, t.v, o, lse, t.dO, { lengths: t.lengths, tickets: true, path });
        const ref = attentionBackwardRef(x.q, x.k, x.v, x.dO, c, { lengths: c.lengths });
        expectClose(await g.dk.read(), ref.dk, TOL.f32, 'dk');
        expect(await readTicketCounter(gpu)).toBe(0);
      } finally {
        gpu.destroy();
      }
    });
  }

  it('takes the CPU kernels by default on this adapter, for head dims that are a multiple of 4', async () => {
    const gpu = await testGpu();
    expect(attentionPath(gpu, 16)).toBe(gpu.softwareAdapter ? 'cpu-tiled' : 'scalar');
    expect(attentionPath(gpu, 6)).toBe('scalar');
    const c: Case = { B: 2, T: 17, S: 17, Hq: 6, Hkv: 2, D: 16, lengths: [17, 9] };
    const x = inputs(c, new Rng(31));
    const t = upload(gpu, c, x);
    const run = async (path?: Path) => {
      const f = attention(gpu, t.q, t.k, t.v, { lengths: t.lengths, path });
      const g = attentionBackward(gpu, t.q, t.k, t.v, f.o, f.lse, t.dO, { lengths: t.lengths, path });
      const out = [await f.o.read(), await g.dq.read(), await g.dk.read(), await g.dv.read()].map((a) => Array.from(a));
      dispose(f.o, f.lse, g.dq, g.dk, g.dv);
      return out;
    };
    // Bit for bit: the same kernels ran.
    expect(await run()).toEqual(await run(attentionPath(gpu, 16)));
    dispose(t.q, t.k, t.v, t.dO, t.lengths);
  });
});

const BWD_CASES: Case[] = [
  { B: 1, T: 5, S: 5, Hq: 2, Hkv: 2, D: 8 },
  { B: 2, T: 17, S: 17, Hq: 6, Hkv: 2, D: 16, lengths: [17, 9] },
  { B: 1, T: 17, S: 23, Hq: 7, Hkv: 1, D: 24 },
  { B: 2, T: 17, S: 29, Hq: 4, Hkv: 4, D: 20, causal: false, lengths: [29, 11] },
  { B: 1, T: 9, S: 12, Hq: 2, Hkv: 1, D: 128, dtype: 'f16' },
  { B: 2, T: 33, S: 33, Hq: 4, Hkv: 2, D: 16, dtype: 'f16', lengths: [33, 30] },
  { B: 1, T: 33, S: 37, Hq: 3, Hkv: 1, D: 12, tile: { bq: 8, bk: 4 } },
  { B: 1, T: 40, S: 40, Hq: 2, Hkv: 1, D: 16, lengths: [35] },
  { B: 2, T: 17, S: 29, Hq: 4, Hkv: 4, D: 20, causal: false, lengths: [29, 11], tickets: false },
  { B: 1, T: 33, S: 37, Hq: 3, Hkv: 1, D: 12, tile: { bq: 8, bk: 4 }, tickets: false },
  { B: 2, T: 17, S: 17, Hq: 6, Hkv: 2, D: 16, lengths: [17, 9], path: 'cpu-tiled' },
  { B: 1, T: 77, S: 83, Hq: 7, Hkv: 1, D: 12, path: 'cpu-tiled', cpuRows: 3 },
  { B: 2, T: 17, S: 29, Hq: 4, Hkv: 4, D: 12, causal: false, lengths: [29, 11], path: 'cpu-tiled', cpuRows: 3 },
  { B: 2, T: 40, S: 45, Hq: 4, Hkv: 2, D: 32, lengths: [45, 26], path: 'cpu-tiled', cpuRows: 2 },
  { B: 1, T: 40, S: 40, Hq: 2, Hkv: 1, D: 16, lengths: [35], path: 'cpu-tiled' },
  { B: 1, T: 21, S: 26, Hq: 2, Hkv: 1, D: 8, lengths: [23], path: 'cpu-tiled', cpuRows: 1 },
  { B: 2, T: 33, S: 33, Hq: 4, Hkv: 2, D: 8, dtype: 'f16', lengths: [33, 30], path: 'cpu-tiled', cpuRows: 2 },
];

describe('attention backward', () => {
  for (const c of BWD_CASES) {
    it(`matches the float64 reference: ${label(c)}`, async () => {
      const gpu = await testGpu();
      const rng = new Rng(2000 + c.T * 17 + c.D);
      const x = inputs(c, rng);
      const t = upload(gpu, c, x);
      const opts = { causal: c.causal, lengths: t.lengths, tile: c.tile, tickets: c.tickets, path: c.path ?? 'scalar', cpuRows: c.cpuRows };
      const { o, lse } = attention(gpu, t.q, t.k, t.v, opts);
      const g = attentionBackward(gpu, t.q, t.k, t.v, o, lse, t.dO, opts);
      const ref = attentionBackwardRef(x.q, x.k, x.v, x.dO, c, { causal: c.causal, lengths: c.lengths });
      const tol = c.dtype === 'f16' ? { atol: 1e-2, rtol: 2e-2 } : TOL.f32;
      expectClose(await g.dq.read(), ref.dq, tol, 'dq');
      expectClose(await g.dk.read(), ref.dk, tol, 'dk');
      expectClose(await g.dv.read(), ref.dv, tol, 'dv');
      dispose(t.q, t.k, t.v, t.dO, t.lengths, o, lse, g.dq, g.dk, g.dv);
    });
  }

  const FD_CASES: Case[] = [
    { B: 2, T: 11, S: 14, Hq: 6, Hkv: 2, D: 6, lengths: [14, 8] },
    { B: 1, T: 9, S: 9, Hq: 7, Hkv: 1, D: 8, causal: false },
    { B: 2, T: 11, S: 14, Hq: 6, Hkv: 2, D: 16, lengths: [14, 8], path: 'cpu-tiled' },
    { B: 1, T: 9, S: 9, Hq: 7, Hkv: 1, D: 16, causal: false, path: 'cpu-tiled' },
  ];
  for (const c of FD_CASES) {
    it(`agrees with the reference and finite differences of the GPU forward: ${label(c)}`, async () => {
      const gpu = await testGpu();
      const rng = new Rng(3000 + c.T);
      const x = inputs(c, rng);
      const t = upload(gpu, c, x);
      const opts = { causal: c.causal, lengths: t.lengths, path: c.path ?? 'scalar' };
      const { o, lse } = attention(gpu, t.q, t.k, t.v, opts);
      const g = attentionBackward(gpu, t.q, t.k, t.v, o, lse, t.dO, opts);
      const grads = { q: await g.dq.read(), k: await g.dk.read(), v: await g.dv.read() };
      const ref = attentionBackwardRef(x.q, x.k, x.v, x.dO, c, { causal: c.causal, lengths: c.lengths });
      expectClose(grads.q, ref.dq, TOL.f32, 'dq');
      expectClose(grads.k, ref.dk, TOL.f32, 'dk');
      expectClose(grads.v, ref.dv, TOL.f32, 'dv');
      // loss = <dO, attention(q, k, v)>, so dO is its gradient with respect to the output.
      for (const which of ['q', 'k', 'v'] as const) {
        const loss = async (xi: Float32Array) => {
          const tmp = gpu.tensor(t[which].shape, 'f32', xi);
          const args = { q: t.q, k: t.k, v: t.v, [which]: tmp };
          const r = attention(gpu, args.q, args.k, args.v, opts);
          const y = await r.o.read();
          dispose(tmp, r.o, r.lse);
          return dot(y, x.dO);
        };
        await checkDirectional(loss, x[which], grads[which], rng, { eps: 1e-2, rtol: 1e-2, what: `d${which}` });
      }
      dispose(t.q, t.k, t.v, t.dO, t.lengths, o, lse, g.dq, g.dk, g.dv);
    });
  }

  it('reference backward agrees with float64 finite differences of the reference forward', () => {
    const rng = new Rng(99);
    const randn64 = (n: number) => Float64Array.from(rng.randn(n));
    for (const c of [
      { B: 2, T: 6, S: 9, Hq: 4, Hkv: 2, D: 5, lengths: [9, 6] },
      { B: 1, T: 7, S: 7, Hq: 3, Hkv: 1, D: 4, causal: false },
    ] as Case[]) {
      const x = { q: randn64(c.B * c.T * c.Hq * c.D), k: randn64(c.B * c.S * c.Hkv * c.D), v: randn64(c.B * c.S * c.Hkv * c.D) };
      const dO = randn64(c.B * c.T * c.Hq * c.D);
      const ro = { causal: c.causal, lengths: c.lengths };
      const ref = attentionBackwardRef(x.q, x.k, x.v, dO, c, ro);
      const grads = { q: ref.dq, k: ref.dk, v: ref.dv };
      for (const which of ['q', 'k', 'v'] as const) {
        const dir = randn64(x[which].length);
        const eps = 1e-5;
        const loss = (sign: number) => {
          const args = { ...x, [which]: x[which].map((xi, i) => xi + sign * eps * dir[i]) };
          return dot(attentionRef(args.q, args.k, args.v, c, ro).o, dO);
        };
        const fd = (loss(1) - loss(-1)) / (2 * eps);
        const an = dot(grads[which], dir);
        expect(Math.abs(fd - an), `ref d${which}: fd ${fd} vs ${an}`).toBeLessThan(1e-7 * Math.max(1, Math.abs(an)));
      }
    }
  });
});

describe('attention decode', () => {
  // kvDtype: f16 caches under f32 queries (generate()'s caches for f16 weights).
  const DEC: Array<{ B: number; T: number; Smax: number; Hq: number; Hkv: number; D: number; lengths: number[]; dtype?: F; kvDtype?: F; splits?: number; bk?: number }> = [
    { B: 2, T: 1, Smax: 40, Hq: 4, Hkv: 2, D: 16, lengths: [40, 13] },
    { B: 1, T: 1, Smax: 37, Hq: 7, Hkv: 1, D: 24, lengths: [37], splits: 5, bk: 4 },
    { B: 3, T: 3, Smax: 21, Hq: 6, Hkv: 2, D: 20, lengths: [21, 3, 9], splits: 1 },
    { B: 2, T: 1, Smax: 50, Hq: 2, Hkv: 1, D: 128, lengths: [1, 50] },
    { B: 2, T: 2, Smax: 33, Hq: 4, Hkv: 2, D: 32, lengths: [33, 17], dtype: 'f16', splits: 100, bk: 8 },
    { B: 1, T: 1, Smax: 70, Hq: 4, Hkv: 2, D: 16, lengths: [67], splits: 3 },
    // Within the CPU kernel's rows (group · T · D/4 <= 16): new tokens under the causal limit, a length equal to T;
    // and one chunk per (sequence, KV head), written without the combine pass, in f16.
    { B: 3, T: 2, Smax: 29, Hq: 4, Hkv: 2, D: 12, lengths: [29, 2, 17] },
    { B: 4, T: 1, Smax: 45, Hq: 4, Hkv: 2, D: 16, lengths: [45, 1, 30, 8], dtype: 'f16' },
    // Past the CPU kernel's rows a lane holds: row blocks, each a workgroup of its own (3 of a KV head's 6 rows
    // here, a block ending in the middle of a head's new tokens), and Qwen2.5-0.5B's 7 query heads per KV head at
    // D 64, one row a block; both written directly (one chunk). Row blocks through the combine pass: the D 24 case
    // above (7 one-row blocks, 5 chunks) and the D 128 one (one-row blocks, 2 chunks).
    { B: 2, T: 2, Smax: 26, Hq: 6, Hkv: 2, D: 20, lengths: [26, 9], splits: 1 },
    { B: 1, T: 1, Smax: 75, Hq: 14, Hkv: 2, D: 64, lengths: [75] },
    // f16 caches under f32 queries: the workgroup kernel on rows that are not whole vec4s, and both kernels at D 16.
    { B: 3, T: 2, Smax: 23, Hq: 6, Hkv: 2, D: 18, lengths: [23, 2, 11], kvDtype: 'f16', splits: 3 },
    { B: 2, T: 1, Smax: 40, Hq: 4, Hkv: 2, D: 16, lengths: [40, 13], kvDtype: 'f16' },
  ];
  for (const c of DEC) {
    const kvLabel = c.kvDtype ? ` kv ${c.kvDtype}` : '';
    it(`matches the reference and the full forward: B${c.B} T${c.T} Smax${c.Smax} Hq${c.Hq} Hkv${c.Hkv} D${c.D} ${c.dtype ?? 'f32'}${kvLabel} splits ${c.splits ?? 'auto'}`, async () => {
      const gpu = await testGpu();
      const rng = new Rng(4000 + c.Smax);
      const dt = c.dtype ?? 'f32';
      const kvDt = c.kvDtype ?? dt;
      const r = (n: number, t: F = dt) => (t === 'f16' ? roundToF16(rng.randn(n)) : rng.randn(n));
      // The whole sequences: queries for every position, and the cache rows.
      const qFull = r(c.B * c.Smax * c.Hq * c.D);
      const kc = r(c.B * c.Smax * c.Hkv * c.D, kvDt);
      const vc = r(c.B * c.Smax * c.Hkv * c.D, kvDt);
      const row = c.Hq * c.D;
      const qNew = new Float32Array(c.B * c.T * row);
      for (let b = 0; b < c.B; b++) {
        for (let t = 0; t < c.T; t++) {
          const pos = c.lengths[b] - c.T + t;
          if (pos >= 0) qNew.set(qFull.subarray((b * c.Smax + pos) * row, (b * c.Smax + pos + 1) * row), (b * c.T + t) * row);
        }
      }
      const tq = gpu.tensor([c.B, c.T, c.Hq, c.D], dt, qNew);
      const tk = gpu.tensor([c.B, c.Smax, c.Hkv, c.D], kvDt, kc);
      const tv = gpu.tensor([c.B, c.Smax, c.Hkv, c.D], kvDt, vc);
      const lens = gpu.tensor([c.B], 'i32', c.lengths);
      const tol = TOL[dt];
      const want = attentionDecodeRef(qNew, kc, vc, c, c.lengths);
      // Both kernels: the workgroup one with the case's chunks and tiles, and where its rows fit, the CPU one with
      // its chunks (whose passes of 8 keys fall across the cache's end and the lengths).
      const o = await attentionDecode(gpu, tq, tk, tv, lens, { splits: c.splits, bk: c.bk, path: 'scalar' }).read();
      expectClose(o, want, tol, 'workgroup decode vs reference');
      if (attentionDecodePath(gpu, c.D, (c.Hq / c.Hkv) * c.T) === 'cpu-tiled') {
        const oCpu = await attentionDecode(gpu, tq, tk, tv, lens, { splits: c.splits, path: 'cpu-tiled' }).read();
        expectClose(oCpu, want, tol, 'cpu-tiled decode vs reference');
      }

      // The full causal forward over the padded batch gives the same rows at positions len-T..len-1.
      const tqFull = gpu.tensor([c.B, c.Smax, c.Hq, c.D], dt, qFull);
      // The workgroup forward: its pipelines are compiled for this file anyway, unlike the CPU ones at these head dims.
      // It takes one dtype: f16 caches' values go to it in f32, exactly.
      const [fk, fv] = kvDt === dt ? [tk, tv] : [gpu.tensor(tk.shape, dt, kc), gpu.tensor(tv.shape, dt, vc)];
      const full = await attention(gpu, tqFull, fk, fv, { lengths: lens, path: 'scalar' }).o.read();
      const expected = new Float32Array(o.length);
      for (let b = 0; b < c.B; b++) {
        for (let t = 0; t < c.T; t++) {
          const pos = c.lengths[b] - c.T + t;
          if (pos >= 0) expected.set(full.subarray((b * c.Smax + pos) * row, (b * c.Smax + pos + 1) * row), (b * c.T + t) * row);
        }
      }
      expectClose(o, expected, tol, 'decode vs forward');
      dispose(tq, tk, tv, lens, tqFull, fk, fv);
    });
  }

  it('takes the cpu-tiled kernel by default on a software adapter, and refuses it where it cannot run', async () => {
    const gpu = await testGpu();
    const opNames = async (dims: { T: number; Hq: number; Hkv: number; D: number }, opts: Parameters<typeof attentionDecode>[5] = {}) => {
      const q = gpu.tensor([1, dims.T, dims.Hq, dims.D], 'f32');
      const kv = gpu.tensor([1, 9, dims.Hkv, dims.D], 'f32');
      const lens = gpu.tensor([1], 'i32', [9]);
      gpu.profiling = true;
      await attentionDecode(gpu, q, kv, kv, lens, opts).read();
      const ops = (await gpu.takeTimings()).map((t) => t.op).filter((op) => op.startsWith('attentionDecode'));
      gpu.profiling = false;
      dispose(q, kv, lens);
      return ops;
    };
    // (9 keys in 2 chunks: the CPU kernel, then the combine pass.)
    const cpu = gpu.softwareAdapter ? ['attentionDecode.cpu', 'attentionDecode.combine'] : ['attentionDecode.split', 'attentionDecode.combine'];
    expect(await opNames({ T: 1, Hq: 4, Hkv: 2, D: 16 })).toEqual(cpu);
    // More rows than a lane holds go to several workgroups (row blocks), still the CPU kernel.
    expect(await opNames({ T: 1, Hq: 6, Hkv: 2, D: 32 })).toEqual(cpu);
    // A workgroup-kernel knob, a head dim that is not a multiple of 4, or one row past what a lane holds: the workgroup kernel.
    const workgroup = ['attentionDecode.split', 'attentionDecode.combine'];
    expect(await opNames({ T: 1, Hq: 4, Hkv: 2, D: 16 }, { bk: 4 })).toEqual(workgroup);
    expect(await opNames({ T: 1, Hq: 4, Hkv: 2, D: 6 })).toEqual(workgroup);
    expect(await opNames({ T: 1, Hq: 2, Hkv: 2, D: 132 })).toEqual(workgroup);
    expect(attentionDecodePath(gpu, 32, 2)).toBe(gpu.softwareAdapter ? 'cpu-tiled' : 'scalar');
    expect(attentionDecodePath(gpu, 32, 7)).toBe(gpu.softwareAdapter ? 'cpu-tiled' : 'scalar');
    expect(attentionDecodePath(gpu, 64, 14)).toBe(gpu.softwareAdapter ? 'cpu-tiled' : 'scalar');
    expect(attentionDecodePath(gpu, 128, 7)).toBe(gpu.softwareAdapter ? 'cpu-tiled' : 'scalar');
    expect(attentionDecodePath(gpu, 132, 1)).toBe('scalar');
    // Rows per workgroup: all of them where they fit, else the largest divisor that fits 16 vec4s a lane, else one.
    expect([cpuDecodeRowBlock(2, 32), cpuDecodeRowBlock(4, 32), cpuDecodeRowBlock(7, 32), cpuDecodeRowBlock(8, 16), cpuDecodeRowBlock(9, 20)]).toEqual([2, 2, 1, 4, 3]);
    // One row a block up to D 128.
    expect([cpuDecodeRowBlock(7, 64), cpuDecodeRowBlock(2, 68), cpuDecodeRowBlock(7, 128), cpuDecodeRowBlock(1, 132)]).toEqual([1, 1, 1, 0]);
    const q = gpu.tensor([1, 1, 4, 6], 'f32');
    const kv = gpu.tensor([1, 9, 2, 6], 'f32');
    const lens = gpu.tensor([1], 'i32', [9]);
    expect(() => attentionDecode(gpu, q, kv, kv, lens, { path: 'cpu-tiled' })).toThrowError(gpu.softwareAdapter ? /head dim 6 is not a multiple of 4/ : /cpu-tiled attention decode/);
    dispose(q, kv, lens);
  });

  it('appends new k/v rows at each sequence position and drops rows past the cache', async () => {
    const gpu = await testGpu();
    const rng = new Rng(55);
    for (const dt of ['f32', 'f16'] as const) {
      const dims = { B: 3, T: 2, Smax: 9, Hkv: 2, D: 6 };
      const row = dims.Hkv * dims.D;
      const cache = roundToF16(rng.randn(dims.B * dims.Smax * row));
      const x = roundToF16(rng.randn(dims.B * dims.T * row));
      const positions = [3, 0, 8];
      const tc = gpu.tensor([dims.B, dims.Smax, dims.Hkv, dims.D], dt, cache);
      const tx = gpu.tensor([dims.B, dims.T, dims.Hkv, dims.D], dt, x);
      const tp = gpu.tensor([dims.B], 'i32', positions);
      attentionCacheAppend(gpu, tc, tx, tp);
      const expected = cache.slice();
      attentionCacheAppendRef(expected, x, dims, positions);
      expect(Array.from(await tc.read())).toEqual(Array.from(expected));
      // k and v in one dispatch: each cache as its own append would leave it.
      const vCache = roundToF16(rng.randn(cache.length));
      const v = roundToF16(rng.randn(x.length));
      const [kc2, vc2] = [gpu.tensor(tc.shape, dt, cache), gpu.tensor(tc.shape, dt, vCache)];
      const tv = gpu.tensor(tx.shape, dt, v);
      attentionCacheAppendKV(gpu, kc2, vc2, tx, tv, tp);
      const vExpected = vCache.slice();
      attentionCacheAppendRef(vExpected, v, dims, positions);
      expect(Array.from(await kc2.read()), `k ${dt}`).toEqual(Array.from(expected));
      expect(Array.from(await vc2.read()), `v ${dt}`).toEqual(Array.from(vExpected));
      expect(() => attentionCacheAppendKV(gpu, kc2, kc2, tx, tv, tp)).toThrowError(/separate tensors/);
      const short = gpu.tensor([dims.B, 1, dims.Hkv, dims.D], dt);
      expect(() => attentionCacheAppendKV(gpu, kc2, vc2, tx, short, tp)).toThrowError(/same shapes/);
      dispose(tc, tx, tp, kc2, vc2, tv, short);
    }
  });

  it('rounds f32 rows into an f16 cache, and writes a run of the batch (batchStart) at any offset', async () => {
    const gpu = await testGpu();
    const rng = new Rng(56);
    // Items of 7·2·6 f16 elements (168 bytes): runs from item 1 sit off the binding alignment and go through copies;
    // a run from item 0 is bound in place.
    const dims = { B: 4, T: 3, Smax: 7, Hkv: 2, D: 6 };
    const row = dims.Hkv * dims.D;
    for (const [b0, n, positions] of [[1, 2, [0, 4]], [0, 3, [2, 0, 5]], [3, 1, [6]]] as const) {
      const cache = roundToF16(rng.randn(dims.B * dims.Smax * row));
      const vCache = roundToF16(rng.randn(cache.length));
      const [k, v] = [rng.randn(n * dims.T * row), rng.randn(n * dims.T * row)];
      const [tk, tv] = [gpu.tensor([dims.B, dims.Smax, dims.Hkv, dims.D], 'f16', cache), gpu.tensor([dims.B, dims.Smax, dims.Hkv, dims.D], 'f16', vCache)];
      const [xk, xv] = [gpu.tensor([n, dims.T, dims.Hkv, dims.D], 'f32', k), gpu.tensor([n, dims.T, dims.Hkv, dims.D], 'f32', v)];
      const tp = gpu.tensor([n], 'i32', [...positions]);
      attentionCacheAppendKV(gpu, tk, tv, xk, xv, tp, { batchStart: b0 });
      // The reference on the whole batch: items outside the run keep their rows (positions past Smax drop them).
      const whole = (x: Float32Array) => {
        const out = new Float32Array(dims.B * dims.T * row);
        out.set(roundToF16(x), b0 * dims.T * row);
        return out;
      };
      const allPositions = Array.from({ length: dims.B }, (_, b) => (b >= b0 && b < b0 + n ? positions[b - b0] : dims.Smax));
      const [wantK, wantV] = [cache.slice(), vCache.slice()];
      attentionCacheAppendRef(wantK, whole(k), dims, allPositions);
      attentionCacheAppendRef(wantV, whole(v), dims, allPositions);
      expect(Array.from(await tk.read()), `k from ${b0}`).toEqual(Array.from(wantK));
      expect(Array.from(await tv.read()), `v from ${b0}`).toEqual(Array.from(wantV));
      dispose(tk, tv, xk, xv, tp);
    }
    const [c, x, p] = [gpu.tensor([2, 4, 1, 4], 'f16'), gpu.tensor([2, 1, 1, 4], 'f32'), gpu.tensor([2], 'i32', [0, 0])];
    expect(() => attentionCacheAppend(gpu, c, x, p, { batchStart: 1 })).toThrowError(/x's 2 sequences from batchStart 1 must lie within the cache's batch/);
    expect(() => attentionCacheAppend(gpu, c, x, p, { batchStart: -1 })).toThrowError(/batchStart -1/);
    dispose(c, x, p);
  });

  it('append then decode step by step equals the full forward', async () => {
    const gpu = await testGpu();
    const rng = new Rng(77);
    const [B, Smax, Hq, Hkv, D, steps] = [2, 12, 4, 2, 8, 5];
    const start = [3, 6];
    const q = rng.randn(B * Smax * Hq * D);
    const k = rng.randn(B * Smax * Hkv * D);
    const v = rng.randn(B * Smax * Hkv * D);
    // Cache holds the prompts; later rows are garbage until appended.
    const kc = rng.randn(k.length);
    const vc = rng.randn(v.length);
    for (let b = 0; b < B; b++) {
      for (let j = 0; j < start[b]; j++) {
        for (let e = 0; e < Hkv * D; e++) {
          kc[(b * Smax + j) * Hkv * D + e] = k[(b * Smax + j) * Hkv * D + e];
          vc[(b * Smax + j) * Hkv * D + e] = v[(b * Smax + j) * Hkv * D + e];
        }
      }
    }
    const tk = gpu.tensor([B, Smax, Hkv, D], 'f32', kc);
    const tv = gpu.tensor([B, Smax, Hkv, D], 'f32', vc);
    const full = attentionRef(q, k, v, { B, T: Smax, S: Smax, Hq, Hkv, D }).o;
    for (let s = 0; s < steps; s++) {
      const pos = start.map((p) => p + s);
      const pick = (src: Float32Array, H: number) => {
        const out = new Float32Array(B * H * D);
        for (let b = 0; b < B; b++) out.set(src.subarray((b * Smax + pos[b]) * H * D, (b * Smax + pos[b] + 1) * H * D), b * H * D);
        return out;
      };
      const tp = gpu.tensor([B], 'i32', pos);
      const kNew = gpu.tensor([B, 1, Hkv, D], 'f32', pick(k, Hkv));
      const vNew = gpu.tensor([B, 1, Hkv, D], 'f32', pick(v, Hkv));
      attentionCacheAppend(gpu, tk, kNew, tp);
      attentionCacheAppend(gpu, tv, vNew, tp);
      const lens = gpu.tensor([B], 'i32', pos.map((p) => p + 1));
      const tq = gpu.tensor([B, 1, Hq, D], 'f32', pick(q, Hq));
      const o = await attentionDecode(gpu, tq, tk, tv, lens, { splits: 2 }).read();
      const expected = new Float64Array(B * Hq * D);
      for (let b = 0; b < B; b++) expected.set(full.subarray((b * Smax + pos[b]) * Hq * D, (b * Smax + pos[b] + 1) * Hq * D), b * Hq * D);
      expectClose(o, expected, TOL.f32, `step ${s}`);
      dispose(tp, kNew, vNew, lens, tq);
    }
    dispose(tk, tv);
  });
});

describe('attention validation', () => {
  it('rejects bad shapes and dtypes with ShapeError before GPU work', async () => {
    const gpu = await testGpu();
    const q = gpu.tensor([1, 4, 6, 8], 'f32');
    const k = gpu.tensor([1, 4, 4, 8], 'f32');
    const k2 = gpu.tensor([1, 4, 2, 8], 'f32');
    const kShort = gpu.tensor([1, 3, 2, 8], 'f32');
    const kh = gpu.tensor([1, 4, 2, 8], 'f16');
    const badLen = gpu.tensor([2], 'i32');
    expect(() => attention(gpu, q, k, k)).toThrowError(ShapeError);
    expect(() => attention(gpu, q, k2, kh)).toThrowError(ShapeError);
    expect(() => attention(gpu, q, kShort, kShort)).toThrowError(/S >= T/);
    expect(() => attention(gpu, q, k2, k2, { lengths: badLen })).toThrowError(/lengths/);
    expect(() => attention(gpu, q, k2, k2, { tile: { bq: 6, bk: 4 } })).toThrowError(ShapeError);
    // Asked for by name, the CPU kernels refuse a head dim that is not a multiple of 4 before allocating.
    const q6 = gpu.tensor([1, 4, 6, 6], 'f32');
    const k6 = gpu.tensor([1, 4, 2, 6], 'f32');
    const before = gpu.memory().inUse;
    expect(() => attention(gpu, q6, k6, k6, { path: 'cpu-tiled' })).toThrowError(/cpu-tiled attention head dim 6 is not a multiple of 4/);
    expect(gpu.memory().inUse).toBe(before);
    const f6 = attention(gpu, q6, k6, k6);
    expect(() => attentionBackward(gpu, q6, k6, k6, f6.o, f6.lse, q6, { path: 'cpu-tiled' })).toThrowError(/cpu-tiled attention head dim 6/);
    expect(() => attention(gpu, q, k2, k2, { path: 'cpu-tiled', cpuRows: 9 })).toThrowError(/cpuRows must be an integer from 1 to 8, got 9/);
    dispose(q6, k6, f6.o, f6.lse);
    const { o, lse } = attention(gpu, q, k2, k2, { path: 'scalar' });
    expect(() => attentionBackward(gpu, q, k2, k2, o, lse, k2)).toThrowError(/dO/);
    const big = gpu.tensor([1, 10, 28, 8], 'f32');
    const lens1 = gpu.tensor([1], 'i32', [4]);
    expect(() => attentionDecode(gpu, big, k2, k2, lens1)).toThrowError(ShapeError);
    for (const splits of [0, 1.5, Number.NaN]) {
      for (const path of ['scalar', 'cpu-tiled'] as const) {
        expect(() => attentionDecode(gpu, q, k2, k2, lens1, { splits, path })).toThrowError(/splits must be a positive integer/);
      }
    }
    expect(() => attentionCacheAppend(gpu, k2, q, lens1)).toThrowError(ShapeError);
    dispose(q, k, k2, kShort, kh, badLen, o, lse, big, lens1);
  });
});
