import {
  add,
  attention,
  attentionBackward,
  embedding,
  rmsnorm,
  rmsnormBackward,
  rope,
  ropeBackward,
  swiglu,
  swigluBackward,
  type Gpu,
  type Tensor,
} from '@mlagent/core-kernels';
import type { QwenModel } from '../model.js';
import type { LoraAdapter } from '../lora/adapter.js';
import type { LoraModule } from '../lora/config.js';
import { LORA_MODULES } from '../lora/config.js';
import { linearBackward, linearForward, type LoraPath } from '../lora/linear.js';
import type { PaddedBatch } from './batch.js';

export interface TrunkOptions {
  /** LoRA adapter to apply; absent: the frozen base (e.g. the reference policy). */
  adapter?: LoraAdapter;
  /** Keep only each layer's input and recompute the layer in backward (less memory, one more layer forward). */
  checkpoint?: boolean;
  /** Whether backward will be called: without it nothing is saved and dropout is off. Default true. */
  grad?: boolean;
  /** Seed of this pass's LoRA dropout masks; default: the adapter's next (0, 1, 2, ... per training pass). */
  dropoutSeed?: number;
}

/** What one decoder layer's backward needs. Every tensor here owns its buffer. */
interface LayerTape {
  x: Tensor;
  rstd1: Tensor;
  /** LoRA h = dropout(x)·Aᵀ per adapted module. */
  lh: Partial<Record<LoraModule, Tensor>>;
  qPre?: Tensor;
  kPre?: Tensor;
  rstdQ?: Tensor;
  rstdK?: Tensor;
  qr: Tensor;
  kr: Tensor;
  v: Tensor;
  o: Tensor;
  lse: Tensor;
  h1: Tensor;
  x2: Tensor;
  rstd2: Tensor;
  gate: Tensor;
  up: Tensor;
  s: Tensor;
  out: Tensor;
}

/** Mixes a pass seed with (layer, module) into one u32 dropout seed. */
function dropoutSeed(seed: number, layer: number, m: LoraModule): number {
  let x = (seed ^ Math.imul(layer + 1, 0x9e3779b1) ^ Math.imul(LORA_MODULES.indexOf(m) + 1, 0x85ebca6b)) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x7feb352d) >>> 0;
  return (x ^ (x >>> 15)) >>> 0;
}

/**
 * The decoder stack of a QwenModel over a padded batch, with what backward needs saved (or, with checkpointing,
 * only each layer's input), ending in the final-norm hidden state `hn` [B·T, H]. Heads (LM head, value head) sit
 * on `hn`; their backward hands dL/dhn to `backward`, which adds the adapter's gradients into its grad tensors.
 */
export class TrunkPass {
  readonly gpu: Gpu;
  /** Final-norm hidden state [B·T, H]. */
  readonly hn: Tensor;
  private readonly lengths: Tensor<'i32'>;
  private readonly inputs: Tensor[] = [];
  private readonly tapes: (LayerTape | undefined)[] = [];
  private hLast: Tensor;
  private rstdFinal: Tensor;
  private readonly grad: boolean;
  private readonly checkpoint: boolean;
  private readonly seed: number;
  private done = false;

  constructor(
    readonly model: QwenModel,
    readonly batch: PaddedBatch,
    private readonly opts: TrunkOptions = {},
  ) {
    if (model.isDisposed) throw new Error('TrunkPass: model was disposed');
    if (opts.adapter) {
      opts.adapter.assertLive('forward');
      if (opts.adapter.model !== model) throw new Error('TrunkPass: the adapter was made for a different model');
    }
    this.gpu = model.gpu;
    this.grad = opts.grad ?? true;
    this.checkpoint = opts.checkpoint ?? false;
    this.seed = opts.dropoutSeed ?? (this.grad && opts.adapter ? opts.adapter.nextDropoutSeed() : 0);
    const gpu = this.gpu;
    const { B, T } = batch;
    const H = model.config.hiddenSize;
    this.lengths = gpu.keep(gpu.tensor([B], 'i32', batch.lengths, 'trunk lengths'));
    let h: Tensor = gpu.keep(embedding(gpu, batch.ids, model.weights.embed));
    if (h.shape.join() !== [B * T, H].join()) throw new Error(`TrunkPass: embedding gave ${h}, expected [${B * T}, ${H}]`);
    for (let l = 0; l < model.weights.layers.length; l++) {
      const input = h;
      if (this.grad && this.checkpoint) {
        h = gpu.keep(gpu.scope(() => this.layerForward(l, input).out));
        this.inputs.push(input);
      } else {
        const tape = gpu.scope(() => this.layerForward(l, input));
        for (const t of tensorsOf(tape)) gpu.keep(t);
        h = tape.out;
        if (this.grad) {
          this.inputs.push(input);
          this.tapes.push(tape);
        } else {
          disposeTape(tape, h);
          input.dispose();
        }
      }
    }
    this.hLast = h;
    const n = rmsnorm(gpu, h, model.weights.norm, { eps: model.config.rmsNormEps });
    this.hn = gpu.keep(n.y);
    this.rstdFinal = gpu.keep(n.rstd);
  }

