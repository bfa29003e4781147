/**
 * Device sweep of the subgroup-matrix (tensor-core) matmul and attention forward: every candidate tile is
 * checked for correctness (against the float64 CPU reference on awkward small shapes, and against the scalar
 * kernels on the big ones) and timed with GPU timestamps at the benchmark shapes; before that, single matrix
 * operations (sgm-probe.ts) and the attention kernel's intermediate values against float64 (SWEEP_PARTS says
 * which parts run). Bundled by tools/device/prepare.sh, run by tools/device/sgm-sweep.sh on the device machine.
 * Usage: node sgm-sweep.mjs OUT_DIR
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { Gpu, roundToF16, type Tensor } from '../../packages/core-kernels/src/index.js';
import { matmul, SGM_TILES, type MatmulOptions } from '../../packages/core-kernels/src/kernels/matmul.js';
import { attention } from '../../packages/core-kernels/src/kernels/attention.js';
import { attentionBackward } from '../../packages/core-kernels/src/kernels/attention-backward.js';
import { SGM_ATTENTION_BWD_TILE, sgmAttentionBwdKey } from '../../packages/core-kernels/src/kernels/attention-sgm-bwd.js';
import { MHA_PARAMS, mhaParams } from '../../packages/core-kernels/src/kernels/attention-params.js';
import { f16MatrixConfig } from '../../packages/core-kernels/src/runtime/features.js';
import { probeSubgroupMatrix } from './sgm-probe.js';
import { sgmTileKey, type SgmAF32, type SgmTile } from '../../packages/core-kernels/src/kernels/matmul-sgm.js';
import { sgmAttentionDebugLayout, sgmAttentionKey, sgmAttentionWgsl, type SgmAttentionTile } from '../../packages/core-kernels/src/kernels/attention-sgm.js';
import { matmulRef } from '../../packages/core-kernels/src/reference/matmul.js';
import { attentionBackwardRef, attentionRef } from '../../packages/core-kernels/src/reference/attention.js';

const out = process.argv[2] ?? '/tmp/out';
// A rehearsal's directory may not exist yet (the device's $OUT does); a failed save would lose the run's results.
mkdirSync(out, { recursive: true });
/**
 * SWEEP_DRY=1: a rehearsal on an adapter without subgroup matrices (lavapipe): every shape 64x smaller, one timed
 * iteration, the matrix operations emulated. It runs every line of this script before a device call spends
 * minutes on it; its times mean nothing, its errors do.
 */
const DRY = process.env.SWEEP_DRY === '1';
const dim = (n: number) => (DRY ? Math.max(8, Math.round(n / 64)) : n);
const iters = (n: number) => (DRY ? 1 : n);
const emu = DRY ? { sgmEmulate: true } : {};
// Emulated pipelines of the real tiles take lavapipe minutes each to compile: the rehearsal runs one small tile
// (keeping the two-stage, raster and attention variants), so it covers the script, not the tiles.
const mmTile = (t: SgmTile): SgmTile => (DRY ? { ...t, wm: 1, wn: 1, fm: 1, fn: 1, bk: 4 } : t);
const attTile = (t: SgmAttentionTile): SgmAttentionTile => (DRY ? { ...t, nsub: 2, bk: 8 } : t);
const started = performance.now();
const log = (s: string) => console.log(`[${((performance.now() - started) / 1000).toFixed(1)}s] ${s}`);

