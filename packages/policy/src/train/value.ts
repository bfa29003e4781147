import { SeededRng, matmul, matmulBackward, type Tensor } from '@mlagent/core-kernels';
import type { QwenModel } from '../model.js';
import { LoraAdapter } from '../lora/adapter.js';
import type { LoraConfig } from '../lora/config.js';
import { accumulate } from '../lora/linear.js';
import { padBatch, type PaddedBatch } from './batch.js';
import { TrunkPass, type TrunkOptions } from './trunk.js';

/**
 * The PPO critic: v = w·hn + b per token, on the final-norm hidden state of the same frozen base run with the
 * critic's own LoRA adapter (no second copy of the base). w [1, H] and b [1] are f32 and trainable.
 */
export class ValueHead {
  readonly gradWeight: Tensor<'f32'>;
  readonly gradBias: Tensor<'f32'>;
  private disposed = false;

  constructor(
    readonly adapter: LoraAdapter,
    readonly weight: Tensor<'f32'>,
    readonly bias: Tensor<'f32'>,
  ) {
    const gpu = adapter.model.gpu;
    const H = adapter.model.config.hiddenSize;
    if (weight.shape.join() !== [1, H].join() || bias.size !== 1) {
      throw new Error(`ValueHead: weight must be [1, ${H}] and bias [1], got ${weight} and ${bias}`);
    }
    this.gradWeight = gpu.keep(gpu.zeros([1, H], 'f32', 'value head gradWeight'));
    this.gradBias = gpu.keep(gpu.zeros([1], 'f32', 'value head gradBias'));
  }

  /** A new critic: a fresh adapter (PEFT init, seeded) and w ~ U(−1/√H, 1/√H), b = 0, as torch's Linear(H, 1). */
  static create(model: QwenModel, lora: LoraConfig, opts: { seed?: number } = {}): ValueHead {
    const seed = opts.seed ?? 0;
    const adapter = LoraAdapter.create(model, lora, { seed });
    const H = model.config.hiddenSize;
    const rng = new SeededRng(seed + 0x5eed);
    const w = Float32Array.from({ length: H }, () => (2 * rng.uniform() - 1) / Math.sqrt(H));
    const gpu = model.gpu;
    return new ValueHead(adapter, gpu.keep(gpu.tensor([1, H], 'f32', w, 'value head weight')), gpu.keep(gpu.zeros([1], 'f32', 'value head bias')));
  }

  /** Adapter params then [w, b]; `grads()` matches one to one. */
  params(): Tensor<'f32'>[] {
    return [...this.adapter.params(), this.weight, this.bias];
  }

  grads(): Tensor<'f32'>[] {
    return [...this.adapter.grads(), this.gradWeight, this.gradBias];
  }

  zeroGrad(): void {
    this.adapter.zeroGrad();
    this.adapter.model.gpu.clear(this.gradWeight);
    this.adapter.model.gpu.clear(this.gradBias);
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.adapter.dispose();
    for (const t of [this.weight, this.bias, this.gradWeight, this.gradBias]) t.dispose();
  }
}

/** A forward pass of the critic: values per token, and backward from per-token coefficients. */
export class ValuePass {
  private disposed = false;
  private why = 'the pass was disposed or already backpropagated';

  constructor(
    private readonly head: ValueHead,
    private readonly trunk: TrunkPass,
    private readonly batch: PaddedBatch,
    /** values[b][t] = the critic's value at token t of sequence b (every position, 0 included). */
    readonly values: Float32Array[],
  ) {}

  /** Backward of L = Σ dValue[b][t]·values[b][t]: adds gradients into the head's and its adapter's grads. Frees the pass. */
  backward(dValue: readonly ArrayLike<number>[]): void {
    if (this.disposed) throw new Error(`ValuePass.backward: ${this.why}`);
    const b = this.batch;
    if (!Array.isArray(dValue) || dValue.length !== b.B) throw new Error(`ValuePass.backward: dValue needs one array per sequence (${b.B})`);
    const rows = new Float32Array(b.B * b.T);
    dValue.forEach((d, i) => {
      if (!d || d.length !== b.lengths[i]) throw new Error(`ValuePass.backward: dValue[${i}] has ${d?.length} values; sequence ${i} has ${b.lengths[i]} tokens`);
      for (let t = 0; t < d.length; t++) {
        if (!Number.isFinite(d[t])) throw new Error(`ValuePass.backward: dValue[${i}][${t}] is ${d[t]}, not a finite number`);
        rows[i * b.T + t] = d[t];
      }
    });
    const gpu = this.trunk.gpu;
    try {
      this.trunk.backwardFrom(() => {
        const dv = gpu.tensor([b.B * b.T, 1], 'f32', rows, 'ValuePass.backward');
        const g = matmulBackward(gpu, this.trunk.hn, this.head.weight, dv, { transB: true, needBias: true });
        accumulate(gpu, this.head.gradWeight, g.dB!);
        accumulate(gpu, this.head.gradBias, g.dBias!);
        return g.dA!;
      });
    } finally {
      this.dispose();
    }
  }

  /** Frees what the pass keeps for backward; `why` becomes the error of a later backward call. */
  dispose(why?: string): void {
    if (why) this.why = why;
    if (this.disposed) return;
    this.disposed = true;
    this.trunk.dispose();
  }
}

/** Runs the critic over `seqs` (variable lengths) and reads back the value of every token. */
export async function valueForward(
  model: QwenModel,
  head: ValueHead,
  seqs: readonly (readonly number[])[],
  opts: Omit<TrunkOptions, 'adapter'> = {},
): Promise<ValuePass> {
  if (head.isDisposed) throw new Error('valueForward: the value head was disposed');
  if (head.adapter.model !== model) throw new Error('valueForward: the value head was made for a different model');
  const batch = padBatch('valueForward', model.config, seqs);
  const gpu = model.gpu;
  const trunk = new TrunkPass(model, batch, { ...opts, adapter: head.adapter });
  let pass: ValuePass | undefined;
  try {
    const v = gpu.keep(matmul(gpu, trunk.hn, head.weight, { transB: true, bias: head.bias }));
    let host: Float32Array;
    try {
      host = (await v.read()) as Float32Array;
    } finally {
      v.dispose();
    }
    const values = batch.lengths.map((n, b) => host.slice(b * batch.T, b * batch.T + n));
    pass = new ValuePass(head, trunk, batch, values);
    return pass;
  } finally {
    if (!pass) trunk.dispose();
    else if (opts.grad === false) pass.dispose('the forward ran with grad: false');
  }
}
