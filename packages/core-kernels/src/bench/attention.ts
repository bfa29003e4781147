import type { Gpu } from '../runtime/gpu.js';
import type { Tensor } from '../runtime/tensor.js';
import { attention } from '../kernels/attention.js';
import { attentionBackward } from '../kernels/attention-backward.js';
import { attentionCacheAppendKV, attentionDecode } from '../kernels/attention-decode.js';
import { sgmAttentionKey, type SgmAttentionTile } from '../kernels/attention-sgm.js';
import { SGM_ATTENTION_BWD_TILE, sgmAttentionBwdKey, type SgmAttentionBwdTile } from '../kernels/attention-sgm-bwd.js';
import type { BenchCase } from './types.js';
import { benchValues } from './data.js';
import { checkAttentionBackward, checkAttentionForward, type AttentionCheckDims } from './check-attention.js';
import { CHECK_TOL, ErrorMeter, readRows } from './check.js';

type F = 'f32' | 'f16';

interface Shape {
  B: number;
  T: number;
  Hq: number;
  Hkv: number;
  D: number;
  dtype: F;
}

/** q in s.dtype; k and v in `kv` (default s.dtype: decode's f16 caches under f32 queries otherwise). */
function qkv(gpu: Gpu, s: Shape, S: number, kv: F = s.dtype) {
  return {
    q: gpu.tensor([s.B, s.T, s.Hq, s.D], s.dtype, benchValues(s.B * s.T * s.Hq * s.D, 3.4, 1)),
    k: gpu.tensor([s.B, S, s.Hkv, s.D], kv, benchValues(s.B * S * s.Hkv * s.D, 3.4, 2)),
    v: gpu.tensor([s.B, S, s.Hkv, s.D], kv, benchValues(s.B * S * s.Hkv * s.D, 3.4, 3)),
  };
}

const needsF16 = (...dtypes: F[]) => (dtypes.includes('f16') ? ['shader-f16'] : undefined);

const bytesOf = (dtype: F) => (dtype === 'f16' ? 2 : 4);
const dims = (s: Shape, S: number): AttentionCheckDims => ({ ...s, S, causal: true });
const label = (s: Shape) => `${s.dtype} B${s.B} T${s.T} Hq${s.Hq} Hkv${s.Hkv} D${s.D}`;

/** torch inputs in SDPA's [B, H, T, D] layout, with k/v expanded to all query heads. */
function torchSetup(s: Shape, S: number, grad: boolean): string {
  const rg = grad ? '.requires_grad_()' : '';
  const g = s.Hq / s.Hkv;
  return (
    `q=torch.randn(${s.B},${s.Hq},${s.T},${s.D},device=dev,dtype=dt)${rg}; ` +
    `k=torch.randn(${s.B},${s.Hkv},${S},${s.D},device=dev,dtype=dt).repeat_interleave(${g},dim=1)${rg}; ` +
    `v=torch.randn(${s.B},${s.Hkv},${S},${s.D},device=dev,dtype=dt).repeat_interleave(${g},dim=1)${rg}`
  );
}

/** Causal (query, key) pairs with S = T: T(T+1)/2 per head. */
const causalPairs = (s: Shape) => (s.B * s.Hq * s.T * (s.T + 1)) / 2;

/**
 * `path` forces the kernels: 'scalar' (the workgroup kernels, beside the default CPU ones on lavapipe) or
 * 'subgroup-matrix' (forward only; opt-in until measured correct on a GPU).
 */
type Path = 'scalar' | 'subgroup-matrix';
const pathNote = (path?: Path) => (path ? ` (${path} path)` : '');

