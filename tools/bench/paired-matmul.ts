// Paired timing of two or more builds of @mlagent/core-kernels on one matmul shape, in one process.
// Run: node --import tsx tools/bench/paired-matmul.ts --builds DIR_A,DIR_B [--shape 1024x1024x1024] [--rounds 15]
//  or: node --import tsx tools/bench/paired-matmul.ts --builds DIR --shape 1024x1024x1024,1024x1024x1008 (one build,
//      shapes paired; the ratio is then of time per FLOP)
// Each DIR is a copy of packages/core-kernels/dist kept inside this repo (e.g. .bench-builds/NAME, git-ignored) so
// that `webgpu` resolves from it. On a shared VM the same build's time moves by 2x within minutes (docs/BENCHMARKS.md);
// alternating the builds product by product and taking the median of the per-round ratios cancels most of that drift.
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';

interface CoreKernels {
  Gpu: { create(): Promise<Gpu> };
  matmul(gpu: Gpu, a: Tensor, b: Tensor, opts: { out: Tensor }): unknown;
}
interface Tensor {
  write(data: Float32Array): Tensor;
}
interface Gpu {
  tensor(shape: number[], dtype: 'f32'): Tensor;
  sync(): Promise<void>;
}

const { values } = parseArgs({
  options: {
    builds: { type: 'string' },
    shape: { type: 'string', default: '1024x1024x1024' },
    rounds: { type: 'string', default: '15' },
  },
});
if (!values.builds) throw new Error('--builds DIR_A,DIR_B is required (copies of packages/core-kernels/dist)');
const shapes = values.shape.split(',').map((shape) => {
  const dims = shape.split('x').map(Number);
  if (dims.length !== 3 || dims.some((d) => !Number.isInteger(d) || d <= 0)) throw new Error(`--shape must be MxNxK[,MxNxK...], got ${values.shape}`);
  return dims as [number, number, number];
});
const dirs = values.builds.split(',');
if (dirs.length > 1 && shapes.length > 1) throw new Error('pair either several builds at one shape or one build at several shapes');
const rounds = Number(values.rounds);
if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds must be a positive integer, got ${values.rounds}`);

const random = (n: number) => Float32Array.from({ length: n }, () => Math.random() - 0.5);
interface Arm {
  name: string;
  gflop: number;
  once: () => Promise<number>;
  ms: number[];
}
const arms: Arm[] = [];
const modules = new Map<string, { mod: CoreKernels; gpu: Gpu }>();
for (const dir of dirs) {
  const mod = (await import(pathToFileURL(path.resolve(dir, 'index.js')).href)) as CoreKernels;
  modules.set(dir, { mod, gpu: await mod.Gpu.create() });
}
for (const dir of dirs) {
  for (const [M, N, K] of shapes) {
    const { mod, gpu } = modules.get(dir)!;
    const ta = gpu.tensor([M, K], 'f32').write(random(M * K));
    const tb = gpu.tensor([K, N], 'f32').write(random(K * N));
    const tc = gpu.tensor([M, N], 'f32');
    const once = async () => {
      const t0 = performance.now();
      mod.matmul(gpu, ta, tb, { out: tc });
      await gpu.sync();
      return performance.now() - t0;
    };
    await once(); // compiles the pipelines
    arms.push({ name: shapes.length > 1 ? `${dir} ${M}x${N}x${K}` : dir, gflop: (2 * M * N * K) / 1e9, once, ms: [] });
  }
}

for (let r = 0; r < rounds; r++) {
  for (const arm of r % 2 ? [...arms].reverse() : arms) arm.ms.push(await arm.once());
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
for (const arm of arms) {
  const med = median(arm.ms);
  console.log(`${arm.name}: median ${med.toFixed(1)} ms (${(arm.gflop / (med / 1e3)).toFixed(1)} GFLOP/s), min ${Math.min(...arm.ms).toFixed(1)} ms`);
}
for (const arm of arms.slice(1)) {
  const ratios = arm.ms.map((ms, i) => ms / arm.gflop / (arms[0].ms[i] / arms[0].gflop));
  console.log(`time per FLOP ${arm.name} / ${arms[0].name}: median of ${rounds} paired rounds ${median(ratios).toFixed(3)}`);
}
process.exit(0);