  private path(layer: number, m: LoraModule): LoraPath | undefined {
    const a = this.opts.adapter;
    const slot = a?.slot(layer, m);
    if (!a || !slot) return undefined;
    const dropout = this.grad ? a.config.dropout : 0;
    return { slot, scale: a.scale, dropout, seed: dropoutSeed(this.seed, layer, m) };
  }

  /** One decoder layer on h [B·T, H]; runs inside a scope, returns the tape (owners only). */
  private layerForward(l: number, h: Tensor): LayerTape {
    const gpu = this.gpu;
    const L = this.model.weights.layers[l];
    const { numHeads: nh, numKvHeads: nkv, headDim: D, rmsNormEps: eps, ropeTheta: theta, ropeScaling: scaling } = this.model.config;
    const { B, T } = this.batch;
    const lh: LayerTape['lh'] = {};
    const lin = (m: LoraModule, x: Tensor, W: Tensor, bias?: Tensor): Tensor => {
      const r = linearForward(gpu, x, W, bias, this.path(l, m), undefined, this.model.packedWeight(W, x.size / W.shape[1]));
      if (r.h) lh[m] = r.h;
      return r.y;
    };
    const n1 = rmsnorm(gpu, h, L.inputNorm, { eps });
    const x = n1.y;
    let q = lin('q_proj', x, L.q, L.qBias);
    let k = lin('k_proj', x, L.k, L.kBias);
    const v = lin('v_proj', x, L.v, L.vBias);
    let qPre: Tensor | undefined, kPre: Tensor | undefined, rstdQ: Tensor | undefined, rstdK: Tensor | undefined;
    if (L.qNorm && L.kNorm) {
      [qPre, kPre] = [q, k];
      const nq = rmsnorm(gpu, q.reshape([B * T, nh, D]), L.qNorm, { eps });
      const nk = rmsnorm(gpu, k.reshape([B * T, nkv, D]), L.kNorm, { eps });
      [q, k, rstdQ, rstdK] = [nq.y, nk.y, nq.rstd, nk.rstd];
    }
    const qr = rope(gpu, q.reshape([B, T, nh, D]), { theta, scaling });
    const kr = rope(gpu, k.reshape([B, T, nkv, D]), { theta, scaling });
    const att = attention(gpu, qr as Tensor<'f32'>, kr as Tensor<'f32'>, v.reshape([B, T, nkv, D]) as Tensor<'f32'>, {
      causal: true,
      lengths: this.lengths,
    });
    const h1 = add(gpu, h, lin('o_proj', att.o.reshape([B * T, nh * D]), L.o));
    const n2 = rmsnorm(gpu, h1, L.postNorm, { eps });
    const gate = lin('gate_proj', n2.y, L.gate);
    const up = lin('up_proj', n2.y, L.up);
    const s = swiglu(gpu, gate, up);
    const out = add(gpu, h1, lin('down_proj', s, L.down));
    return { x, rstd1: n1.rstd, lh, qPre, kPre, rstdQ, rstdK, qr, kr, v, o: att.o, lse: att.lse, h1, x2: n2.y, rstd2: n2.rstd, gate, up, s, out };
  }