/** `sgmTile` (with the subgroup-matrix path): another workgroup shape or way of keeping O, to compare against the default's. */
function forwardCase(s: Shape, size: 'cpu' | 'gpu', path?: Path, sgmTile?: SgmAttentionTile): BenchCase {
  const e = bytesOf(s.dtype);
  return {
    family: 'attention',
    name: `attention fwd causal ${label(s)}${pathNote(path)}${sgmTile ? ` (tile ${sgmAttentionKey(sgmTile)})` : ''}`,
    flops: 4 * causalPairs(s) * s.D,
    bytes: e * s.B * s.T * s.D * (2 * s.Hq + 2 * s.Hkv) + 4 * s.B * s.Hq * s.T,
    size,
    needs: [...(s.dtype === 'f16' ? ['shader-f16'] : []), ...(path === 'subgroup-matrix' ? [path] : [])],
    prepare(gpu) {
      const t = qkv(gpu, s, s.T);
      return {
        run: () => {
          const r = attention(gpu, t.q, t.k, t.v, { path, sgmTile });
          r.o.dispose();
          r.lse.dispose();
        },
        dispose: () => [t.q, t.k, t.v].forEach((x) => x.dispose()),
        check: async () => {
          const r = attention(gpu, t.q, t.k, t.v, { path, sgmTile });
          try {
            return await checkAttentionForward(dims(s, s.T), t.q, t.k, t.v, r.o, r.lse);
          } finally {
            r.o.dispose();
            r.lse.dispose();
          }
        },
      };
    },
    torch: { setup: torchSetup(s, s.T, false), run: 'F.scaled_dot_product_attention(q,k,v,is_causal=True)' },
  };
}

/** `sgmBackward`: the subgroup-matrix backward kernels with this tile (a candidate, session 15). */
function backwardCase(s: Shape, size: 'cpu' | 'gpu', path?: 'scalar', sgmBackward?: SgmAttentionBwdTile): BenchCase {
  const e = bytesOf(s.dtype);
  return {
    family: 'attention',
    name: `attention bwd causal ${label(s)}${pathNote(path)}${sgmBackward ? ` (subgroup-matrix ${sgmAttentionBwdKey(sgmBackward)})` : ''}`,
    // The five useful matmuls (S, dP, dV, dK, dQ); the dQ/dKV split recomputes S and dP once more on top.
    flops: 10 * causalPairs(s) * s.D,
    bytes: e * s.B * s.T * s.D * (4 * s.Hq + 4 * s.Hkv) + 4 * s.B * s.Hq * s.T,
    size,
    needs: s.dtype === 'f16' ? ['shader-f16', ...(sgmBackward ? ['subgroup-matrix'] : [])] : undefined,
    prepare(gpu) {
      const t = qkv(gpu, s, s.T);
      const { o, lse } = attention(gpu, t.q, t.k, t.v, { path });
      const dO = gpu.tensor(t.q.shape, s.dtype, benchValues(t.q.size, 3.4, 4));
      return {
        run: () => {
          const g = attentionBackward(gpu, t.q, t.k, t.v, o, lse, dO, { path, sgmBackward });
          [g.dq, g.dk, g.dv].forEach((x) => x.dispose());
        },
        dispose: () => [t.q, t.k, t.v, o, lse, dO].forEach((x) => x.dispose()),
        check: async () => {
          const g = attentionBackward(gpu, t.q, t.k, t.v, o, lse, dO, { path, sgmBackward });
          try {
            return await checkAttentionBackward(dims(s, s.T), { ...t, o, lse, dO }, g);
          } finally {
            [g.dq, g.dk, g.dv].forEach((x) => x.dispose());
          }
        },
      };
    },
    torch: {
      setup: `${torchSetup(s, s.T, true)}; o=F.scaled_dot_product_attention(q,k,v,is_causal=True); do=torch.randn_like(o)`,
      run: 'q.grad=None; k.grad=None; v.grad=None; o.backward(do, retain_graph=True)',
    },
  };
}

/**
 * One new token per sequence against a full cache of S rows; `path` forces a kernel, for comparison; `kv` the
 * caches' dtype where it is not the queries' (generate()'s f16 caches under f32 activations; torch runs it in f32).
 */
