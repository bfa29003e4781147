// The GPU GEMV's two kernels on the same products, alternating: 'vec' (16-byte loads of W) and 'scalar' (one
// element a load). Medians of GPU timestamps over the rounds after a warm-up; ratio = vec time / scalar time.
// On lavapipe it forces the GPU path, which decoding there does not take (cpu-gemv), so it compares kernels only.
// Run: node --import tsx tools/bench/gemv-pair.ts [--rounds 7]
import { parseArgs } from 'node:util';
import { Gpu, benchTensor, matmul } from '@mlagent/core-kernels';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '7' } } });
const rounds = Number(values.rounds);
if (!Number.isInteger(rounds) || rounds < 2) throw new Error(`--rounds must be an integer >= 2, got ${values.rounds}`);

const gpu = await Gpu.create();
const shapes = [
  [1, 64, 151936, 'f32'],
  [1, 896, 151936, 'f32'],
  [1, 3584, 3584, 'f16'],
  [4, 3584, 3584, 'f16'],
] as const;
const median = (a: number[]) => [...a].sort((p, q) => p - q)[a.length >> 1];
for (const [M, K, N, wType] of shapes) {
  const x = benchTensor(gpu, [M, K], 'f32', 2, 1);
  const w = benchTensor(gpu, [N, K], wType, 0.1, 2);
  const y = gpu.tensor([M, N], 'f32');
  const ms: Record<'vec' | 'scalar', number[]> = { vec: [], scalar: [] };
  for (let r = 0; r < rounds; r++) {
    for (const kernel of r % 2 ? (['vec', 'scalar'] as const) : (['scalar', 'vec'] as const)) {
      gpu.profiling = true;
      matmul(gpu, x, w, { transB: true, out: y, path: 'gemv', gemv: kernel });
      await gpu.sync();
      const t = (await gpu.takeTimings()).filter((e) => e.op.startsWith('matmul')).reduce((s, e) => s + e.ms, 0);
      gpu.profiling = false;
      if (r > 0) ms[kernel].push(t);
    }
  }
  const [v, s] = [median(ms.vec), median(ms.scalar)];
  console.log(`${M}x${K} · [${N}, ${K}]ᵀ ${wType} W: vec ${v.toFixed(2)} ms, scalar ${s.toFixed(2)} ms, ratio ${(v / s).toFixed(3)}`);
  [x, w, y].forEach((t) => t.dispose());
}
gpu.destroy();
