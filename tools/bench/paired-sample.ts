// Paired timing of two or more builds of @mlagent/core-kernels' sampleTokens on one case, in one process.
// Run: node --import tsx tools/bench/paired-sample.ts --builds DIR_A,DIR_B [--rows 1] [--vocab 152064]
//        [--temperature 0.7] [--top-k 50] [--top-p 0.9] [--sd 3] [--rounds 15]
// Each DIR is a copy of packages/core-kernels/dist kept inside this repo (e.g. .bench-builds/NAME, git-ignored), as
// for paired-matmul.ts. The logits are normal with standard deviation --sd (the kernel benchmark's sampling cases
// draw sd 3); every build samples the same logits with the same seed, and the tool checks that the ids agree.
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';

interface Tensor {
  write(data: Float32Array): Tensor;
  read(): Promise<Int32Array>;
}
interface Gpu {
  tensor(shape: number[], dtype: 'f32'): Tensor;
  sync(): Promise<void>;
}
interface CoreKernels {
  Gpu: { create(): Promise<Gpu> };
  sampleTokens(gpu: Gpu, logits: Tensor, opts: object): { ids: Tensor };
}

const { values } = parseArgs({
  options: {
    builds: { type: 'string' },
    rows: { type: 'string', default: '1' },
    vocab: { type: 'string', default: '152064' },
    temperature: { type: 'string', default: '0.7' },
    'top-k': { type: 'string', default: '50' },
    'top-p': { type: 'string', default: '0.9' },
    sd: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '15' },
  },
});
if (!values.builds) throw new Error('--builds DIR_A,DIR_B is required (copies of packages/core-kernels/dist)');
const num = (name: keyof typeof values, integer = false): number => {
  const v = Number(values[name]);
  if (!Number.isFinite(v) || v < 0 || (integer && !Number.isInteger(v))) throw new Error(`--${name} must be a non-negative ${integer ? 'integer' : 'number'}, got ${values[name]}`);
  return v;
};
const [B, V, rounds] = [num('rows', true), num('vocab', true), num('rounds', true)];
if (B < 1 || V < 1 || rounds < 1) throw new Error('--rows, --vocab and --rounds must be at least 1');
const opts = { temperature: num('temperature'), topK: num('top-k', true), topP: num('top-p') || 1, seed: 7 };
const sd = num('sd');

// Box-Muller over Math.random: the same logits go to every build.
const logits = Float32Array.from({ length: B * V }, () => sd * Math.sqrt(-2 * Math.log(1 - Math.random())) * Math.cos(2 * Math.PI * Math.random()));

interface Arm {
  name: string;
  once: (step: number) => Promise<number>;
  ids: (step: number) => Promise<Int32Array>;
  ms: number[];
}
const arms: Arm[] = [];
for (const dir of values.builds.split(',')) {
  const mod = (await import(pathToFileURL(path.resolve(dir, 'index.js')).href)) as CoreKernels;
  const gpu = await mod.Gpu.create();
  const x = gpu.tensor([B, V], 'f32').write(logits);
  const ids = async (step: number) => mod.sampleTokens(gpu, x, { ...opts, step }).ids.read();
  const once = async (step: number) => {
    const t0 = performance.now();
    mod.sampleTokens(gpu, x, { ...opts, step });
    await gpu.sync();
    return performance.now() - t0;
  };
  await once(0); // compiles the pipeline
  arms.push({ name: dir, once, ids, ms: [] });
}

for (const step of [1, 2, 3]) {
  const want = Array.from(await arms[0].ids(step)).join(',');
  for (const arm of arms.slice(1)) {
    const got = Array.from(await arm.ids(step)).join(',');
    if (got !== want) console.log(`step ${step}: ${arm.name} drew ${got}, ${arms[0].name} drew ${want}`);
  }
}
for (let r = 0; r < rounds; r++) {
  for (const arm of r % 2 ? [...arms].reverse() : arms) arm.ms.push(await arm.once(r));
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
for (const arm of arms) console.log(`${arm.name}: median ${median(arm.ms).toFixed(2)} ms, min ${Math.min(...arm.ms).toFixed(2)} ms`);
for (const arm of arms.slice(1)) {
  const ratios = arm.ms.map((ms, i) => ms / arms[0].ms[i]);
  console.log(`time ${arm.name} / ${arms[0].name}: median of ${rounds} paired rounds ${median(ratios).toFixed(3)}`);
}
process.exit(0);
