// GPU time of causal attention forward and backward at the main job's shape (B 4, T 672, 4 query and 2 KV heads,
// D 32, f32), for two or more builds of @mlagent/core-kernels (copies of packages/core-kernels/dist inside this
// repo, e.g. .bench-builds/NAME), alternating round by round; ratios are medians of per-round ratios to the first.
// Run: node --import tsx tools/bench/attention-pair.ts --builds DIR_A,DIR_B [--rounds 9]
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';

interface Tensor {
  dispose(): void;
}
interface Gpu {
  tensor(shape: number[], dtype: 'f32', data: Float32Array): Tensor;
  profiling: boolean;
  takeTimings(): Promise<Array<{ ms: number }>>;
}
interface CoreKernels {
  Gpu: { create(): Promise<Gpu> };
  attention(gpu: Gpu, q: Tensor, k: Tensor, v: Tensor, opts: { causal: boolean }): { o: Tensor; lse: Tensor };
  attentionBackward(gpu: Gpu, q: Tensor, k: Tensor, v: Tensor, o: Tensor, lse: Tensor, dO: Tensor, opts: { causal: boolean }): { dq: Tensor; dk: Tensor; dv: Tensor };
}

const { values } = parseArgs({ options: { builds: { type: 'string' }, rounds: { type: 'string', default: '9' } } });
if (!values.builds) throw new Error('--builds DIR_A,DIR_B is required (copies of packages/core-kernels/dist)');
const rounds = Number(values.rounds);
if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds must be a positive integer, got ${values.rounds}`);

const [B, T, Hq, Hkv, D] = [4, 672, 4, 2, 32];
const random = (n: number) => Float32Array.from({ length: n }, () => Math.random() - 0.5);
const data = { q: random(B * T * Hq * D), k: random(B * T * Hkv * D), v: random(B * T * Hkv * D), dO: random(B * T * Hq * D) };
const sum = async (gpu: Gpu) => (await gpu.takeTimings()).reduce((s, t) => s + t.ms, 0);

const arms: Array<{ dir: string; once: () => Promise<number[]>; runs: number[][] }> = [];
for (const dir of values.builds.split(',')) {
  const m = (await import(pathToFileURL(path.resolve(dir, 'index.js')).href)) as CoreKernels;
  const gpu = await m.Gpu.create();
  const q = gpu.tensor([B, T, Hq, D], 'f32', data.q);
  const k = gpu.tensor([B, T, Hkv, D], 'f32', data.k);
  const v = gpu.tensor([B, T, Hkv, D], 'f32', data.v);
  const dO = gpu.tensor([B, T, Hq, D], 'f32', data.dO);
  const once = async () => {
    gpu.profiling = true;
    const f = m.attention(gpu, q, k, v, { causal: true });
    const fwd = await sum(gpu);
    const g = m.attentionBackward(gpu, q, k, v, f.o, f.lse, dO, { causal: true });
    const bwd = await sum(gpu);
    gpu.profiling = false;
    [f.o, f.lse, g.dq, g.dk, g.dv].forEach((t) => t.dispose());
    return [fwd, bwd];
  };
  await once(); // compiles
  arms.push({ dir, once, runs: [] });
}
for (let r = 0; r < rounds; r++) for (const arm of r % 2 ? [...arms].reverse() : arms) arm.runs.push(await arm.once());
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const arm of arms) {
  const ratio = (i: number) => median(arm.runs.map((run, r) => run[i] / arms[0].runs[r][i])).toFixed(3);
  const vs = arm === arms[0] ? '' : `; per-round ratio to ${arms[0].dir}: fwd ${ratio(0)}, bwd ${ratio(1)}`;
  console.log(`${arm.dir}: fwd ${median(arm.runs.map((r) => r[0])).toFixed(1)} ms, bwd ${median(arm.runs.map((r) => r[1])).toFixed(1)} ms (medians of ${rounds})${vs}`);
}
process.exit(0);
