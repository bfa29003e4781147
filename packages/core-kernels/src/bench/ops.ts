import { embedding, embeddingBackward } from '../kernels/embedding.js';
import { rmsnorm, rmsnormBackward } from '../kernels/rmsnorm.js';
import { rope, ropeQK } from '../kernels/rope.js';
import { swiglu, swigluBackward } from '../kernels/swiglu.js';
import type { Gpu } from '../runtime/gpu.js';
import type { BenchCase } from './types.js';
import { benchTensor, disposeAll } from './data.js';
import { worstOf } from './check.js';
import { checkAdd, checkEmbedding, checkEmbeddingBackward, checkRmsnorm, checkRmsnormBackward, checkRope, checkSwiglu } from './check-ops.js';

// Qwen2.5-7B shapes.
const HIDDEN = 3584;
const HEADS = 28;
const HEAD_DIM = 128;
const INTER = 18944;
const VOCAB = 152064;

type Size = 'cpu' | 'gpu';
type F = 'f32' | 'f16';

const bytesOf = (dt: F) => (dt === 'f16' ? 2 : 4);
/** Torch dtype: `dt` (f16 on cuda, f32 on cpu) for half cases, float32 otherwise. */
const torchDt = (dt: F) => (dt === 'f16' ? 'dt' : 'torch.float32');
const needs = (dt: F) => (dt === 'f16' ? ['shader-f16'] : undefined);
// torch_bench.py enables autograd only for runs that mention "backward", so backward cases call y.backward().

function rmsnormCase(t: number, dt: F, size: Size): BenchCase {
  const h = HIDDEN;
  return {
    family: 'ops',
    name: `rmsnorm ${dt} [${t},${h}]`,
    bytes: 2 * t * h * bytesOf(dt) + h * bytesOf(dt) + 4 * t,
    size,
    needs: needs(dt),
    prepare(gpu: Gpu) {
      const x = benchTensor(gpu, [t, h], dt, 2, 11);
      const w = benchTensor(gpu, [h], dt, 2, 12);
      const y = gpu.tensor([t, h], dt);
      return {
        run: () => rmsnorm(gpu, x, w, { out: y }).rstd.dispose(),
        dispose: () => disposeAll(x, w, y),
        check: async () => {
          const { rstd } = rmsnorm(gpu, x, w, { out: y });
          try {
            return await checkRmsnorm(x, w, y, rstd, h);
          } finally {
            rstd.dispose();
          }
        },
      };
    },
    torch: {
      setup: `x=torch.randn(${t},${h},device=dev,dtype=${torchDt(dt)}); w=torch.randn(${h},device=dev,dtype=${torchDt(dt)})`,
      run: 'x*torch.rsqrt(x.pow(2).mean(-1,keepdim=True)+1e-6)*w',
    },
  };
}

/** The residual add folded into the norm (rmsnorm's `residual`): s = x + r, y = rmsnorm(s)·w. */
function rmsnormResidualCase(t: number, dt: F, size: Size): BenchCase {
  const h = HIDDEN;
  return {
    family: 'ops',
    name: `rmsnorm + residual ${dt} [${t},${h}]`,
    bytes: 4 * t * h * bytesOf(dt) + h * bytesOf(dt) + 4 * t,
    size,
    needs: needs(dt),
    prepare(gpu: Gpu) {
      const x = benchTensor(gpu, [t, h], dt, 2, 26);
      const r = benchTensor(gpu, [t, h], dt, 2, 27);
      const w = benchTensor(gpu, [h], dt, 2, 28);
      const y = gpu.tensor([t, h], dt);
      const sum = gpu.tensor([t, h], dt);
      const run = () => rmsnorm(gpu, x, w, { out: y, residual: r, sum }).rstd;
      return {
        run: () => run().dispose(),
        dispose: () => disposeAll(x, r, w, y, sum),
        check: async () => {
          const rstd = run();
          try {
            return worstOf([await checkAdd(x, r, sum), await checkRmsnorm(sum, w, y, rstd, h)]);
          } finally {
            rstd.dispose();
          }
        },
      };
    },
    torch: {
      setup:
        `x=torch.randn(${t},${h},device=dev,dtype=${torchDt(dt)}); r=torch.randn_like(x); ` +
        `w=torch.randn(${h},device=dev,dtype=${torchDt(dt)})`,
      run: 's=x+r; y=s*torch.rsqrt(s.pow(2).mean(-1,keepdim=True)+1e-6)*w',
    },
  };
}

