import { add } from '../kernels/add.js';
import type { BenchCase } from './types.js';
import { benchTensor } from './data.js';
import { checkAdd } from './check-ops.js';

function addCase(n: number, size: 'cpu' | 'gpu'): BenchCase {
  return {
    family: 'elementwise',
    name: `add f32 n=${n}`,
    bytes: 3 * 4 * n,
    size,
    prepare(gpu) {
      const a = benchTensor(gpu, [n], 'f32', 2, 24);
      const b = benchTensor(gpu, [n], 'f32', 2, 25);
      const y = gpu.tensor([n], 'f32');
      const run = () => void add(gpu, a, b, y);
      return { run, dispose: () => [a, b, y].forEach((t) => t.dispose()), check: () => (run(), checkAdd(a, b, y)) };
    },
    torch: { setup: `a=torch.randn(${n},device=dev); b=torch.randn(${n},device=dev); y=torch.empty(${n},device=dev)`, run: 'torch.add(a,b,out=y)' },
  };
}

export const elementwiseBenches: BenchCase[] = [addCase(512 * 3584, 'cpu'), addCase(4096 * 3584, 'gpu')];
