import { headBackward, headForward, type HeadOptions } from '../kernels/head.js';
import type { Tensor } from '../runtime/tensor.js';
import type { BenchCase } from './types.js';
import { benchTensor, benchValues } from './data.js';
import { checkHeadBackward, checkHeadForward } from './check-head.js';

function torchSetup(T: number, H: number, V: number, half: boolean, grad: boolean): string {
  const wd = half ? 'dt' : 'torch.float32';
  return [
    `h=(torch.randn(${T},${H},device=dev)).to(${wd})${grad ? '.requires_grad_()' : ''}`,
    `w=(torch.randn(${V},${H},device=dev)*0.05).to(${wd})`,
    `y=torch.randint(0,${V},(${T},),device=dev)`,
    `a=torch.randn(${T},device=dev); b=torch.randn(${T},device=dev)`,
  ].join('; ');
}

const TORCH_FWD = 'lp=torch.log_softmax((h@w.t()).float(),-1); lpy=lp.gather(1,y[:,None])[:,0]; ent=-(lp.exp()*lp).sum(-1)';
// Torch's backward needs its forward graph, so its timing covers both; ours recomputes the logits likewise.
const TORCH_BWD =
  'lp=torch.log_softmax((h@w.t()).float(),-1); lpy=lp.gather(1,y[:,None])[:,0]; ent=-(lp.exp()*lp).sum(-1); h.grad=None; (a*lpy+b*ent).sum().backward()';

function headCase(
  T: number,
  H: number,
  V: number,
  wdtype: 'f16' | 'f32',
  pass: 'fwd' | 'bwd',
  size: 'cpu' | 'gpu',
  kernel?: HeadOptions['kernel'],
): BenchCase {
  const wBytes = wdtype === 'f16' ? 2 : 4;
  // Backward recomputes the logits (one matmul) and forms dh (another).
  const matmuls = pass === 'fwd' ? 1 : 2;
  return {
    family: 'head',
    name: `head ${pass} ${wdtype} weight T=${T} H=${H} V=${V}${kernel ? ` (${kernel} path)` : ''}`,
    flops: 2 * matmuls * T * H * V,
    bytes: matmuls * V * H * wBytes + T * H * 4 * (pass === 'fwd' ? 1 : 2) + T * 4 * 4,
    size,
    needs: wdtype === 'f16' ? ['shader-f16'] : undefined,
    prepare(gpu) {
      const h = gpu.tensor([T, H], 'f32', benchValues(T * H, 2, 1));
      const w = benchTensor(gpu, [V, H], wdtype, 0.1, 7, 'bench head weight');
      const y = gpu.tensor([T], 'i32', Int32Array.from({ length: T }, (_, i) => (i * 7919) % V));
      const a = gpu.tensor([T], 'f32', benchValues(T, 2, 3));
      const b = gpu.tensor([T], 'f32', benchValues(T, 2, 4));
      const saved = headForward(gpu, h, w, y);
      const dh = gpu.tensor([T, H], 'f32');
      let out: Tensor[] = [];
      return {
        run: () => {
          if (pass === 'bwd') {
            headBackward(gpu, h, w, y, saved, { dLogprob: a, dEntropy: b }, { out: dh, kernel });
            return;
          }
          out.forEach((t) => t.dispose());
          const r = headForward(gpu, h, w, y, { kernel });
          out = [r.logprob, r.entropy, r.lse, r.loss, r.count];
        },
        dispose: () => [h, w, y, a, b, dh, saved.logprob, saved.entropy, saved.lse, saved.loss, saved.count, ...out].forEach((t) => t.dispose()),
        check: async () => {
          const x = { h, w, y, T, H, V };
          if (pass === 'bwd') {
            headBackward(gpu, h, w, y, saved, { dLogprob: a, dEntropy: b }, { out: dh, kernel });
            return checkHeadBackward(x, a, b, dh);
          }
          const r = headForward(gpu, h, w, y, { kernel });
          try {
            return await checkHeadForward(x, r);
          } finally {
            [r.logprob, r.entropy, r.lse, r.loss, r.count].forEach((t) => t.dispose());
          }
        },
      };
    },
    torch: { setup: torchSetup(T, H, V, wdtype === 'f16', pass === 'bwd'), run: pass === 'fwd' ? TORCH_FWD : TORCH_BWD },
  };
}

/** Benchmarks for the fused LM head (matmul, log-softmax, logprob of targets, entropy) at Qwen2.5-7B's head. */
export const headBenches: BenchCase[] = [
  headCase(16, 512, 32768, 'f32', 'fwd', 'cpu'),
  headCase(16, 512, 32768, 'f32', 'bwd', 'cpu'),
  // The tiny policy's head: Qwen's full vocabulary over hidden 64 (on a CPU adapter auto is the head-cpu.ts path).
  headCase(16, 64, 151936, 'f32', 'fwd', 'cpu'),
  headCase(16, 64, 151936, 'f32', 'bwd', 'cpu'),
  headCase(16, 64, 151936, 'f32', 'fwd', 'cpu', 'tiled'),
  headCase(16, 64, 151936, 'f32', 'bwd', 'cpu', 'tiled'),
  headCase(512, 3584, 152064, 'f16', 'fwd', 'gpu'),
  headCase(512, 3584, 152064, 'f16', 'bwd', 'gpu'),
];