function rmsnormBackwardCase(t: number, dt: F, size: Size): BenchCase {
  const h = HIDDEN;
  return {
    family: 'ops',
    name: `rmsnorm backward ${dt} [${t},${h}]`,
    bytes: 3 * t * h * bytesOf(dt) + h * (bytesOf(dt) + 4) + 4 * t,
    size,
    needs: needs(dt),
    prepare(gpu: Gpu) {
      const x = benchTensor(gpu, [t, h], dt, 2, 13);
      const w = benchTensor(gpu, [h], dt, 2, 14);
      const dy = benchTensor(gpu, [t, h], dt, 2, 15);
      const { y, rstd } = rmsnorm(gpu, x, w);
      y.dispose();
      return {
        run: () => {
          const { dx, dw } = rmsnormBackward(gpu, dy, x, w, rstd);
          disposeAll(dx, dw);
        },
        dispose: () => disposeAll(x, w, dy, rstd),
        check: async () => {
          const { dx, dw } = rmsnormBackward(gpu, dy, x, w, rstd);
          try {
            return await checkRmsnormBackward(dy, x, w, dx, dw!, h);
          } finally {
            disposeAll(dx, dw);
          }
        },
      };
    },
    torch: {
      setup:
        `x=torch.randn(${t},${h},device=dev,dtype=${torchDt(dt)},requires_grad=True); ` +
        `w=torch.randn(${h},device=dev,dtype=${torchDt(dt)},requires_grad=True); dy=torch.randn_like(x); ` +
        'y=x*torch.rsqrt(x.pow(2).mean(-1,keepdim=True)+1e-6)*w',
      run: 'x.grad=None; w.grad=None; y.backward(dy,retain_graph=True)',
    },
  };
}

function ropeCase(t: number, dt: F, size: Size): BenchCase {
  const n = t * HEADS * HEAD_DIM;
  const half = HEAD_DIM / 2;
  return {
    family: 'ops',
    name: `rope ${dt} [1,${t},${HEADS},${HEAD_DIM}]`,
    bytes: 2 * n * bytesOf(dt) + 4 * t,
    size,
    needs: needs(dt),
    prepare(gpu: Gpu) {
      const x = benchTensor(gpu, [1, t, HEADS, HEAD_DIM], dt, 2, 16);
      const y = gpu.tensor([1, t, HEADS, HEAD_DIM], dt);
      const positions = gpu.tensor([1, t], 'i32', Int32Array.from({ length: t }, (_, i) => i));
      const run = () => void rope(gpu, x, { theta: 1e6, positions, out: y });
      return {
        run,
        dispose: () => disposeAll(x, y, positions),
        check: () => (run(), checkRope(x, y, positions, 1e6)),
      };
    },
    torch: {
      setup:
        `x=torch.randn(1,${t},${HEADS},${HEAD_DIM},device=dev,dtype=${torchDt(dt)}); ` +
        `inv=1.0/(1e6**(torch.arange(0,${HEAD_DIM},2,device=dev).float()/${HEAD_DIM})); ` +
        `ang=torch.outer(torch.arange(${t},device=dev).float(),inv); emb=torch.cat([ang,ang],-1); ` +
        `cos=emb.cos().to(x.dtype)[None,:,None,:]; sin=emb.sin().to(x.dtype)[None,:,None,:]`,
      run: `x*cos+torch.cat([-x[...,${half}:],x[...,:${half}]],-1)*sin`,
    },
  };
}

/** rope of q (28 heads) and k (4 KV heads) in place in one dispatch (ropeQK), as a decoder layer does. */
function ropeQKCase(t: number, dt: F, size: Size): BenchCase {
  const KV = 4;
  const n = t * (HEADS + KV) * HEAD_DIM;
  return {
    family: 'ops',
    name: `rope q+k ${dt} [1,${t},${HEADS}+${KV},${HEAD_DIM}]`,
    bytes: 2 * n * bytesOf(dt) + 4 * t,
    size,
    needs: needs(dt),
    prepare(gpu: Gpu) {
      const q0 = benchTensor(gpu, [1, t, HEADS, HEAD_DIM], dt, 2, 29);
      const k0 = benchTensor(gpu, [1, t, KV, HEAD_DIM], dt, 2, 30);
      const q = gpu.tensor(q0.shape, dt);
      const k = gpu.tensor(k0.shape, dt);
      const positions = gpu.tensor([1, t], 'i32', Int32Array.from({ length: t }, (_, i) => i));
      // In place: timed runs rotate q and k again and again (a rotation keeps them in range); the check starts
      // from fresh copies.
      gpu.copyTensor(q0, q);
      gpu.copyTensor(k0, k);
      const run = () => ropeQK(gpu, q, k, { theta: 1e6, positions });
      return {
        run,
        dispose: () => disposeAll(q0, k0, q, k, positions),
        check: async () => {
          gpu.copyTensor(q0, q);
          gpu.copyTensor(k0, k);
          run();
          return worstOf([await checkRope(q0, q, positions, 1e6), await checkRope(k0, k, positions, 1e6)]);
        },
      };
    },
    torch: {
      setup:
        `q=torch.randn(1,${t},${HEADS},${HEAD_DIM},device=dev,dtype=${torchDt(dt)}); k=torch.randn(1,${t},${KV},${HEAD_DIM},device=dev,dtype=${torchDt(dt)}); ` +
        `inv=1.0/(1e6**(torch.arange(0,${HEAD_DIM},2,device=dev).float()/${HEAD_DIM})); ` +
        `ang=torch.outer(torch.arange(${t},device=dev).float(),inv); emb=torch.cat([ang,ang],-1); ` +
        `cos=emb.cos().to(q.dtype)[None,:,None,:]; sin=emb.sin().to(q.dtype)[None,:,None,:]`,
      run: `rq=q*cos+torch.cat([-q[...,${HEAD_DIM / 2}:],q[...,:${HEAD_DIM / 2}]],-1)*sin; rk=k*cos+torch.cat([-k[...,${HEAD_DIM / 2}:],k[...,:${HEAD_DIM / 2}]],-1)*sin`,
    },
  };
}

