import { add, loraDropout, loraLinearBackward, matmul, type Gpu, type PackedMatmulB, type Tensor } from '@mlagent/core-kernels';
import type { LoraSlot } from './adapter.js';

/** The LoRA path of one linear layer in one pass. */
export interface LoraPath {
  slot: LoraSlot;
  /** alpha / r. */
  scale: number;
  /** Dropout on the path's input (0 at inference). */
  dropout: number;
  /** Dropout seed of this layer in this pass; backward recomputes the same mask from it. */
  seed: number;
}

/**
 * y = x·Wᵀ (+ bias) (+ scale·(dropout(x)·Aᵀ)·Bᵀ) for x [T, in], as loraLinear computes it, but returning y as the
 * owning tensor [T, out] (not a reshaped view), so training can keep it across scopes. Also returns h = dropout(x)·Aᵀ,
 * which backward needs. With `accumulate` (a [T, out] f32 tensor), y is added into it and y is that tensor: a
 * residual add folded into the product's epilogue. `packedW` is W packed for the CPU matmul (QwenModel.packedWeight).
 */
export function linearForward(
  gpu: Gpu,
  x: Tensor,
  W: Tensor,
  bias: Tensor | undefined,
  lora?: LoraPath,
  accumulate?: Tensor,
  packedW?: PackedMatmulB,
): { y: Tensor; h?: Tensor } {
  const y = matmul(gpu, x, W, { transB: true, bias, packedB: packedW, ...(accumulate ? { out: accumulate, beta: 1 } : {}) });
  if (!lora) return { y };
  const xd = lora.dropout > 0 ? loraDropout(gpu, x, lora.dropout, lora.seed) : x;
  const h = matmul(gpu, xd, lora.slot.A, { transB: true });
  if (xd !== x) xd.dispose();
  matmul(gpu, h, lora.slot.B, { transB: true, alpha: lora.scale, beta: 1, out: y });
  return { y, h };
}

/**
 * dx [T, in] for upstream dy [T, out]; with a LoRA path, also adds dA and dB into the slot's gradients.
 * The frozen W and bias get no gradient.
 */
export function linearBackward(gpu: Gpu, x: Tensor, W: Tensor, dy: Tensor, lora?: LoraPath, h?: Tensor): Tensor {
  if (!lora) return matmul(gpu, dy, W);
  if (!h) throw new Error('linearBackward: a LoRA path needs the forward h');
  const { slot } = lora;
  const g = loraLinearBackward(gpu, x, W, slot.A, slot.B, h, dy, { alpha: lora.scale * slot.A.shape[0], dropout: lora.dropout, seed: lora.seed });
  accumulate(gpu, slot.gradA, g.dA);
  accumulate(gpu, slot.gradB, g.dB);
  return g.dx;
}

/** grad += d (a storage buffer cannot be both read and written in one add dispatch, hence the copy). */
export function accumulate(gpu: Gpu, grad: Tensor, d: Tensor): void {
  const sum = add(gpu, grad, d);
  gpu.copyTensor(sum, grad);
  sum.dispose();
  d.dispose();
}
