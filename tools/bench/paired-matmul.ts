// Paired timing of two or more builds of @mlagent/core-kernels on one matmul shape, in one process.
// Run: node --import tsx tools/bench/paired-matmul.ts --builds DIR_A,DIR_B [--shape 1024x1024x1024] [--rounds 15]
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
const dims = values.shape.split('x').map(Number);
if (dims.length !== 3 || dims.some((d) => !Number.isInteger(d) || d <= 0)) throw new Error(`--shape must be MxNxK, got ${values.shape}`);
const [M, N, K] = dims;
const rounds = Number(values.rounds);
if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds must be a positive integer, got ${values.rounds}`);

const random = (n: number) => Float32Array.from({ length: n }, () => Math.random() - 0.5);
const a = random(M * K);
const b = random(K * N);
const builds: Array<{ dir: string; once: () => Promise<number>; ms: number[] }> = [];
for (const dir of values.builds.split(',')) {
  const mod = (await import(pathToFileURL(path.resolve(dir, 'index.js')).href)) as CoreKernels;
  const gpu = await mod.Gpu.create();
  const ta = gpu.tensor([M, K], 'f32').write(a);
  const tb = gpu.tensor([K, N], 'f32').write(b);
  const tc = gpu.tensor([M, N], 'f32');
  const once = async () => {
    const t0 = performance.now();
    mod.matmul(gpu, ta, tb, { out: tc });
    await gpu.sync();
    return performance.now() - t0;
  };
  await once(); // compiles the pipelines
  builds.push({ dir, once, ms: [] });
}

for (let r = 0; r < rounds; r++) {
  for (const build of r % 2 ? [...builds].reverse() : builds) build.ms.push(await build.once());
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const gflop = (2 * M * N * K) / 1e9;
for (const build of builds) {
  const med = median(build.ms);
  console.log(`${build.dir}: median ${med.toFixed(1)} ms (${(gflop / (med / 1e3)).toFixed(1)} GFLOP/s), min ${Math.min(...build.ms).toFixed(1)} ms`);
}
for (const build of builds.slice(1)) {
  const ratios = build.ms.map((ms, i) => ms / builds[0].ms[i]);
  console.log(`time ${build.dir} / ${builds[0].dir}: median of ${rounds} paired rounds ${median(ratios).toFixed(3)}`);
}
process.exit(0);