// Session 6: the default tile double-buffered, rasterized in groups of 8 block rows, both (session 14 on the H200:
// all slower than the default at 4096³; `.g8` fastest at gate_proj in one call).
const NEW_TILES: SgmTile[] = [{ ...SGM_TILES[0], stages: 2 }, { ...SGM_TILES[0], group: 8 }, { ...SGM_TILES[0], stages: 2, group: 8 }];
// Session 7: 256-thread 128x256 and 256x128 tiles, K steps of 16 to stay within 32 KB of workgroup memory (session
// 14: 1.10 and 1.16 ms at 4096³ against the default's 1.04).
const BIG_TILES: SgmTile[] = [{ wm: 2, wn: 4, fm: 4, fn: 4, bk: 16 }, { wm: 4, wn: 2, fm: 4, fn: 4, bk: 16 }];
// Session 15: fragments straight from storage, no staging (f16 A and B only; the f32-A shapes stage anyway).
const STORAGE_TILES: SgmTile[] = [
  { wm: 2, wn: 2, fm: 4, fn: 4, bk: 32 },
  { wm: 2, wn: 2, fm: 4, fn: 4, bk: 64 },
  { wm: 2, wn: 4, fm: 4, fn: 4, bk: 32 },
  { wm: 4, wn: 2, fm: 4, fn: 4, bk: 32 },
  { wm: 2, wn: 2, fm: 2, fn: 4, bk: 64 },
].map((t): SgmTile => ({ ...t, from: 'storage' }));
const MM_TILES: SgmTile[] = [...SGM_TILES, ...NEW_TILES, ...BIG_TILES, { wm: 2, wn: 2, fm: 4, fn: 4, bk: 16 }, { wm: 4, wn: 2, fm: 2, fn: 4, bk: 32 }, { wm: 2, wn: 2, fm: 2, fn: 4, bk: 64 }, ...STORAGE_TILES];
// O in registers, in fragments ('.frag') or two passes ('.2p'); K read column-major, or staged transposed and read
// row-major ('.kt'). All correct on the H200 since session 14 (16-byte workgroup variables); times to choose from.
const ATT_BASE: SgmAttentionTile[] = [
  { nsub: 4, bk: 32 },
  { nsub: 4, bk: 32, accum: 'fragments' },
  { nsub: 4, bk: 32, accum: 'two-pass' },
  { nsub: 2, bk: 32 },
  { nsub: 2, bk: 64 },
  { nsub: 2, bk: 64, accum: 'two-pass' },
];
// K and V fragments read straight from storage ('.kvs', session 15): no staging, 64-key tiles fit 4 subgroups.
const ATT_STORAGE: SgmAttentionTile[] = (
  [
    { nsub: 4, bk: 32 },
    { nsub: 4, bk: 64 },
    { nsub: 4, bk: 64, accum: 'fragments' },
    { nsub: 4, bk: 64, accum: 'two-pass' },
    { nsub: 2, bk: 64 },
    { nsub: 2, bk: 64, accum: 'fragments' },
    // Session 29: one subgroup per workgroup, so each barrier of the key loop waits for 32 lanes, not 128 (the
    // other subgroups' softmax and stores); K and V come from L2 instead (a KV head is read by 7 query heads).
    // Correct under emulation (4x4 fragments), not yet run on hardware.
    { nsub: 1, bk: 64, accum: 'fragments' },
    { nsub: 1, bk: 32, accum: 'fragments' },
  ] as SgmAttentionTile[]
).map((t): SgmAttentionTile => ({ ...t, kvFrom: 'storage' }));
const ATT_TILES: SgmAttentionTile[] = [
  ...ATT_BASE.map((t): SgmAttentionTile => ({ ...t, kLayout: 'transposed' })),
  ...ATT_BASE.map((t): SgmAttentionTile => ({ ...t, kLayout: 'rows' })),
  ...ATT_STORAGE,
];
/**
 * SWEEP_PARTS: which parts run, in this order: probe, debug (the attention kernel's intermediate values against the
 * float64 ones), att (attention checks and times), bwd (the subgroup-matrix attention backward against float64),
 * proj, square, check.
 */
const PARTS = new Set((process.env.SWEEP_PARTS ?? 'probe,debug,att,bwd,proj,square,check').split(','));

function lcg(n: number, seed: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = ((s / 2 ** 32) * 2 - 1) * scale;
  }
  return a;
}

/**
 * Median ms of the summed GPU timestamps of `run`'s dispatches, copies and clears, after ~150 ms of runs: session 14's
 * sweep timed some kernels 2-5x slower than the benchmark did (which keeps the GPU busy with torch between our runs),
 * most likely at the idle clocks an H200 drops to between short launches.
 */