function swigluCase(t: number, dt: F, size: Size): BenchCase {
  const n = t * INTER;
  return {
    family: 'ops',
    name: `swiglu ${dt} [${t},${INTER}]`,
    bytes: 3 * n * bytesOf(dt),
    size,
    needs: needs(dt),
    prepare(gpu: Gpu) {
      const g = benchTensor(gpu, [t, INTER], dt, 2, 17);
      const u = benchTensor(gpu, [t, INTER], dt, 2, 18);
      const y = gpu.tensor([t, INTER], dt);
      const run = () => void swiglu(gpu, g, u, y);
      return { run, dispose: () => disposeAll(g, u, y), check: () => (run(), checkSwiglu(g, u, INTER, { y })) };
    },
    torch: {
      setup: `g=torch.randn(${t},${INTER},device=dev,dtype=${torchDt(dt)}); u=torch.randn_like(g)`,
      run: 'F.silu(g)*u',
    },
  };
}

function swigluBackwardCase(t: number, dt: F, size: Size): BenchCase {
  const n = t * INTER;
  return {
    family: 'ops',
    name: `swiglu backward ${dt} [${t},${INTER}]`,
    bytes: 5 * n * bytesOf(dt),
    size,
    needs: needs(dt),
    prepare(gpu: Gpu) {
      const g = benchTensor(gpu, [t, INTER], dt, 2, 19);
      const u = benchTensor(gpu, [t, INTER], dt, 2, 20);
      const dy = benchTensor(gpu, [t, INTER], dt, 2, 21);
      return {
        run: () => {
          const { dgate, dup } = swigluBackward(gpu, dy, g, u);
          disposeAll(dgate, dup);
        },
        dispose: () => disposeAll(g, u, dy),
        check: async () => {
          const { dgate, dup } = swigluBackward(gpu, dy, g, u);
          try {
            return await checkSwiglu(g, u, INTER, { dy, dgate, dup: dup! });
          } finally {
            disposeAll(dgate, dup);
          }
        },
      };
    },
    torch: {
      setup:
        `g=torch.randn(${t},${INTER},device=dev,dtype=${torchDt(dt)},requires_grad=True); ` +
        'u=torch.randn_like(g,requires_grad=True); dy=torch.randn_like(g); y=F.silu(g)*u',
      run: 'g.grad=None; u.grad=None; y.backward(dy,retain_graph=True)',
    },
  };
}

function randomIds(n: number, vocab: number): Int32Array {
  // A fixed LCG: repeatable, and spread over the vocabulary like real text (with some repeats).
  let s = 12345;
  return Int32Array.from({ length: n }, () => (s = (s * 1103515245 + 12345) >>> 0) % vocab);
}

function embeddingCase(t: number, vocab: number, dt: F, size: Size): BenchCase {
  const h = HIDDEN;
  return {
    family: 'ops',
    name: `embedding ${dt} ${t} tokens from [${vocab},${h}]`,
    bytes: t * h * (bytesOf(dt) + 4) + 4 * t,
    size,
    needs: needs(dt),
    prepare(gpu: Gpu) {
      const table = benchTensor(gpu, [vocab, h], dt, 2, 22);
      const ids = gpu.tensor([t], 'i32', randomIds(t, vocab));
      const y = gpu.tensor([t, h], 'f32');
      const run = () => void embedding(gpu, ids, table, { out: y });
      return { run, dispose: () => disposeAll(table, ids, y), check: () => (run(), checkEmbedding(ids, table, y)) };
    },
    torch: {
      setup:
        `table=torch.randn(${vocab},${h},device=dev,dtype=${torchDt(dt)}); ` +
        `ids=torch.randint(0,${vocab},(${t},),device=dev)`,
      run: 'F.embedding(ids,table).float()',
    },
  };
}

