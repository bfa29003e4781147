// A next-character model trained with core-kernels' ops alone: each op's forward and its backward side by side,
// AdamW on the GPU, nothing else. Outside this repository, import from '@mlagent/core-kernels' instead.
//
//   x = E[c_t]                      embedding              E  [V, H]   trained
//   h = rmsnorm(x) · g              RMSNorm                g  [H]      trained
//   u = h · W1ᵀ                     gate and up, fused     W1 [2I, H]  trained (gate rows, then up rows)
//   s = silu(u_gate) · u_up         SwiGLU
//   r = x + s · W2ᵀ                 down projection, residual   W2 [H, I]   trained
//   loss = mean −log softmax(r · Wₒᵀ)[c_{t+1}]    fused LM head    Wₒ [V, H]   frozen (the head gives dr only)
//
// Run: npx tsx packages/core-kernels/examples/char-mlp.ts [steps]
import { pathToFileURL } from 'node:url';
import {
  AdamW,
  Gpu,
  SeededRng,
  add,
  cosineLr,
  embedding,
  embeddingBackward,
  headBackward,
  headForward,
  matmul,
  matmulBackward,
  rmsnorm,
  rmsnormBackward,
  swiglu,
  swigluBackward,
  type Tensor,
} from '../src/index.js';

export interface CharMlpSizes {
  vocab: number;
  hidden: number;
  inner: number;
}

/** The parameters as host arrays (row-major), for a CPU reference or a checkpoint. */
export interface CharMlpWeights {
  embed: Float32Array;
  norm: Float32Array;
  w1: Float32Array;
  w2: Float32Array;
  head: Float32Array;
}

export function initCharMlp({ vocab: V, hidden: H, inner: I }: CharMlpSizes, seed = 0): CharMlpWeights {
  const rng = new SeededRng(seed);
  return {
    embed: rng.randn(V * H),
    norm: new Float32Array(H).fill(1),
    w1: rng.randn(2 * I * H, 1 / Math.sqrt(H)),
    w2: rng.randn(H * I, 1 / Math.sqrt(I)),
    head: rng.randn(V * H, 1 / Math.sqrt(H)),
  };
}

export class CharMlp {
  readonly embed: Tensor<'f32'>;
  readonly norm: Tensor<'f32'>;
  readonly w1: Tensor<'f32'>;
  readonly w2: Tensor<'f32'>;
  readonly head: Tensor<'f32'>;

  constructor(
    readonly gpu: Gpu,
    readonly sizes: CharMlpSizes,
    w: CharMlpWeights,
  ) {
    const { vocab: V, hidden: H, inner: I } = sizes;
    this.embed = gpu.tensor([V, H], 'f32', w.embed);
    this.norm = gpu.tensor([H], 'f32', w.norm);
    this.w1 = gpu.tensor([2 * I, H], 'f32', w.w1);
    this.w2 = gpu.tensor([H, I], 'f32', w.w2);
    this.head = gpu.tensor([V, H], 'f32', w.head);
  }

  /** The trained parameters, in the order lossAndGrads returns their gradients. */
  get params(): Tensor<'f32'>[] {
    return [this.embed, this.norm, this.w1, this.w2];
  }