  /** dL/dh of layer l's input from dL/d(its output); records inside the caller's scope. */
  private layerBackward(l: number, h: Tensor, tp: LayerTape, dOut: Tensor): Tensor {
    const gpu = this.gpu;
    const L = this.model.weights.layers[l];
    const { numHeads: nh, numKvHeads: nkv, headDim: D, ropeTheta: theta, ropeScaling: scaling } = this.model.config;
    const { B, T } = this.batch;
    const back = (m: LoraModule, x: Tensor, W: Tensor, dy: Tensor) => linearBackward(gpu, x, W, dy, this.path(l, m), tp.lh[m]);
    const ds = back('down_proj', tp.s, L.down, dOut);
    const { dgate, dup } = swigluBackward(gpu, ds, tp.gate, tp.up);
    const dx2 = add(gpu, back('gate_proj', tp.x2, L.gate, dgate), back('up_proj', tp.x2, L.up, dup!));
    const dh1 = add(gpu, dOut, rmsnormBackward(gpu, dx2, tp.h1, L.postNorm, tp.rstd2 as Tensor<'f32'>, { dw: false }).dx);
    const dAtt = back('o_proj', tp.o.reshape([B * T, nh * D]), L.o, dh1);
    const g = attentionBackward(
      gpu,
      tp.qr as Tensor<'f32'>,
      tp.kr as Tensor<'f32'>,
      tp.v.reshape([B, T, nkv, D]) as Tensor<'f32'>,
      tp.o as Tensor<'f32'>,
      tp.lse as Tensor<'f32'>,
      dAtt.reshape([B, T, nh, D]) as Tensor<'f32'>,
      { causal: true, lengths: this.lengths },
    );
    let dq = ropeBackward(gpu, g.dq, { theta, scaling }).reshape([B * T, nh, D]);
    let dk = ropeBackward(gpu, g.dk, { theta, scaling }).reshape([B * T, nkv, D]);
    if (L.qNorm && L.kNorm) {
      dq = rmsnormBackward(gpu, dq, tp.qPre!.reshape([B * T, nh, D]), L.qNorm, tp.rstdQ as Tensor<'f32'>, { dw: false }).dx;
      dk = rmsnormBackward(gpu, dk, tp.kPre!.reshape([B * T, nkv, D]), L.kNorm, tp.rstdK as Tensor<'f32'>, { dw: false }).dx;
    }
    const dxq = back('q_proj', tp.x, L.q, dq.reshape([B * T, nh * D]));
    const dxk = back('k_proj', tp.x, L.k, dk.reshape([B * T, nkv * D]));
    const dxv = back('v_proj', tp.x, L.v, g.dv.reshape([B * T, nkv * D]));
    const dx = add(gpu, add(gpu, dxq, dxk), dxv);
    return add(gpu, dh1, rmsnormBackward(gpu, dx, h, L.inputNorm, tp.rstd1 as Tensor<'f32'>, { dw: false }).dx);
  }

  /**
   * Backward from dL/dhn [B·T, H] (f32): adds every adapted module's dA/dB into the adapter's gradients. Frees
   * what the pass saved; a pass supports one backward.
   */
  backward(dhn: Tensor): void {
    if (!this.grad) throw new Error('TrunkPass.backward: the forward ran with grad: false');
    if (this.done) throw new Error('TrunkPass.backward: already called (or disposed); run a new forward');
    if (this.opts.adapter) this.opts.adapter.assertLive('backward');
    const gpu = this.gpu;
    let dh = gpu.keep(
      gpu.scope(() => rmsnormBackward(gpu, dhn, this.hLast, this.model.weights.norm, this.rstdFinal as Tensor<'f32'>, { dw: false }).dx),
    );
    for (let l = this.model.weights.layers.length - 1; l >= 0; l--) {
      const input = this.inputs[l];
      const upstream = dh;
      dh = gpu.keep(
        gpu.scope(() => {
          const tape = this.checkpoint ? this.layerForward(l, input) : this.tapes[l]!;
          return this.layerBackward(l, input, tape, upstream);
        }),
      );
      upstream.dispose();
      // Layer l's saved state is spent: free it as we go, so peak memory falls during backward.
      const tape = this.tapes[l];
      if (tape) disposeTape(tape);
      this.tapes[l] = undefined;
    }
    dh.dispose();
    this.dispose();
  }

  /**
   * Runs a head's backward (`dhn()` records, in a scope, and returns dL/dhn [B·T, H]), then `backward`. The pass is
   * freed even when either throws.
   */
  backwardFrom(dhn: () => Tensor): void {
    try {
      const g = this.gpu.keep(this.gpu.scope(dhn));
      try {
        this.backward(g);
      } finally {
        g.dispose();
      }
    } finally {
      this.dispose();
    }
  }

  /** Frees everything the pass holds (hn included). Idempotent. */
  dispose(): void {
    if (this.done) return;
    this.done = true;
    // A layer's output is also the next layer's input (or hLast): Tensor.dispose is idempotent.
    for (const t of this.tapes) if (t) disposeTape(t);
    for (const t of this.inputs) t.dispose();
    for (const t of [this.hLast, this.rstdFinal, this.hn, this.lengths]) t.dispose();
  }
}

function tensorsOf(tape: LayerTape): Tensor[] {
  const out: Tensor[] = [];
  for (const v of Object.values(tape)) {
    if (!v) continue;
    if ('dispose' in v) out.push(v as Tensor);
    else out.push(...(Object.values(v) as Tensor[]));
  }
  return out;
}

/** Disposes a tape's tensors, except `keep` (the layer's output, when it goes on as the next input). */
function disposeTape(tape: LayerTape, keep?: Tensor): void {
  for (const t of tensorsOf(tape)) if (t !== keep) t.dispose();
}