async function time(gpu: Gpu, run: () => void, iters: number): Promise<number> {
  const warm = performance.now() + (DRY ? 0 : 150);
  do {
    run();
    await gpu.sync();
  } while (performance.now() < warm);
  const xs: number[] = [];
  for (let i = 0; i < iters; i++) {
    gpu.profiling = true;
    run();
    const t = await gpu.takeTimings();
    gpu.profiling = false;
    xs.push(t.reduce((s, x) => s + x.ms, 0));
  }
  xs.sort((a, b) => a - b);
  return xs[Math.floor(xs.length / 2)];
}

/** f16 q, k, v of an attention check: the host values (rounded to f16) and the tensors. */
function qkv(gpu: Gpu, c: { B: number; T: number; S: number; Hq: number; Hkv: number; D: number }) {
  const x = {
    q: roundToF16(lcg(c.B * c.T * c.Hq * c.D, 5, 2)),
    k: roundToF16(lcg(c.B * c.S * c.Hkv * c.D, 6, 2)),
    v: roundToF16(lcg(c.B * c.S * c.Hkv * c.D, 7)),
  };
  return {
    x,
    q: gpu.tensor([c.B, c.T, c.Hq, c.D], 'f16', x.q),
    k: gpu.tensor([c.B, c.S, c.Hkv, c.D], 'f16', x.k),
    v: gpu.tensor([c.B, c.S, c.Hkv, c.D], 'f16', x.v),
  };
}

/** max |got - want| / max |want|. */
function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let d = 0;
  let m = 0;
  for (let i = 0; i < want.length; i++) {
    const g = got[i];
    if (!Number.isFinite(g)) return Infinity;
    d = Math.max(d, Math.abs(g - want[i]));
    m = Math.max(m, Math.abs(want[i]));
  }
  return d / Math.max(m, 1e-30);
}

interface Row {
  kind: string;
  shape: string;
  config: string;
  ms?: number;
  tflops?: number;
  err?: number;
  error?: string;
  note?: string;
}
const rows: Row[] = [];
const save = () => writeFileSync(`${out}/sweep.json`, JSON.stringify({ adapter: gpuInfo, dry: DRY, rows }, null, 1));
let gpuInfo: unknown = {};

async function guarded(gpu: Gpu, row: Row, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (e) {
    row.error = String((e as Error).message ?? e).slice(0, 400);
    try {
      await gpu.sync();
    } catch {
      /* the error was already recorded */
    }
  }
  rows.push(row);
  log(`${row.kind} ${row.shape} ${row.config}: ${row.error ? `ERROR ${row.error.split('\n')[0]}` : `${row.ms?.toFixed(4) ?? '-'} ms ${row.tflops?.toFixed(1) ?? '-'} TFLOP/s err ${row.err?.toExponential(2) ?? '-'}${row.note ? ` (${row.note})` : ''}`}`);
  save();
}