function decodeCase(s: Shape, S: number, size: 'cpu' | 'gpu', path?: 'scalar' | 'cpu-tiled', kv: F = s.dtype): BenchCase {
  return {
    family: 'attention',
    name: `attention decode ${label(s)}${kv === s.dtype ? '' : ` kv ${kv}`} S${S}${path ? ` (${path} path)` : ''}`,
    flops: 4 * s.B * s.Hq * s.T * S * s.D,
    bytes: s.B * (2 * bytesOf(kv) * S * s.Hkv * s.D + 2 * bytesOf(s.dtype) * s.T * s.Hq * s.D),
    size,
    needs: needsF16(s.dtype, kv),
    prepare(gpu) {
      const t = qkv(gpu, s, S, kv);
      const lengths: Tensor<'i32'> = gpu.tensor([s.B], 'i32', new Array<number>(s.B).fill(S));
      return {
        run: () => attentionDecode(gpu, t.q, t.k, t.v, lengths, { path }).dispose(),
        dispose: () => [t.q, t.k, t.v, lengths].forEach((x) => x.dispose()),
        check: async () => {
          const o = attentionDecode(gpu, t.q, t.k, t.v, lengths, { path });
          try {
            return await checkAttentionForward(dims(s, S), t.q, t.k, t.v, o);
          } finally {
            o.dispose();
          }
        },
      };
    },
    torch: { setup: torchSetup(s, S, false), run: 'F.scaled_dot_product_attention(q,k,v)' },
  };
}

/**
 * A decode step's k and v rows written into their caches at each sequence's position, in one dispatch; `kv` the
 * caches' dtype where it is not the rows' (f32 rows rounded into f16 caches).
 */
function appendCase(s: Shape, S: number, size: 'cpu' | 'gpu', kv: F = s.dtype): BenchCase {
  const row = s.Hkv * s.D;
  return {
    family: 'attention',
    name: `attention cache append k+v ${s.dtype}${kv === s.dtype ? '' : ` into ${kv}`} B${s.B} T${s.T} Hkv${s.Hkv} D${s.D} S${S}`,
    bytes: 2 * (bytesOf(s.dtype) + bytesOf(kv)) * s.B * s.T * row,
    size,
    needs: needsF16(s.dtype, kv),
    prepare(gpu) {
      const t = qkv(gpu, s, S, kv);
      const k = gpu.tensor([s.B, s.T, s.Hkv, s.D], s.dtype, benchValues(s.B * s.T * row, 3.4, 5));
      const v = gpu.tensor([s.B, s.T, s.Hkv, s.D], s.dtype, benchValues(s.B * s.T * row, 3.4, 6));
      // Sequences at different lengths, all inside the cache.
      const pos = Array.from({ length: s.B }, (_, b) => (S - s.T) - ((b * 37) % (S - s.T)));
      const positions: Tensor<'i32'> = gpu.tensor([s.B], 'i32', pos);
      const run = () => attentionCacheAppendKV(gpu, t.k, t.v, k, v, positions);
      return {
        run,
        dispose: () => [t.q, t.k, t.v, k, v, positions].forEach((x) => x.dispose()),
        // Each sequence's new rows, read back from both caches, against k and v.
        check: async () => {
          run();
          const meter = new ErrorMeter();
          for (let b = 0; b < s.B; b++) {
            for (const [cache, x] of [[t.k, k], [t.v, v]] as const) {
              const rows = (c: Tensor, first: number) => readRows(c.reshape([c.size / row, row]), first, s.T);
              meter.addRow(await rows(cache, b * S + pos[b]), await rows(x, b * s.T));
            }
          }
          return meter.result(CHECK_TOL);
        },
      };
    },
    torch: {
      setup:
        `k=torch.randn(${s.B},${s.Hkv},${S},${s.D},device=dev,dtype=dt); v=torch.randn_like(k); ` +
        `kn=torch.randn(${s.B},${s.Hkv},${s.T},${s.D},device=dev,dtype=dt); vn=torch.randn_like(kn); p=${S - s.T}`,
      run: 'k[:,:,p:p+kn.shape[2]]=kn; v[:,:,p:p+vn.shape[2]]=vn',
    },
  };
}

const small: Shape = { B: 1, T: 128, Hq: 4, Hkv: 2, D: 64, dtype: 'f32' };
/** The main job's policy (init-model mini) on its SFT batches. */
const mini: Shape = { B: 4, T: 672, Hq: 4, Hkv: 2, D: 32, dtype: 'f32' };
const qwen7b: Shape = { B: 1, T: 2048, Hq: 28, Hkv: 4, D: 128, dtype: 'f16' };
const qwen05b: Shape = { B: 1, T: 1, Hq: 14, Hkv: 2, D: 64, dtype: 'f32' };