  /**
   * The mean loss of predicting `targets[t]` from `ids[t]`, and the gradients of the trained parameters. Only
   * recorded: reading the loss submits the work. Every activation is disposed when the scope ends.
   */
  lossAndGrads(ids: Int32Array, targets: Int32Array): { loss: Tensor<'f32'>; grads: Tensor<'f32'>[] } {
    const { gpu } = this;
    return gpu.scope(() => {
      const tgt = gpu.tensor([targets.length], 'i32', targets);
      const x = embedding(gpu, ids, this.embed);
      const { y: h, rstd } = rmsnorm(gpu, x, this.norm);
      const u = matmul(gpu, h, this.w1, { transB: true });
      const s = swiglu(gpu, u);
      const r = add(gpu, x, matmul(gpu, s, this.w2, { transB: true }));
      const out = headForward(gpu, r, this.head, tgt);

      // Backward, in reverse. The residual hands dr unchanged to x and to the down projection (addBackward).
      const dr = headBackward(gpu, r, this.head, tgt, out, { dLoss: 1 });
      const { dA: ds, dB: dw2 } = matmulBackward(gpu, s, this.w2, dr, { transB: true });
      const { dgate: du } = swigluBackward(gpu, ds!, u);
      const { dA: dh, dB: dw1 } = matmulBackward(gpu, h, this.w1, du, { transB: true });
      const { dx: dxNorm, dw: dnorm } = rmsnormBackward(gpu, dh!, x, this.norm, rstd);
      const dx = add(gpu, dr, dxNorm as Tensor<'f32'>);
      const dembed = embeddingBackward(gpu, ids, dx, this.sizes.vocab);
      return { loss: out.loss, grads: [dembed, dnorm!, dw1 as Tensor<'f32'>, dw2 as Tensor<'f32'>] };
    });
  }

  dispose(): void {
    for (const t of [...this.params, this.head]) t.dispose();
  }
}

/** The characters of `text` as ids into its sorted alphabet. */
export function encodeChars(text: string): { ids: Int32Array; alphabet: string[] } {
  const alphabet = [...new Set(text)].sort();
  const index = new Map(alphabet.map((c, i) => [c, i]));
  return { ids: Int32Array.from([...text], (c) => index.get(c)!), alphabet };
}

export interface TrainOptions {
  steps: number;
  batch: number;
  lr: number;
  seed?: number;
  onStep?: (step: number, loss: number) => void;
}

/** Trains on random windows of `ids` with AdamW (cosine schedule, clipping at 1); returns each step's loss. */
export async function trainCharMlp(model: CharMlp, ids: Int32Array, opts: TrainOptions): Promise<number[]> {
  const rng = new SeededRng(opts.seed ?? 1);
  const optimizer = new AdamW(model.gpu, model.params, { lr: opts.lr, weightDecay: 0.01, maxGradNorm: 1, decay: [true, false, true, true] });
  const losses: number[] = [];
  try {
    for (let step = 0; step < opts.steps; step++) {
      const start = rng.int(0, ids.length - opts.batch - 1);
      const { loss, grads } = model.lossAndGrads(ids.subarray(start, start + opts.batch), ids.subarray(start + 1, start + opts.batch + 1));
      optimizer.step(grads, cosineLr(step, { lr: opts.lr, warmupSteps: 5, totalSteps: opts.steps, minLrRatio: 0.1 }));
      losses.push((await loss.read())[0]);
      loss.dispose();
      for (const g of grads) g.dispose();
      opts.onStep?.(step, losses[step]);
    }
  } finally {
    optimizer.dispose();
  }
  return losses;
}

const TEXT = `the quick brown fox jumps over the lazy dog. a stitch in time saves nine. the early bird catches the worm. `;

async function main(): Promise<void> {
  const steps = Number(process.argv[2] ?? 200);
  const gpu = await Gpu.create();
  try {
    const { ids, alphabet } = encodeChars(TEXT.repeat(8));
    const model = new CharMlp(gpu, { vocab: alphabet.length, hidden: 32, inner: 64 }, initCharMlp({ vocab: alphabet.length, hidden: 32, inner: 64 }));
    const losses = await trainCharMlp(model, ids, {
      steps,
      batch: 64,
      lr: 1e-2,
      onStep: (s, l) => {
        if (s % 20 === 0 || s === steps - 1) console.log(`step ${s}: loss ${l.toFixed(3)}`);
      },
    });
    console.log(`loss ${losses[0].toFixed(3)} -> ${losses.at(-1)!.toFixed(3)} (uniform guess: ${Math.log(alphabet.length).toFixed(3)}) on ${gpu.adapter.description || gpu.adapter.device}`);
    model.dispose();
  } finally {
    gpu.destroy();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main();
