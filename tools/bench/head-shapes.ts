// GPU time of the fused LM head (forward, and backward with dLogprob) at a few (T, H, V) shapes, for one or more
// builds of @mlagent/core-kernels (copies of packages/core-kernels/dist inside this repo, e.g. .bench-builds/NAME).
// Run: node --import tsx tools/bench/head-shapes.ts [--builds DIR[,DIR]] [--rounds 5] [--shapes TxHxV[,TxHxV...]]
//      [--kernels auto|cpu|tiled[,...]]   (each build x kernel is an arm; HeadOptions.kernel, default auto)
// (builds paired round by round). Also prints each build's first call per shape (shader compiles; run with
// MESA_SHADER_CACHE_DISABLE=true to see them whole). The main job's SFT step is --shapes 2700x128x4282.
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';

interface Tensor {
  dispose(): void;
}
interface Gpu {
  tensor(shape: number[], dtype: 'f32' | 'i32', data: ArrayLike<number>): Tensor;
  sync(): Promise<void>;
  profiling: boolean;
  takeTimings(): Promise<Array<{ ms: number }>>;
}
interface HeadOut {
  logprob: Tensor;
  entropy: Tensor;
  lse: Tensor;
  loss: Tensor;
  count: Tensor;
}
interface CoreKernels {
  Gpu: { create(): Promise<Gpu> };
  headForward(gpu: Gpu, h: Tensor, w: Tensor, y: Tensor, opts: { kernel: string }): HeadOut;
  headBackward(gpu: Gpu, h: Tensor, w: Tensor, y: Tensor, saved: HeadOut, grads: { dLogprob: Tensor }, opts: { kernel: string }): Tensor;
}

const { values } = parseArgs({
  options: {
    builds: { type: 'string', default: 'packages/core-kernels/dist' },
    rounds: { type: 'string', default: '5' },
    shapes: { type: 'string' },
    kernels: { type: 'string', default: 'auto' },
  },
});
const rounds = Number(values.rounds);
if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds must be a positive integer, got ${values.rounds}`);
// The main job's model (mini: H=128, 4282-token vocabulary) over 512 tokens, the tiny model over Qwen's full
// vocabulary, a wider model, and the tiny model over the cut vocabulary.
const DEFAULT_SHAPES = [
  [512, 128, 4282],
  [16, 64, 151936],
  [16, 512, 32768],
  [128, 64, 4282],
];
const SHAPES = values.shapes
  ? values.shapes.split(',').map((shape) => {
      const dims = shape.split('x').map(Number);
      if (dims.length !== 3 || dims.some((d) => !Number.isInteger(d) || d <= 0) || dims[1] % 4) {
        throw new Error(`--shapes must be TxHxV[,TxHxV...] with H a multiple of 4, got ${values.shapes}`);
      }
      return dims;
    })
  : DEFAULT_SHAPES;
type Kernel = 'auto' | 'cpu' | 'tiled';
const KERNELS = values.kernels.split(',') as Kernel[];
for (const k of KERNELS) if (!['auto', 'cpu', 'tiled'].includes(k)) throw new Error(`--kernels takes auto, cpu or tiled, got ${k}`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const gpuMs = async (gpu: Gpu) => (await gpu.takeTimings()).reduce((s, t) => s + t.ms, 0);

interface Arm {
  dir: string;
  once: () => Promise<number[]>;
  runs: number[][];
  dispose: () => void;
}
const kernels = new Map<string, { k: CoreKernels; gpu: Gpu }>();
for (const dir of values.builds.split(',')) {
  const k = (await import(pathToFileURL(path.resolve(dir, 'index.js')).href)) as CoreKernels;
  kernels.set(dir, { k, gpu: await k.Gpu.create() });
}
// Arms (builds x kernels) alternate round by round (reversing order every other round), so the VM's drift falls
// on all of them.
for (const [T, H, V] of SHAPES) {
  const arms: Arm[] = [];
  for (const [dir, { k, gpu }] of kernels) {
    for (const kernel of KERNELS) {
      const name = KERNELS.length > 1 ? `${dir} (${kernel})` : dir;
      const h = gpu.tensor([T, H], 'f32', Float32Array.from({ length: T * H }, (_, i) => Math.sin(i) * 0.5));
      const w = gpu.tensor([V, H], 'f32', Float32Array.from({ length: V * H }, (_, i) => Math.cos(i) * 0.1));
      const y = gpu.tensor([T], 'i32', Array.from({ length: T }, (_, i) => (i * 37) % V));
      const dLogprob = gpu.tensor([T], 'f32', new Float32Array(T).fill(1));
      const once = async () => {
        gpu.profiling = true;
        const f = k.headForward(gpu, h, w, y, { kernel });
        const fwd = await gpuMs(gpu);
        const dh = k.headBackward(gpu, h, w, y, f, { dLogprob }, { kernel });
        const bwd = await gpuMs(gpu);
        gpu.profiling = false;
        await gpu.sync(); // surfaces a failed dispatch rather than timing nothing
        [dh, f.logprob, f.entropy, f.lse, f.loss, f.count].forEach((t) => t.dispose());
        return [fwd, bwd];
      };
      const t0 = performance.now();
      await once(); // compiles
      console.log(`${name}: T=${T} H=${H} V=${V}: first call ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      arms.push({ dir: name, once, runs: [], dispose: () => [h, w, y, dLogprob].forEach((t) => t.dispose()) });
    }
  }
  for (let r = 0; r < rounds; r++) for (const arm of r % 2 ? [...arms].reverse() : arms) arm.runs.push(await arm.once());
  for (const arm of arms) {
    const ratio = (pass: number) => median(arm.runs.map((run, i) => run[pass] / arms[0].runs[i][pass])).toFixed(3);
    const vs = arm === arms[0] ? '' : `; per-round ratio to ${arms[0].dir}: fwd ${ratio(0)}, bwd ${ratio(1)}`;
    console.log(`${arm.dir}: T=${T} H=${H} V=${V}: fwd ${median(arm.runs.map((r) => r[0])).toFixed(1)} ms, bwd ${median(arm.runs.map((r) => r[1])).toFixed(1)} ms (medians of ${rounds})${vs}`);
    arm.dispose();
  }
}
process.exit(0);