/** Benchmarks for the attention kernels: small cases for lavapipe, Qwen2.5-7B shapes for real GPUs. */
export const attentionBenches: BenchCase[] = [
  forwardCase(small, 'cpu'),
  backwardCase(small, 'cpu'),
  forwardCase(mini, 'cpu'),
  forwardCase(mini, 'cpu', 'scalar'),
  backwardCase(mini, 'cpu'),
  backwardCase(mini, 'cpu', 'scalar'),
  decodeCase({ ...small, T: 1 }, 512, 'cpu'),
  decodeCase({ ...small, T: 1 }, 512, 'cpu', 'scalar'),
  // Qwen2.5-0.5B's heads (14 query heads over 2 KV heads, D 64) decoding one sequence: 7 row blocks a KV head on
  // the CPU kernel (session 28; before, the workgroup kernel, the scalar rows).
  decodeCase(qwen05b, 1024, 'cpu'),
  decodeCase(qwen05b, 1024, 'cpu', 'scalar'),
  // Qwen2.5-7B's heads (28 over 4, D 128) in f32: one row a block.
  decodeCase({ ...qwen7b, T: 1, dtype: 'f32' }, 1024, 'cpu'),
  decodeCase({ ...qwen7b, T: 1, dtype: 'f32' }, 1024, 'cpu', 'scalar'),
  // The main job's PPO sampling: 4 samples of a state, ~600-token prompts plus up to 288 new tokens.
  decodeCase({ ...mini, T: 1 }, 800, 'cpu'),
  decodeCase({ ...mini, T: 1 }, 800, 'cpu', 'scalar'),
  appendCase({ ...mini, T: 1 }, 800, 'cpu'),
  // The same with f16 caches under f32 queries (generate()'s kvDtype 'f16'), both kernels, and the rounding append.
  decodeCase({ ...mini, T: 1 }, 800, 'cpu', undefined, 'f16'),
  decodeCase({ ...mini, T: 1 }, 800, 'cpu', 'scalar', 'f16'),
  appendCase({ ...mini, T: 1 }, 800, 'cpu', 'f16'),
  forwardCase(qwen7b, 'gpu'),
  forwardCase(qwen7b, 'gpu', 'subgroup-matrix'),
  // Other ways of keeping O, K in rows, and 2-subgroup tiles: all correct on the H200 since session 14, not yet
  // benchmarked against SDPA.
  ...([
    { nsub: 4, bk: 32, kLayout: 'transposed', accum: 'fragments' },
    { nsub: 4, bk: 32, kLayout: 'transposed', accum: 'two-pass' },
    { nsub: 4, bk: 32, kLayout: 'rows' },
    { nsub: 2, bk: 32, kLayout: 'transposed' },
    // K and V fragments straight from storage (session 15): no staging, so 64-key tiles fit with 4 subgroups.
    { nsub: 4, bk: 32, kvFrom: 'storage' },
    { nsub: 4, bk: 64, kvFrom: 'storage' },
    { nsub: 4, bk: 64, kvFrom: 'storage', accum: 'fragments' },
    { nsub: 4, bk: 64, kvFrom: 'storage', accum: 'two-pass' },
    // One subgroup a workgroup (session 29): barriers within 32 lanes, K and V from L2.
    { nsub: 1, bk: 64, kvFrom: 'storage', accum: 'fragments' },
  ] as SgmAttentionTile[]).map((t) => forwardCase(qwen7b, 'gpu', 'subgroup-matrix', t)),
  backwardCase(qwen7b, 'gpu'),
  // The subgroup-matrix backward (session 15): correct under emulation, not yet timed.
  backwardCase(qwen7b, 'gpu', undefined, SGM_ATTENTION_BWD_TILE),
  decodeCase({ ...qwen7b, T: 1 }, 4096, 'gpu'),
  // What generate() runs for f16 weights: f32 queries (activations) against f16 caches; and against f32 caches, as
  // it did before session 32.
  decodeCase({ ...qwen7b, T: 1, dtype: 'f32' }, 4096, 'gpu', undefined, 'f16'),
  decodeCase({ ...qwen7b, T: 1, dtype: 'f32' }, 4096, 'gpu'),
  appendCase({ ...qwen7b, T: 1 }, 4096, 'gpu'),
  appendCase({ ...qwen7b, T: 1, dtype: 'f32' }, 4096, 'gpu', 'f16'),
];
