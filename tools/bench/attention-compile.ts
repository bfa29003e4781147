// First-call time (llvmpipe compiling the pipelines) and GPU time of causal attention forward and backward at the
// main job's shape (B 4, T 672, 4 query and 2 KV heads, f32), by head dim, path and rows per lane of the CPU
// kernels. Run with Mesa's shader cache off, or a second run measures the cache:
// MESA_SHADER_CACHE_DISABLE=true node --import tsx tools/bench/attention-compile.ts [--head-dim 32] [--path cpu-tiled|scalar] [--rows N]
import { parseArgs } from 'node:util';
import { Gpu, attention, attentionBackward } from '@mlagent/core-kernels';

const { values } = parseArgs({
  options: { 'head-dim': { type: 'string', default: '32' }, path: { type: 'string', default: 'cpu-tiled' }, rows: { type: 'string' } },
});
const D = Number(values['head-dim']);
if (!Number.isInteger(D) || D < 1) throw new Error(`--head-dim must be a positive integer, got ${values['head-dim']}`);
if (values.path !== 'cpu-tiled' && values.path !== 'scalar') throw new Error(`--path must be cpu-tiled or scalar, got ${values.path}`);
const path = values.path;
const cpuRows = values.rows === undefined ? undefined : Number(values.rows);

const gpu = await Gpu.create();
const [B, T, Hq, Hkv] = [4, 672, 4, 2];
const random = (n: number) => Float32Array.from({ length: n }, () => Math.random() - 0.5);
const q = gpu.tensor([B, T, Hq, D], 'f32', random(B * T * Hq * D));
const k = gpu.tensor([B, T, Hkv, D], 'f32', random(B * T * Hkv * D));
const v = gpu.tensor([B, T, Hkv, D], 'f32', random(B * T * Hkv * D));
const dO = gpu.tensor([B, T, Hq, D], 'f32', random(B * T * Hq * D));
const opts = { path, cpuRows } as const;

const t0 = performance.now();
const first = attention(gpu, q, k, v, opts);
await first.o.read();
const t1 = performance.now();
const firstGrad = attentionBackward(gpu, q, k, v, first.o, first.lse, dO, opts);
await firstGrad.dq.read();
const t2 = performance.now();

const sum = async () => (await gpu.takeTimings()).reduce((s, t) => s + t.ms, 0);
const fwd: number[] = [];
const bwd: number[] = [];
gpu.profiling = true;
for (let i = 0; i < 5; i++) {
  const f = attention(gpu, q, k, v, opts);
  fwd.push(await sum());
  const g = attentionBackward(gpu, q, k, v, f.o, f.lse, dO, opts);
  bwd.push(await sum());
  [f.o, f.lse, g.dq, g.dk, g.dv].forEach((t) => t.dispose());
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)].toFixed(1);
console.log(
  `D ${D}, ${path}${cpuRows ? `, ${cpuRows} rows a lane` : ''}: first call forward ${(t1 - t0).toFixed(0)} ms, backward ${(t2 - t1).toFixed(0)} ms; ` +
    `GPU time forward ${median(fwd)} ms, backward ${median(bwd)} ms (medians of 5)`,
);
process.exit(0);
