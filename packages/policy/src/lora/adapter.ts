import { SeededRng, type Tensor } from '@mlagent/core-kernels';
import type { QwenModel } from '../model.js';
import { LORA_MODULES, LoraError, checkLoraConfig, moduleShape, peftTensorName, type LoraConfig, type LoraModule } from './config.js';

/** One adapted linear layer: trainable A [r, in] and B [out, r] with their gradients (all f32). */
export interface LoraSlot {
  layer: number;
  module: LoraModule;
  A: Tensor<'f32'>;
  B: Tensor<'f32'>;
  gradA: Tensor<'f32'>;
  gradB: Tensor<'f32'>;
}

export interface LoraCreateOptions {
  /** Seed of A's initialisation (default 0). */
  seed?: number;
}

/**
 * A LoRA adapter on a QwenModel's frozen base: for every decoder layer and target module, y = x·Wᵀ (+ b) +
 * (alpha/r)·(dropout(x)·Aᵀ)·Bᵀ. The base weights are shared, never copied: an adapter is only its A/B tensors,
 * so a policy adapter, a value adapter and the bare base (the reference policy) all run on one model.
 * Gradients accumulate into `gradA`/`gradB` across backward calls until `zeroGrad()`.
 */
export class LoraAdapter {
  readonly config: Required<LoraConfig>;
  /** Per decoder layer, the slots of the target modules. */
  readonly layers: ReadonlyMap<LoraModule, LoraSlot>[];
  private disposed = false;
  private passes = 0;

  private constructor(
    readonly model: QwenModel,
    config: Required<LoraConfig>,
    layers: Map<LoraModule, LoraSlot>[],
  ) {
    this.config = config;
    this.layers = layers;
  }

  /**
   * A new adapter initialised as PEFT does: A ~ U(−1/√in, 1/√in) (kaiming-uniform with a = √5), B = 0, so the
   * adapted model starts equal to the base.
   */
  static create(model: QwenModel, config: LoraConfig, opts: LoraCreateOptions = {}): LoraAdapter {
    const cfg = checkLoraConfig(config);
    const rng = new SeededRng(opts.seed ?? 0);
    return LoraAdapter.build(model, cfg, (_l, m) => {
      const [, inF] = moduleShape(model.config, m);
      const bound = 1 / Math.sqrt(inF);
      const A = new Float32Array(cfg.r * inF);
      for (let i = 0; i < A.length; i++) A[i] = (2 * rng.uniform() - 1) * bound;
      return { A, B: undefined };
    });
  }

  /**
   * An adapter from given values (e.g. a loaded PEFT file): `values(layer, module)` returns A [r·in] and B
   * [out·r] row-major, or undefined for B to start at zero.
   */
  static build(
    model: QwenModel,
    config: LoraConfig,
    values: (layer: number, m: LoraModule) => { A: Float32Array; B: Float32Array | undefined },
  ): LoraAdapter {
    if (model.isDisposed) throw new LoraError('LoraAdapter: model was disposed');
    const cfg = checkLoraConfig(config);
    const gpu = model.gpu;
    const made: Tensor[] = [];
    const keep = <T extends Tensor>(t: T): T => {
      made.push(gpu.keep(t));
      return t;
    };
    try {
      const layers = model.weights.layers.map((_, l) => {
        const slots = new Map<LoraModule, LoraSlot>();
        for (const m of cfg.targetModules) {
          const [outF, inF] = moduleShape(model.config, m);
          const v = values(l, m);
          if (v.A.length !== cfg.r * inF) throw new LoraError(`layer ${l} ${m}: A has ${v.A.length} values, expected r·in = ${cfg.r}·${inF}`);
          if (v.B && v.B.length !== outF * cfg.r) throw new LoraError(`layer ${l} ${m}: B has ${v.B.length} values, expected out·r = ${outF}·${cfg.r}`);
          slots.set(m, {
            layer: l,
            module: m,
            A: keep(gpu.tensor([cfg.r, inF], 'f32', v.A, `lora ${l}.${m}.A`)),
            B: keep(v.B ? gpu.tensor([outF, cfg.r], 'f32', v.B, `lora ${l}.${m}.B`) : gpu.zeros([outF, cfg.r], 'f32', `lora ${l}.${m}.B`)),
            gradA: keep(gpu.zeros([cfg.r, inF], 'f32', `lora ${l}.${m}.gradA`)),
            gradB: keep(gpu.zeros([outF, cfg.r], 'f32', `lora ${l}.${m}.gradB`)),
          });
        }
        return slots;
      });
      return new LoraAdapter(model, cfg, layers);
    } catch (e) {
      for (const t of made) t.dispose();
      throw e;
    }
  }

  /** A fresh dropout seed per training pass (0, 1, 2, ...), used when a pass names none. */
  nextDropoutSeed(): number {
    return this.passes++;
  }

  /** alpha / r, the scale of the low-rank path. */
  get scale(): number {
    return this.config.alpha / this.config.r;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /** The slot of (layer, module), or undefined when that module is not adapted. */
  slot(layer: number, m: LoraModule): LoraSlot | undefined {
    this.assertLive('slot');
    return this.layers[layer]?.get(m);
  }

  /** Every slot, layer by layer, modules in LORA_MODULES order. */
  slots(): LoraSlot[] {
    return this.layers.flatMap((s) => LORA_MODULES.filter((m) => s.has(m)).map((m) => s.get(m)!));
  }

  /** Trainable tensors [A, B, A, B, ...] in `slots()` order; `grads()` matches it one to one. */
  params(): Tensor<'f32'>[] {
    return this.slots().flatMap((s) => [s.A, s.B]);
  }

  grads(): Tensor<'f32'>[] {
    return this.slots().flatMap((s) => [s.gradA, s.gradB]);
  }

  /** PEFT names of `params()`, in the same order. */
  paramNames(): string[] {
    return this.slots().flatMap((s) => [peftTensorName(s.layer, s.module, 'A'), peftTensorName(s.layer, s.module, 'B')]);
  }

  /** Number of trainable values. */
  get numParams(): number {
    return this.params().reduce((n, t) => n + t.size, 0);
  }

  zeroGrad(): void {
    this.assertLive('zeroGrad');
    for (const g of this.grads()) this.model.gpu.clear(g);
  }

  assertLive(op: string): void {
    if (this.disposed) throw new LoraError(`LoraAdapter.${op}: adapter was disposed`);
    if (this.model.isDisposed) throw new LoraError(`LoraAdapter.${op}: its model was disposed`);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const s of this.slots()) for (const t of [s.A, s.B, s.gradA, s.gradB]) t.dispose();
  }
}
