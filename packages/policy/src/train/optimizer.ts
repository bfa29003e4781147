import { existsSync } from 'node:fs';
import { AdamW, type Gpu, type Tensor } from '@mlagent/core-kernels';
import { SafetensorsFile, writeSafetensors } from '../safetensors.js';

/** Anything with trainable f32 tensors and matching gradients: a LoraAdapter, a ValueHead. */
export interface Trainable {
  params(): Tensor<'f32'>[];
  grads(): Tensor<'f32'>[];
  zeroGrad(): void;
}

export interface TrainOptimizerOptions {
  /** Peak learning rate; the schedule scales from it. */
  lr: number;
  betas?: [number, number];
  eps?: number;
  /** Decoupled weight decay (default 0, as PEFT/TRL LoRA training usually runs). */
  weightDecay?: number;
  /** Clip the global gradient norm (over all params of all groups) to this; 0 or absent: off. */
  maxGradNorm?: number;
  /** Learning rate of 0-based step i (e.g. `(i) => cosineLr(i, {...})`); default constant `lr`. */
  schedule?: (step: number) => number;
}

/**
 * AdamW over the trainable tensors of one or more adapters/heads (f32 params, f32 m/v state), with global
 * grad-norm clipping, non-finite steps skipped, a learning-rate schedule, and state save/load for resuming.
 * Usage: backward over micro-batches (gradients accumulate), then `await opt.step()`, which also zeroes the grads.
 */
export class TrainOptimizer {
  private readonly adamw: AdamW;
  private readonly params: Tensor<'f32'>[];

  constructor(
    readonly gpu: Gpu,
    readonly groups: readonly Trainable[],
    private readonly opts: TrainOptimizerOptions,
  ) {
    if (groups.length === 0) throw new Error('TrainOptimizer: needs at least one adapter or head to train');
    if (!(opts.lr > 0)) throw new Error(`TrainOptimizer: lr must be > 0, got ${opts.lr}`);
    this.params = groups.flatMap((g) => g.params());
    this.adamw = new AdamW(gpu, this.params, {
      lr: opts.lr,
      betas: opts.betas,
      eps: opts.eps,
      weightDecay: opts.weightDecay ?? 0,
      maxGradNorm: opts.maxGradNorm ?? 0,
      skipNonFinite: true,
    });
  }

  /** Optimizer steps taken so far. */
  get stepCount(): number {
    return this.adamw.stepCount;
  }

  /** The rate the next step will use. */
  get nextLr(): number {
    return this.opts.schedule ? this.opts.schedule(this.adamw.stepCount) : this.opts.lr;
  }

  /**
   * One AdamW step from the accumulated gradients, then zeroes them. Reads back the global gradient norm (before
   * clipping) and whether the step was skipped for a non-finite norm.
   */
  async step(): Promise<{ lr: number; gradNorm: number; skipped: boolean }> {
    const lr = this.nextLr;
    if (!(lr >= 0) || !Number.isFinite(lr)) throw new Error(`TrainOptimizer: schedule gave lr ${lr} at step ${this.stepCount}`);
    const grads = this.groups.flatMap((g) => g.grads());
    const norm = this.adamw.step(grads, lr);
    for (const g of this.groups) g.zeroGrad();
    const [n] = await norm.read();
    const { last } = await this.adamw.skipped();
    return { lr, gradNorm: n, skipped: last };
  }

  /** Writes step, m and v to a safetensors file (atomically: written to a temporary name, then renamed). */
  async save(path: string): Promise<void> {
    const s = await this.adamw.state();
    const tensors: Parameters<typeof writeSafetensors>[1] = {};
    this.params.forEach((p, i) => {
      tensors[`m.${i}`] = { dtype: 'F32', shape: [...p.shape], data: s.m[i] };
      tensors[`v.${i}`] = { dtype: 'F32', shape: [...p.shape], data: s.v[i] };
    });
    writeSafetensors(path, tensors, { format: 'mlagent-adamw', step: String(s.step), params: String(this.params.length) });
  }

  /** Restores what `save` wrote; the parameter list (adapters, targets, ranks, order) must be the same. */
  load(path: string): void {
    if (!existsSync(path)) throw new Error(`TrainOptimizer.load: ${path} not found`);
    const f = SafetensorsFile.open(path);
    try {
      const meta = f.metadata;
      if (meta.format !== 'mlagent-adamw') throw new Error(`TrainOptimizer.load: ${path} is not an optimizer state (format ${meta.format})`);
      const step = Number(meta.step);
      if (!Number.isInteger(step) || step < 0) throw new Error(`TrainOptimizer.load: ${path} has a bad step '${meta.step}'`);
      if (Number(meta.params) !== this.params.length) {
        throw new Error(`TrainOptimizer.load: ${path} holds state for ${meta.params} params, this optimizer has ${this.params.length}`);
      }
      const read = (name: string, p: Tensor): Float32Array => {
        const info = f.tensors.get(name);
        if (!info) throw new Error(`TrainOptimizer.load: ${path} lacks tensor ${name}`);
        if (info.dtype !== 'F32' || info.shape.join() !== p.shape.join()) {
          throw new Error(`TrainOptimizer.load: ${path} tensor ${name} is ${info.dtype}[${info.shape}], expected F32[${p.shape}]`);
        }
        const bytes = f.read(name);
        return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
      };
      this.adamw.loadState({ step, m: this.params.map((p, i) => read(`m.${i}`, p)), v: this.params.map((p, i) => read(`v.${i}`, p)) });
    } finally {
      f.close();
    }
  }

  dispose(): void {
    this.adamw.dispose();
  }
}