async function main() {
  const gpu = await Gpu.create();
  const info = gpu.device.adapterInfo as GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number };
  gpuInfo = { ...gpu.adapter, subgroupMin: info.subgroupMinSize, subgroupMax: info.subgroupMaxSize, variants: gpu.variants };
  log(`adapter ${JSON.stringify(gpuInfo)}`);

  // ---- single operations, each against the exact product.
  const cfg = DRY ? { componentType: 'f16', resultComponentType: 'f32', M: 4, N: 4, K: 4 } : f16MatrixConfig(gpu.features);
  if (PARTS.has('probe') && cfg) {
    for (const r of await probeSubgroupMatrix(gpu, cfg, info.subgroupMinSize ?? 32, DRY)) {
      rows.push({ kind: 'probe', shape: `${cfg.M}x${cfg.N}x${cfg.K}`, config: r.name, err: r.err, error: r.error });
      log(`probe ${r.name}: ${r.error ? `ERROR ${r.error}` : `err ${r.err?.toExponential(2)}`}`);
    }
    save();
  }

  // ---- matmul timing at benchmark shapes (+ the tiled kernel's answer on the big square as a check).
  const shapes: { name: string; M: number; N: number; K: number; tB: boolean; aType: 'f16' | 'f32' }[] = [
    { name: 'square f16 4096', M: 4096, N: 4096, K: 4096, tB: false, aType: 'f16' },
    { name: 'q_proj T512 f16xf16 tB', M: 512, N: 3584, K: 3584, tB: true, aType: 'f16' },
    { name: 'q_proj T512 f32xf16 tB', M: 512, N: 3584, K: 3584, tB: true, aType: 'f32' },
    { name: 'gate_proj T512 f32xf16 tB', M: 512, N: 18944, K: 3584, tB: true, aType: 'f32' },
    { name: 'down_proj T512 f32xf16 tB', M: 512, N: 3584, K: 18944, tB: true, aType: 'f32' },
  ].map((x) => ({ ...x, M: dim(x.M), N: dim(x.N), K: dim(x.K), aType: x.aType as 'f16' | 'f32' }));
  const timeShapes = async (only: (name: string) => boolean) => {
  for (const s of shapes.filter((x) => only(x.name))) {
    const A = gpu.tensor(s.tB ? [s.M, s.K] : [s.M, s.K], s.aType, lcg(s.M * s.K, 3, 1));
    const B = gpu.tensor(s.tB ? [s.N, s.K] : [s.K, s.N], 'f16', lcg(s.K * s.N, 4, 1));
    const C = gpu.tensor([s.M, s.N], 'f32');
    const flops = 2 * s.M * s.N * s.K;
    let reference: Float32Array | undefined;
    const refRow: Row = { kind: 'mm-time', shape: s.name, config: 'tiled (scalar)' };
    await guarded(gpu, refRow, async () => {
      refRow.ms = await time(gpu, () => matmul(gpu, A, B, { transB: s.tB, out: C, path: 'tiled' }), iters(3));
      refRow.tflops = flops / (refRow.ms * 1e9);
      reference = (await C.read()).slice();
    });
    // f32 A: rounded to f16, and (first tiles) split into hi + lo f16 parts, unscaled and scaled per row (the
    // default since session 10: its row-maximum pass is timed with it).
    const variants = MM_TILES.map((tile) => ({ tile, aF32: 'round' as SgmAF32 }));
    if (s.aType === 'f32') for (const aF32 of ['split', 'scaled'] as const) variants.push(...SGM_TILES.map((tile) => ({ tile, aF32 })));
    for (const { tile, aF32 } of variants) {
      const row: Row = { kind: 'mm-time', shape: s.name, config: `${sgmTileKey(tile)}${s.aType === 'f32' && aF32 !== 'round' ? ` ${aF32}` : ''}` };
      await guarded(gpu, row, async () => {
        const run = () => matmul(gpu, A, B, { transB: s.tB, out: C, path: 'subgroup-matrix', sgmTile: mmTile(tile), sgmAF32: aF32, ...emu });
        row.ms = await time(gpu, run, iters(10));
        row.tflops = flops / (row.ms * 1e9);
        if (reference) {
          run();
          row.err = relErr(await C.read(), reference);
        }
      });
    }
    [A, B, C].forEach((t: Tensor) => t.dispose());
  }
  };
  // ---- attention's intermediate values in workgroup (0,0,0), first key tile, against float64: scores S = Q·Kᵀ,
  // P, each lane's ids and softmax totals. Which stage goes wrong on hardware when the whole kernel does.
  const debugDump: Record<string, unknown> = {};
  if (PARTS.has('debug') && cfg) {
    const sg = DRY ? 8 : (info.subgroupMinSize ?? 32);
    const c = { B: 1, T: 16, S: 16, Hq: 1, Hkv: 1, D: DRY ? 8 : 16 };
    const base = { nsub: DRY ? 2 : 4, bk: DRY ? 16 : 32 };
    const debugTiles: SgmAttentionTile[] = [
      { ...base, kLayout: 'rows' },
      { ...base, kLayout: 'transposed' },
    ];
    for (const tile of debugTiles) {
      const row: Row = { kind: 'att-debug', shape: 'B1 T16 S16 Hq1 D16 full', config: sgmAttentionKey(tile) };
      await guarded(gpu, row, async () => {
        const { x, q, k, v } = qkv(gpu, c);
        const o = gpu.tensor([1, c.T, 1, c.D], 'f16');
        const lse = gpu.tensor([1, 1, c.T], 'f32');
        const lens = gpu.tensor([1], 'i32', [c.S]);
        const layout = sgmAttentionDebugLayout(tile, cfg, c.D);
        const dbg = gpu.tensor([layout.size], 'f32', new Float32Array(layout.size).fill(-7));
        const pipeline = gpu.pipeline(`att-debug:${sgmAttentionKey(tile)}:${DRY}`, () => sgmAttentionWgsl(MHA_PARAMS, tile, cfg, c.D, sg, DRY, true));
        const scale = 1 / Math.sqrt(c.D);
        const params = mhaParams({ ...c, dtype: 'f16' }, { causal: false }, [1, 1, 1]);
        gpu.dispatch({ op: 'att-debug', pipeline, params, bindings: [q, k, v, o, lse, lens, dbg], workgroups: [1, 1, 1] });
        const d = await dbg.read();
        // Row i's scores sit at subgroup (i / M), row (i % M) of its M x bk block.
        const M = cfg.M;
        let sErr = 0;
        let pErr = 0;
        let sMax = 0;
        const sGot: number[][] = [];
        const sWant: number[][] = [];
        // Rows of workgroup 0 only (all 16 on hardware; the rehearsal's 4x4 fragments give it fewer).
        for (let i = 0; i < Math.min(c.T, tile.nsub * M); i++) {
          const base = Math.floor(i / M) * M * tile.bk + (i % M) * tile.bk;
          const ref: number[] = [];
          for (let j = 0; j < c.S; j++) {
            let dot = 0;
            for (let e = 0; e < c.D; e++) dot += x.q[i * c.D + e] * x.k[j * c.D + e];
            ref.push(dot);
          }
          const m = Math.max(...ref.map((r) => r * scale * Math.LOG2E));
          ref.forEach((r, j) => {
            sErr = Math.max(sErr, Math.abs(d[layout.scores + base + j] - r));
            sMax = Math.max(sMax, Math.abs(r));
            pErr = Math.max(pErr, Math.abs(d[layout.p + base + j] - 2 ** (r * scale * Math.LOG2E - m)));
          });
          sGot.push(Array.from(d.subarray(layout.scores + base, layout.scores + base + tile.bk)));
          sWant.push(ref);
        }
        const lanes = Array.from({ length: tile.nsub * sg }, (_, li) => Array.from(d.subarray(layout.lanes + li * 8, layout.lanes + li * 8 + 8)));
        const laneIdMismatch = lanes.filter((l) => l[1] !== l[0] % sg).length;
        row.err = sErr / sMax;
        row.note = `S err ${(sErr / sMax).toExponential(2)}, P err ${pErr.toExponential(2)}, lanes whose subgroup_invocation_id != li % ${sg}: ${laneIdMismatch}`;
        debugDump[sgmAttentionKey(tile)] = { sGot, sWant, lanes: lanes.slice(0, 40), kv: Array.from(d.subarray(layout.kv, layout.lanes)), p: Array.from(d.subarray(layout.p, layout.p + 2 * cfg.M * tile.bk)), o: Array.from(await o.read()).slice(0, 16) };
        writeFileSync(`${out}/debug.json`, JSON.stringify(debugDump));
        [q, k, v, o, lse, lens, dbg].forEach((t) => t.dispose());
      });
    }
  }

  // ---- attention: correctness vs the f64 reference, o and lse apart (lse depends on S = Q·Kᵀ and the softmax only,
  // o on P·V too), from one fragment (D 16, no mask) up to padded GQA at D 128: which part fails, if one does.
  const attCases = [
    { name: 'B1 T16 Hq1 Hkv1 D16 full', B: 1, T: 16, S: 16, Hq: 1, Hkv: 1, D: 16, causal: false },
    { name: 'B1 T64 Hq2 Hkv2 D64 causal', B: 1, T: 64, S: 64, Hq: 2, Hkv: 2, D: DRY ? 32 : 64, causal: true },
    { name: 'B2 T77 Hq4 Hkv2 D128 lengths [77,50]', B: 2, T: 77, S: 77, Hq: 4, Hkv: 2, D: DRY ? 32 : 128, causal: true, lengths: [77, 50] },
  ];
  for (const c of PARTS.has('att') ? attCases : []) {
    for (const tile of ATT_TILES) {
      const row: Row = { kind: 'att-check', shape: c.name, config: sgmAttentionKey(tile) };
      await guarded(gpu, row, async () => {
        const { x, q, k, v } = qkv(gpu, c);
        const lengths = c.lengths ? gpu.tensor([c.B], 'i32', c.lengths) : undefined;
        const { o, lse } = attention(gpu, q, k, v, { lengths, causal: c.causal, path: 'subgroup-matrix', sgmTile: attTile(tile), ...emu });
        const ref = attentionRef(x.q, x.k, x.v, c, { lengths: c.lengths, causal: c.causal });
        const errO = relErr(await o.read(), ref.o);
        const errLse = relErr(await lse.read(), ref.lse);
        row.err = Math.max(errO, errLse);
        row.note = `o ${errO.toExponential(2)} lse ${errLse.toExponential(2)}`;
        [q, k, v, lengths, o, lse].forEach((t) => t?.dispose());
      });
    }
  }
  // ---- the subgroup-matrix backward (session 15) against the f64 reference (from the scalar forward's o and lse),
  // dq, dk and dv apart, on the padded GQA case and the D 64 causal one.
  for (const c of PARTS.has('bwd') ? attCases.slice(1) : []) {
    const tile = DRY ? { nsub: 2, bt: 8 } : SGM_ATTENTION_BWD_TILE;
    const row: Row = { kind: 'bwd-check', shape: c.name, config: sgmAttentionBwdKey(tile) };
    await guarded(gpu, row, async () => {
      const { x, q, k, v } = qkv(gpu, c);
      const dOx = roundToF16(lcg(q.size, 11));
      const dO = gpu.tensor(q.shape, 'f16', dOx);
      const lengths = c.lengths ? gpu.tensor([c.B], 'i32', c.lengths) : undefined;
      const opts = { lengths, causal: c.causal };
      const { o, lse } = attention(gpu, q, k, v, { ...opts, path: 'scalar' });
      const g = attentionBackward(gpu, q, k, v, o, lse, dO, { ...opts, sgmBackward: tile, ...emu });
      const ref = attentionBackwardRef(x.q, x.k, x.v, dOx, c, { lengths: c.lengths, causal: c.causal });
      const errs = [relErr(await g.dq.read(), ref.dq), relErr(await g.dk.read(), ref.dk), relErr(await g.dv.read(), ref.dv)];
      row.err = Math.max(...errs);
      row.note = `dq ${errs[0].toExponential(2)} dk ${errs[1].toExponential(2)} dv ${errs[2].toExponential(2)}`;
      [q, k, v, dO, lengths, o, lse, g.dq, g.dk, g.dv].forEach((t) => t?.dispose());
    });
  }
  if (PARTS.has('att')) {
    const c = { B: 1, T: dim(2048), S: dim(2048), Hq: 28, Hkv: 4, D: DRY ? 32 : 128 };
    const q = gpu.tensor([c.B, c.T, c.Hq, c.D], 'f16', lcg(c.T * c.Hq * c.D, 8, 3.4));
    const k = gpu.tensor([c.B, c.S, c.Hkv, c.D], 'f16', lcg(c.S * c.Hkv * c.D, 9, 3.4));
    const v = gpu.tensor([c.B, c.S, c.Hkv, c.D], 'f16', lcg(c.S * c.Hkv * c.D, 10, 3.4));
    const flops = 4 * c.B * c.Hq * c.D * ((c.T * (c.T + 1)) / 2);
    const shape = 'fwd causal B1 T2048 Hq28 Hkv4 D128';
    let reference: Float32Array | undefined;
    const refRow: Row = { kind: 'att-time', shape, config: 'scalar' };
    await guarded(gpu, refRow, async () => {
      let r: { o: Tensor; lse: Tensor } | undefined;
      refRow.ms = await time(gpu, () => { r?.o.dispose(); r?.lse.dispose(); r = attention(gpu, q, k, v, { path: 'scalar' }); }, iters(3));
      refRow.tflops = flops / (refRow.ms * 1e9);
      reference = Float32Array.from(await r!.o.read());
    });
    for (const tile of ATT_TILES) {
      const row: Row = { kind: 'att-time', shape, config: sgmAttentionKey(tile) };
      await guarded(gpu, row, async () => {
        let r: { o: Tensor; lse: Tensor } | undefined;
        row.ms = await time(gpu, () => { r?.o.dispose(); r?.lse.dispose(); r = attention(gpu, q, k, v, { path: 'subgroup-matrix', sgmTile: attTile(tile), ...emu }); }, iters(10));
        row.tflops = flops / (row.ms * 1e9);
        if (reference) row.err = relErr(await r!.o.read(), reference);
      });
    }
  }
  if (PARTS.has('proj')) await timeShapes((n) => !n.startsWith('square'));
  if (PARTS.has('square')) await timeShapes((n) => n.startsWith('square'));
  if (PARTS.has('check')) await matmulChecks();
  save();

  // ---- matmul correctness on awkward shapes, every tile and layout, vs the f64 reference.
  async function matmulChecks() {
  const [M, N, K] = [77, 45, 83];
  /** Relative error against float64 of one product of lcg values (f16 B, and A where `roundA`, hold f16 values). */
  const productErr = async (
    [m, n, k]: readonly [number, number, number],
    l: { tA?: boolean; tB?: boolean; aType: 'f32' | 'f16'; bType: 'f32' | 'f16'; seeds: readonly [number, number]; roundA?: boolean },
    opts: MatmulOptions,
  ): Promise<number> => {
    const a = l.roundA ? roundToF16(lcg(m * k, l.seeds[0])) : lcg(m * k, l.seeds[0]);
    const b = l.bType === 'f16' ? roundToF16(lcg(k * n, l.seeds[1])) : lcg(k * n, l.seeds[1]);
    const A = gpu.tensor(l.tA ? [k, m] : [m, k], l.aType, a);
    const B = gpu.tensor(l.tB ? [n, k] : [k, n], l.bType, b);
    const C = matmul(gpu, A, B, { transA: l.tA, transB: l.tB, ...opts });
    const want = matmulRef(a, b, { batch: 1, M: m, N: n, K: k, transA: l.tA, transB: l.tB, lda: l.tA ? m : k, ldb: l.tB ? k : n, ldc: n, strideA: 0, strideB: 0, strideC: 0 }, undefined, m * n);
    const err = relErr(await C.read(), want);
    [A, B, C].forEach((t) => t.dispose());
    return err;
  };
  // Fragments from storage need rows of multiples of 8 elements: their own shape, with whole and partial blocks.
  // Split-K (session 15): a grid of 6 workgroups over K 3000 splits by default (sgmSplitK: 11 layers), whole blocks
  // and partial ones.
  const checks: { tile: SgmTile; M: number; N: number; K: number; splitK?: number }[] = [
    ...[...SGM_TILES, ...NEW_TILES].map((tile) => ({ tile, M, N, K })),
    ...STORAGE_TILES.map((tile) => ({ tile, M: 200, N: 136, K: DRY ? 96 : 192 })),
    ...[SGM_TILES[0], STORAGE_TILES[0]].map((tile) => ({ tile, M: 256, N: 304, K: DRY ? 96 : 3000, splitK: DRY ? 3 : undefined })),
  ];
  for (const { tile, M, N, K, splitK } of checks) {
    for (const [tA, tB, aType] of [[false, false, 'f16'], [true, false, 'f16'], [false, true, 'f16'], [true, true, 'f16'], [false, true, 'f32']] as const) {
      const split = K >= 3000 || splitK ? ' split-K' : '';
      const row: Row = { kind: 'mm-check', shape: `${M}x${N}x${K}${tA ? ' tA' : ''}${tB ? ' tB' : ''} ${aType}xf16`, config: `${sgmTileKey(tile)}${split}` };
      await guarded(gpu, row, async () => {
        const l = { tA, tB, aType, bType: 'f16', seeds: [1, 2], roundA: true } as const;
        row.err = await productErr([M, N, K], l, { path: 'subgroup-matrix', sgmTile: mmTile(tile), splitK, ...emu });
      });
    }
  }
  // The generic tiled kernel's split-K on hardware (f32 x f32, as LoRA's x·Aᵀ): 5 workgroups over K 3000.
  for (const tB of [false, true]) {
    const [m, n, k] = [300, 16, DRY ? 96 : 3000];
    const row: Row = { kind: 'mm-check', shape: `${m}x${n}x${k}${tB ? ' tB' : ''} f32xf32`, config: 'tiled split-K' };
    await guarded(gpu, row, async () => {
      row.err = await productErr([m, n, k], { tB, aType: 'f32', bType: 'f32', seeds: [3, 4] }, { path: 'tiled', splitK: DRY ? 3 : undefined });
    });
  }
  // The vec GEMV (session 16): decode's x·Wᵀ with 16-byte loads of W, f16 and f32 weights, an odd N (the last
  // thread's second row past N) and K both under and over one split's worth of units.
  for (const [m, n, k, bType] of [[1, 3585, 3584, 'f16'], [4, 513, 18944, 'f16'], [3, 77, 40, 'f16'], [2, 1001, 3584, 'f32']] as const) {
    const row: Row = { kind: 'mm-check', shape: `${m}x${n}x${k} tB f32x${bType}`, config: 'gemv vec' };
    await guarded(gpu, row, async () => {
      row.err = await productErr([m, n, k], { tB: true, aType: 'f32', bType, seeds: [7, 8] }, { path: 'gemv', gemv: 'vec' });
    });
  }
  // f32 A whose rows span 1e-9 to 1e3 (gradients next to activations): err is the worst row's own relative error,
  // so a row lost to f16's range shows (round and split lose the small rows; scaled should not).
  for (const aF32 of ['round', 'split', 'scaled'] as const) {
    for (const tA of [false, true]) {
      const row: Row = { kind: 'mm-check', shape: `${M}x${N}x${K}${tA ? ' tA' : ''} tB f32xf16 rows 1e-9..1e3`, config: `${sgmTileKey(SGM_TILES[0])} ${aF32}` };
      await guarded(gpu, row, async () => {
        const a = lcg(M * K, 5);
        for (let i = 0; i < a.length; i++) a[i] *= 10 ** (((tA ? i % M : Math.floor(i / K)) % 13) - 9);
        const b = roundToF16(lcg(K * N, 6));
        const A = gpu.tensor(tA ? [K, M] : [M, K], 'f32', a);
        const B = gpu.tensor([N, K], 'f16', b);
        const C = matmul(gpu, A, B, { transA: tA, transB: true, path: 'subgroup-matrix', sgmTile: mmTile(SGM_TILES[0]), sgmAF32: aF32, ...emu });
        const want = matmulRef(a, b, { batch: 1, M, N, K, transA: tA, transB: true, lda: tA ? M : K, ldb: K, ldc: N, strideA: 0, strideB: 0, strideC: 0 }, undefined, M * N);
        const got = await C.read();
        row.err = 0;
        for (let m = 0; m < M; m++) row.err = Math.max(row.err, relErr(got.subarray(m * N, (m + 1) * N), want.subarray(m * N, (m + 1) * N)));
        [A, B, C].forEach((t) => t.dispose());
      });
    }
  }
  }

  const table = rows
    .map((r) => `${r.kind.padEnd(10)} ${r.shape.padEnd(36)} ${r.config.padEnd(18)} ${r.error ? `ERROR ${r.error.split('\n')[0]}` : `${(r.ms?.toFixed(4) ?? '-').padStart(9)} ms ${(r.tflops?.toFixed(1) ?? '-').padStart(7)} TF/s err ${r.err?.toExponential(2) ?? '-'}${r.note ? ` (${r.note})` : ''}`}`)
    .join('\n');
  writeFileSync(`${out}/sweep.txt`, `${table}\n`);
  log('done');
  gpu.destroy();
}

main().catch((e) => {
  console.error(e);
  save();
  process.exit(1);
});