/** Distinct ids, t of them from [0, vocab): a fixed shuffle (the rows a policy puts back into its batch). */
function distinctIds(t: number, vocab: number): Int32Array {
  const all = Int32Array.from({ length: vocab }, (_, i) => i);
  let s = 54321;
  for (let i = vocab - 1; i > 0; i--) {
    const j = (s = (s * 1103515245 + 12345) >>> 0) % (i + 1);
    [all[i], all[j]] = [all[j], all[i]];
  }
  return all.slice(0, t);
}

/**
 * `distinct`: every id once, passed with distinctIds (no linking; the policy's scatter of scored rows back into
 * its batch). Otherwise random ids on the GPU, linked there by O(N²) comparisons.
 */
function embeddingBackwardCase(t: number, vocab: number, dt: F, size: Size, ids: 'random' | 'distinct' = 'random'): BenchCase {
  const h = HIDDEN;
  const distinct = ids === 'distinct';
  return {
    family: 'ops',
    name: `embedding backward ${dt} ${t} tokens into [${vocab},${h}] f32${distinct ? ' (distinct ids)' : ''}`,
    // dy read, touched rows of dTable read and written.
    bytes: t * h * (bytesOf(dt) + 8) + 4 * t,
    size,
    needs: needs(dt),
    prepare(gpu: Gpu) {
      const dy = benchTensor(gpu, [t, h], dt, 2, 23);
      const tid = gpu.tensor([t], 'i32', distinct ? distinctIds(t, vocab) : randomIds(t, vocab));
      const dTable = gpu.zeros([vocab, h], 'f32');
      const run = () => void embeddingBackward(gpu, tid, dy, vocab, { accumulate: dTable, distinctIds: distinct });
      return {
        run,
        dispose: () => disposeAll(dy, tid, dTable),
        // The timed runs accumulated into dTable: one run from zeros.
        check: () => (gpu.clear(dTable), run(), checkEmbeddingBackward(tid, dy, dTable)),
      };
    },
    torch: {
      setup:
        `dy=torch.randn(${t},${h},device=dev,dtype=${torchDt(dt)}); ` +
        (distinct ? `ids=torch.randperm(${vocab},device=dev)[:${t}]; ` : `ids=torch.randint(0,${vocab},(${t},),device=dev); `) +
        `dT=torch.zeros(${vocab},${h},device=dev,dtype=torch.float32)`,
      run: 'dT.index_add_(0,ids,dy.float())',
    },
  };
}

/** Benchmarks for the ops kernels: small f32 shapes for lavapipe, Qwen2.5-7B shapes in f16 for real GPUs. */
export const opsBenches: BenchCase[] = [
  rmsnormCase(64, 'f32', 'cpu'),
  rmsnormResidualCase(64, 'f32', 'cpu'),
  rmsnormBackwardCase(64, 'f32', 'cpu'),
  ropeCase(64, 'f32', 'cpu'),
  ropeQKCase(64, 'f32', 'cpu'),
  swigluCase(64, 'f32', 'cpu'),
  swigluBackwardCase(64, 'f32', 'cpu'),
  embeddingCase(64, 4096, 'f32', 'cpu'),
  embeddingBackwardCase(64, 4096, 'f32', 'cpu'),
  embeddingBackwardCase(2048, 4096, 'f32', 'cpu'),
  embeddingBackwardCase(2048, 4096, 'f32', 'cpu', 'distinct'),
  ...[512, 4096].flatMap((t) => [
    rmsnormCase(t, 'f16', 'gpu'),
    rmsnormResidualCase(t, 'f16', 'gpu'),
    rmsnormBackwardCase(t, 'f16', 'gpu'),
    ropeCase(t, 'f16', 'gpu'),
    ropeQKCase(t, 'f16', 'gpu'),
    swigluCase(t, 'f16', 'gpu'),
    swigluBackwardCase(t, 'f16', 'gpu'),
    embeddingCase(t, VOCAB, 'f16', 'gpu'),
    embeddingBackwardCase(t, VOCAB, 'f32', 'gpu'),
    embeddingBackwardCase(t, VOCAB, 'f32', 'gpu', 'distinct'),
  ]),
];
