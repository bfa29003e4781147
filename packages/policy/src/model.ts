import {
  attention,
  convertCheckpointData,
  embedding,
  matmul,
  packMatmulB,
  rmsnorm,
  ropeQK,
  selectMatmulPath,
  swiglu,
  type CheckpointDType,
  type Gpu,
  type PackedMatmulB,
  type Tensor,
} from '@mlagent/core-kernels';
import { expectedShapes, layerTensorNames, loadQwenConfig, type QwenConfig } from './config.js';
import { FUSED_GROUPS, allocFused, groupOf, groupRows, partViews, type FusedGroup } from './fused-weights.js';
import { Checkpoint, CheckpointError, type SafetensorsDType } from './safetensors.js';
import type { LoraAdapter } from './lora/adapter.js';
import { MODULE_WEIGHT, type LoraModule } from './lora/config.js';
import { linearForward } from './lora/linear.js';

export interface QwenLoadOptions {
  /** dtype of the matrices on the GPU (default f32). Norm weights and biases are always f32. */
  dtype?: 'f32' | 'f16';
  /** Sets `QwenModel.packWeights` (default false). */
  packWeights?: boolean;
}

/** The GPU tensors of one decoder layer. */
export interface QwenLayerWeights {
  inputNorm: Tensor;
  postNorm: Tensor;
  q: Tensor;
  k: Tensor;
  v: Tensor;
  o: Tensor;
  gate: Tensor;
  up: Tensor;
  down: Tensor;
  qBias?: Tensor;
  kBias?: Tensor;
  vBias?: Tensor;
  /**
   * q_proj, k_proj and v_proj as one [(Hq + 2·Hkv)·D, H] matrix (and their biases as one vector); `q`, `k`, `v`
   * and the biases are then row views of them (see fused-weights.ts). A single token's q/k/v take one matmul.
   */
  qkv?: Tensor;
  qkvBias?: Tensor;
  /** gate_proj and up_proj as one [2I, H] matrix, gate's rows first; `gate` and `up` are then views of it. */
  gateUp?: Tensor;
  qNorm?: Tensor;
  kNorm?: Tensor;
}

export interface QwenWeights {
  embed: Tensor;
  /** The same tensor as `embed` when the embeddings are tied. */
  lmHead: Tensor;
  norm: Tensor;
  layers: QwenLayerWeights[];
}

const LOADABLE: ReadonlySet<SafetensorsDType> = new Set(['F32', 'F16', 'BF16']);


const fmt = (shape: readonly number[]) => `[${shape.join(', ')}]`;

/**
 * Most bytes of LM-head logits a training pass keeps for its backward (policyForward's keepLogits, on lavapipe's
 * fused head kernels, which then skip recomputing them), in one buffer per model reused by every pass.
 */
export const KEEP_LOGITS_MAX_BYTES = 48 * 2 ** 20;

/** Rows of the kept-logits buffer for a pass of `rows`: the next power of two (at least 64), within the cap. */
export function keptLogitsRows(rows: number, vocab: number): number {
  const cap = Math.floor(KEEP_LOGITS_MAX_BYTES / (4 * vocab));
  return Math.min(cap, 2 ** Math.ceil(Math.log2(Math.max(64, rows))));
}

/** Layer weights made by `mergedAdapterLayers`: the adapter is already in them, so `linear` adds no LoRA path. */
const mergedLayers = new WeakSet<QwenLayerWeights>();

/** Decoder layers with an adapter folded in (QwenModel.mergedAdapterLayers). */
export interface MergedLayers {
  layers: QwenLayerWeights[];
  /** Bytes of the merged weight copies. */
  bytes: number;
  dispose(): void;
}

/**
 * Checks every tensor of the checkpoint against the config before anything is uploaded: all problems (missing,
 * unexpected, wrong shape, unsupported dtype) are reported together, each naming the tensor.
 */
function validateCheckpoint(ck: Checkpoint, cfg: QwenConfig, dir: string): void {
  // A num_hidden_layers beyond the stored layers would build (and report) millions of expected tensors; the
  // checkpoint's own layer indices bound it first.
  let stored = -1;
  for (const name of ck.names()) {
    const m = /^model\.layers\.(\d+)\./.exec(name);
    if (m) stored = Math.max(stored, Number(m[1]));
  }
  if (cfg.numLayers > stored + 1) {
    const has = stored < 0 ? 'no model.layers.N tensors' : `layers 0..${stored}`;
    throw new CheckpointError(`${dir}: config.json says num_hidden_layers ${cfg.numLayers} but the checkpoint has ${has}`);
  }
  const expected = expectedShapes(cfg);
  const problems: string[] = [];
  for (const [name, shape] of expected) {
    if (!ck.has(name)) {
      let hint = '';
      if (name === 'lm_head.weight' && ck.has('model.embed_tokens.weight')) {
        hint = '; the checkpoint looks tied (embed_tokens and no lm_head): set "tie_word_embeddings": true in config.json';
      }
      problems.push(`missing tensor '${name}' (expected shape ${fmt(shape)})${hint}`);
      continue;
    }
    const info = ck.info(name);
    if (info.shape.join() !== shape.join()) {
      problems.push(`tensor '${name}' has shape ${fmt(info.shape)}, expected ${fmt(shape)}`);
    }
    if (!LOADABLE.has(info.dtype)) problems.push(`tensor '${name}' has dtype ${info.dtype}; only F32, F16 and BF16 load`);
  }
  for (const name of ck.names()) {
    if (expected.has(name)) continue;
    // Some tied checkpoints still store lm_head.weight (a copy of embed_tokens); it is not used.
    if (name === 'lm_head.weight' && cfg.tieWordEmbeddings) {
      const s = ck.info(name).shape;
      if (s.join() !== [cfg.vocabSize, cfg.hiddenSize].join()) {
        problems.push(`tensor '${name}' has shape ${fmt(s)}, expected ${fmt([cfg.vocabSize, cfg.hiddenSize])}`);
      }
      continue;
    }
    problems.push(`unexpected tensor '${name}' ${fmt(ck.info(name).shape)} (not part of a ${cfg.arch} model with this config)`);
  }
  if (problems.length > 0) {
    const shown = problems.slice(0, 20).join('\n  ');
    const more = problems.length > 20 ? `\n  ... and ${problems.length - 20} more` : '';
    throw new CheckpointError(`${dir}: checkpoint does not match config.json (${cfg.arch}):\n  ${shown}${more}`);
  }
}

/**
 * Qwen2 / Qwen3 causal LM on the GPU: weights loaded tensor by tensor from a Hugging Face checkpoint, forward
 * pass built from core-kernels ops; KV-cache generation is in generate.ts, LoRA training in train/.
 */
export class QwenModel {
  private disposed = false;
  /**
   * LoRA adapter applied by `forward`, `layer` and so `generate` (no dropout); null runs the bare base. Training
   * passes its adapter per call instead (see `policyForward`).
   */
  adapter: LoraAdapter | null = null;
  /**
   * On a CPU adapter (lavapipe), keep each frozen matrix packed for the cpu-tiled matmul once it is first multiplied
   * there (packMatmulB), instead of packing it again in every product: 28% of a small model's LoRA step went to
   * packing (docs/BENCHMARKS.md). Costs about each packed matrix's size in f32 (`packedWeightBytes`). For work
   * that multiplies the same weights many times (training); a no-op on GPUs. The base weights are never written,
   * so the packs stay current; merged-adapter copies are not packed.
   */
  packWeights = false;
  /** The buffer training passes keep the head's logits in (borrowLogitsScratch), and whether a pass holds it. */
  private logitsScratch?: { t: Tensor; busy: boolean; dropped: boolean };
  /** Packs made so far, by matrix (null: the matmul does not pack this one). */
  private readonly packs = new Map<Tensor, PackedMatmulB | null>();
  private baseMatrices?: Set<Tensor>;

  private constructor(
    readonly gpu: Gpu,
    readonly config: QwenConfig,
    readonly weights: QwenWeights,
    readonly dtype: 'f32' | 'f16',
  ) {}

  /**
   * A model over weights already on the GPU (e.g. drawn there for the 7B-shaped benchmarks); it owns them from
   * now on (`dispose` frees them). The caller guarantees the shapes match `config` (see `expectedShapes`).
   */
  static fromWeights(gpu: Gpu, config: QwenConfig, weights: QwenWeights, dtype: 'f32' | 'f16'): QwenModel {
    return new QwenModel(gpu, config, weights, dtype);
  }

  /**
   * Loads config.json and the safetensors weights of `dir`. Every tensor is checked against the config first;
   * then each is read, converted (F32/F16/BF16 to `dtype`; norms and biases to f32) and uploaded one at a time,
   * so the host holds one tensor at a time.
   */
  static async load(gpu: Gpu, dir: string, opts: QwenLoadOptions = {}): Promise<QwenModel> {
    const dtype = opts.dtype ?? 'f32';
    if (dtype !== 'f32' && dtype !== 'f16') throw new Error(`QwenModel.load: dtype must be 'f32' or 'f16', got ${String(dtype)}`);
    if (dtype === 'f16' && !gpu.features.shaderF16) {
      throw new Error(`QwenModel.load: dtype 'f16' needs the shader-f16 feature, which this adapter lacks; use 'f32'`);
    }
    const cfg = loadQwenConfig(dir);
    const ck = Checkpoint.open(dir);
    const loaded: Tensor[] = [];
    try {
      validateCheckpoint(ck, cfg, dir);
      const read = (name: string, to: 'f32' | 'f16') => convertCheckpointData(ck.read(name), ck.info(name).dtype.toLowerCase() as CheckpointDType, to);
      const upload = (name: string, matrix: boolean): Tensor => {
        const to = matrix ? dtype : 'f32';
        const t = gpu.keep(gpu.tensor(ck.info(name).shape, to, read(name, to), `load ${name}`));
        loaded.push(t);
        return t;
      };
      const embed = upload('model.embed_tokens.weight', true);
      const norm = upload('model.norm.weight', false);
      const lmHead = cfg.tieWordEmbeddings ? embed : upload('lm_head.weight', true);
      const layers: QwenLayerWeights[] = [];
      for (let l = 0; l < cfg.numLayers; l++) {
        const n = layerTensorNames(cfg, l);
        // Each part of a fused group is written straight into its rows of the whole.
        const fused = (g: FusedGroup) => {
          const f = allocFused(gpu, cfg, g, dtype, `load layer ${l} ${g}`);
          if (!f) return undefined;
          loaded.push(f.whole, ...(f.bias ? [f.bias.whole] : []));
          FUSED_GROUPS[g].forEach((part, i) => f.parts[i].write(read(n[part], dtype)));
          if (f.bias) (['qBias', 'kBias', 'vBias'] as const).forEach((b, i) => f.bias!.parts[i].write(read(n[b]!, 'f32')));
          return f;
        };
        const qkv = fused('qkv');
        const gateUp = fused('gateUp');
        const layer: QwenLayerWeights = {
          inputNorm: upload(n.inputNorm, false),
          postNorm: upload(n.postNorm, false),
          q: qkv?.parts[0] ?? upload(n.q, true),
          k: qkv?.parts[1] ?? upload(n.k, true),
          v: qkv?.parts[2] ?? upload(n.v, true),
          o: upload(n.o, true),
          gate: gateUp?.parts[0] ?? upload(n.gate, true),
          up: gateUp?.parts[1] ?? upload(n.up, true),
          down: upload(n.down, true),
          qkv: qkv?.whole,
          qkvBias: qkv?.bias?.whole,
          gateUp: gateUp?.whole,
        };
        if (cfg.attentionBias) {
          layer.qBias = qkv?.bias?.parts[0] ?? upload(n.qBias!, false);
          layer.kBias = qkv?.bias?.parts[1] ?? upload(n.kBias!, false);
          layer.vBias = qkv?.bias?.parts[2] ?? upload(n.vBias!, false);
        }
        if (cfg.qkNorm) {
          layer.qNorm = upload(n.qNorm!, false);
          layer.kNorm = upload(n.kNorm!, false);
        }
        layers.push(layer);
        // Upload this layer before reading the next, so staging memory stays bounded.
        await gpu.sync();
      }
      await gpu.sync();
      const model = new QwenModel(gpu, cfg, { embed, lmHead, norm, layers }, dtype);
      model.packWeights = opts.packWeights ?? false;
      return model;
    } catch (e) {
      for (const t of loaded) t.dispose();
      throw e;
    } finally {
      ck.close();
    }
  }

  /**
   * Logits f32 [B, T, V] for B sequences of equal length T (positions 0..T-1, causal attention). The result is
   * recorded, not yet read: `await logits.read()` submits and waits. The caller disposes it.
   */
  forward(ids: readonly (readonly number[])[]): Tensor<'f32'> {
    if (this.disposed) throw new Error('QwenModel.forward: model was disposed');
    const cfg = this.config;
    const B = ids.length;
    const T = B > 0 ? ids[0].length : 0;
    if (B === 0 || T === 0) throw new Error(`QwenModel.forward: needs at least one non-empty sequence, got B=${B} T=${T}`);
    for (let b = 0; b < B; b++) {
      if (ids[b].length !== T) {
        throw new Error(`QwenModel.forward: sequences must have equal lengths for now; sequence ${b} has ${ids[b].length}, sequence 0 has ${T}`);
      }
    }
    const flat = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const id = ids[b][t];
        if (!Number.isInteger(id) || id < 0 || id >= cfg.vocabSize) {
          throw new Error(`QwenModel.forward: token id ${id} at [${b}, ${t}] is outside the vocabulary [0, ${cfg.vocabSize})`);
        }
        flat[b * T + t] = id;
      }
    }
    const gpu = this.gpu;
    return gpu.scope(() => {
      let h: Tensor = embedding(gpu, flat, this.weights.embed).reshape([B, T, cfg.hiddenSize]);
      for (const L of this.weights.layers) {
        h = this.layer(L, h, {}, (q, k, v) => attention(gpu, q, k, v, { causal: true }).o);
      }
      return this.head(h);
    });
  }

  /**
   * One decoder layer on h [B, T, H] (returns the new residual stream, same shape). `rotary` is passed to RoPE
   * (e.g. per-sequence positions); `attend(q, k, v)` gets the rotated q [B, T, Hq, D] and k, v [B, T, Hkv, D]
   * (f32) and returns o [B, T, Hq, D]: full causal attention for `forward`, cache writes plus cached attention
   * for generation. Records into the caller's scope; intermediates are freed by an inner scope.
   */
  layer(
    L: QwenLayerWeights,
    h: Tensor,
    rotary: { positions?: Tensor },
    attend: (q: Tensor<'f32'>, k: Tensor<'f32'>, v: Tensor<'f32'>) => Tensor,
  ): Tensor {
    if (this.disposed) throw new Error('QwenModel.layer: model was disposed');
    const gpu = this.gpu;
    const { numHeads: nh, numKvHeads: nkv, headDim: D, rmsNormEps: eps, ropeTheta: theta, ropeScaling: scaling } = this.config;
    const [B, T] = h.shape;
    return gpu.scope(() => {
      const x = rmsnorm(gpu, h, L.inputNorm, { eps }).y;
      let q: Tensor, k: Tensor, v: Tensor;
      if (L.qkv && B * T === 1 && !this.adapts(L, 'q_proj') && !this.adapts(L, 'k_proj') && !this.adapts(L, 'v_proj')) {
        // One token: its q, k and v are consecutive slices of the fused output.
        const [yq, yk, yv] = partViews(this.linear(L, 'qkv', x, L.qkv, L.qkvBias).reshape([(nh + 2 * nkv) * D]), groupRows(this.config, 'qkv'));
        [q, k, v] = [yq.reshape([B, T, nh, D]), yk.reshape([B, T, nkv, D]), yv.reshape([B, T, nkv, D])];
      } else {
        q = this.linear(L, 'q_proj', x, L.q, L.qBias).reshape([B, T, nh, D]);
        k = this.linear(L, 'k_proj', x, L.k, L.kBias).reshape([B, T, nkv, D]);
        v = this.linear(L, 'v_proj', x, L.v, L.vBias).reshape([B, T, nkv, D]);
      }
      if (L.qNorm && L.kNorm) {
        q = rmsnorm(gpu, q, L.qNorm, { eps }).y;
        k = rmsnorm(gpu, k, L.kNorm, { eps }).y;
      }
      ropeQK(gpu, q, k, { theta, scaling, positions: rotary.positions });
      const a = attend(q as Tensor<'f32'>, k as Tensor<'f32'>, v as Tensor<'f32'>).reshape([B, T, nh * D]);
      // Both residual adds are folded into other ops (two dispatches a layer fewer, same f32 results): h1 = h + o
      // comes out of the post-attention norm, and the MLP's output is accumulated into h1, a temporary of this scope.
      const post = rmsnorm(gpu, h, L.postNorm, { eps, residual: this.linear(L, 'o_proj', a, L.o) });
      const h1 = post.sum!;
      const act =
        L.gateUp && !this.adapts(L, 'gate_proj') && !this.adapts(L, 'up_proj')
          ? swiglu(gpu, this.linear(L, 'gateUp', post.y, L.gateUp))
          : swiglu(gpu, this.linear(L, 'gate_proj', post.y, L.gate), this.linear(L, 'up_proj', post.y, L.up));
      this.linear(L, 'down_proj', act, L.down, undefined, h1);
      // h1 itself, not the view linear returns: the scope keeps only the tensors returned.
      return h1;
    });
  }

  /**
   * x [..., in] through a frozen linear layer, plus the active adapter's update when it adapts this module; with
   * `accumulate` (x's leading shape by out), the result is added into it and returned as it.
   */
  private linear(L: QwenLayerWeights, m: LoraModule | FusedGroup, x: Tensor, W: Tensor, bias?: Tensor, accumulate?: Tensor): Tensor {
    const [outF, inF] = W.shape;
    const slot = m === 'qkv' || m === 'gateUp' ? undefined : this.adapts(L, m);
    const lora = slot && { slot, scale: this.adapter!.scale, dropout: 0, seed: 0 };
    const rows = x.size / inF;
    const acc = accumulate?.reshape([rows, outF]);
    return linearForward(this.gpu, x.reshape([rows, inF]), W, bias, lora, acc, this.packedWeight(W, rows)).y.reshape([...x.shape.slice(0, -1), outF]);
  }

  /**
   * W [out, in], one of this model's own matrices, packed for x·Wᵀ on the cpu-tiled matmul (made on first use), or
   * undefined: `packWeights` off, a GPU, another tensor (a merged copy), or `rows` of x that the cpu-tiled kernel
   * would not take (decoding's GEMV).
   */
  packedWeight(W: Tensor, rows?: number): PackedMatmulB | undefined {
    if (!this.packWeights || this.disposed) return undefined;
    if (!this.baseMatrices) {
      const w = this.weights;
      this.baseMatrices = new Set([w.lmHead, ...w.layers.flatMap((L) => [L.q, L.k, L.v, L.o, L.gate, L.up, L.down, L.qkv, L.gateUp])].filter((t): t is Tensor => !!t));
    }
    if (!this.baseMatrices.has(W)) return undefined;
    const [outF, inF] = W.shape;
    if (rows !== undefined && selectMatmulPath(this.gpu, 'f32', W.dtype, rows, outF, inF, { transB: true }) !== 'cpu-tiled') return undefined;
    let packed = this.packs.get(W);
    if (packed === undefined) {
      packed = packMatmulB(this.gpu, W, { transB: true }) ?? null;
      this.packs.set(W, packed);
    }
    return packed ?? undefined;
  }

  /** GPU bytes of the packs `packWeights` has made. */
  get packedWeightBytes(): number {
    let bytes = 0;
    for (const p of this.packs.values()) bytes += p?.byteLength ?? 0;
    return bytes;
  }

  /**
   * For policyForward: a view [rows, V] f32 of one buffer, reused from pass to pass (grown to the next power of two
   * of rows, at most KEEP_LOGITS_MAX_BYTES), for a training pass to keep its head logits in until its backward;
   * `release()` gives it back. Undefined where rows·V·4 exceeds that or another pass holds it.
   */
  borrowLogitsScratch(rows: number): { logits: Tensor<'f32'>; release(): void } | undefined {
    const V = this.config.vocabSize;
    const capacity = keptLogitsRows(rows, V);
    if (this.disposed || rows < 1 || rows * V * 4 > KEEP_LOGITS_MAX_BYTES || this.logitsScratch?.busy) return undefined;
    if (this.logitsScratch && this.logitsScratch.t.shape[0] < rows) this.dropLogitsScratch();
    const s = (this.logitsScratch ??= { t: this.gpu.keep(this.gpu.tensor([capacity, V], 'f32', undefined, 'kept head logits')), busy: false, dropped: false });
    s.busy = true;
    let released = false;
    return {
      logits: s.t.rows(0, rows) as Tensor<'f32'>,
      release: () => {
        if (released) return;
        released = true;
        s.busy = false;
        if (s.dropped) s.t.dispose();
      },
    };
  }

  /** Frees the buffer borrowLogitsScratch lends (once its pass is done, if one holds it). */
  dropLogitsScratch(): void {
    const s = this.logitsScratch;
    if (!s) return;
    this.logitsScratch = undefined;
    s.dropped = true;
    if (!s.busy) s.t.dispose();
  }

  /** Frees the packs (later products make them again while `packWeights` is on). */
  dropPackedWeights(): void {
    for (const p of this.packs.values()) p?.dispose();
    this.packs.clear();
  }

  /** The active adapter's slot for module `m` of layer L, unless L has the adapter merged in already. */
  private adapts(L: QwenLayerWeights, m: LoraModule) {
    if (this.adapter && this.adapter.model !== this) throw new Error('QwenModel: model.adapter was made for a different model');
    return mergedLayers.has(L) ? undefined : this.adapter?.slot(this.weights.layers.indexOf(L), m);
  }

  /**
   * Bytes `mergedAdapterLayers` would copy for the active adapter (f32 copies of every adapted weight), or 0 without
   * one.
   */
  mergedAdapterBytes(): number {
    if (!this.adapter) return 0;
    const fusedCopied = new Set<string>();
    let bytes = 0;
    for (const s of this.adapter.slots()) {
      const L = this.weights.layers[s.layer];
      const field = MODULE_WEIGHT[s.module];
      const g = groupOf(field);
      const whole = g && L[g];
      if (!whole) bytes += 4 * L[field].size;
      else if (!fusedCopied.has(`${s.layer} ${g}`)) {
        fusedCopied.add(`${s.layer} ${g}`);
        bytes += 4 * whole.size;
      }
    }
    return bytes;
  }

  /**
   * The decoder layers of an f32 model with the active adapter folded into copies of its weights, W + scale·B·A,
   * for sampling many tokens through one adapter: each adapted linear is then one matmul instead of three, which is
   * most of a decode step's dispatches on a small model. Unadapted tensors are shared. The copies do not follow later
   * changes to the adapter; the caller disposes them. Undefined without an adapter. Pass the layers to `layer()`.
   */
  mergedAdapterLayers(): MergedLayers | undefined {
    if (this.disposed) throw new Error('QwenModel.mergedAdapterLayers: model was disposed');
    const adapter = this.adapter;
    if (!adapter) return undefined;
    if (adapter.model !== this) throw new Error('QwenModel: model.adapter was made for a different model');
    // f16 weights would need a widening copy, and W + δ rounded back to f16 loses most of a small δ.
    if (this.weights.layers.some((L) => L.q.dtype !== 'f32')) throw new Error('QwenModel.mergedAdapterLayers: needs f32 weights (this model holds f16 ones)');
    const gpu = this.gpu;
    const layers = this.weights.layers.map((L) => ({ ...L }));
    const copies: Tensor[] = [];
    const copyOf = (src: Tensor): Tensor => {
      const w = gpu.keep(gpu.tensor(src.shape, 'f32', undefined, 'merged adapter weight'));
      copies.push(w);
      gpu.copyTensor(src, w);
      return w;
    };
    try {
      for (const slot of adapter.slots()) {
        const field = MODULE_WEIGHT[slot.module];
        const base = this.weights.layers[slot.layer];
        const merged = layers[slot.layer];
        const g = groupOf(field);
        let w: Tensor;
        if (g && base[g]) {
          // One copy of the fused matrix per layer and group, so the merged layer keeps its single matmul.
          if (merged[g] === base[g]) {
            const whole = copyOf(base[g]);
            merged[g] = whole;
            const parts = partViews(whole, groupRows(this.config, g));
            FUSED_GROUPS[g].forEach((part, i) => (merged[part] = parts[i]));
          }
          w = merged[field];
        } else {
          w = copyOf(base[field]);
          merged[field] = w;
        }
        // w += scale · B [out, r] · A [r, in]
        matmul(gpu, slot.B, slot.A, { alpha: adapter.scale, beta: 1, out: w });
      }
    } catch (e) {
      copies.forEach((t) => t.dispose());
      throw e;
    }
    for (const L of layers) mergedLayers.add(L);
    return { layers, bytes: copies.reduce((n, t) => n + t.byteLength, 0), dispose: () => copies.forEach((t) => t.dispose()) };
  }

  /** Final norm and LM head: hidden states [..., H] to f32 logits [..., V]. */
  head(h: Tensor): Tensor<'f32'> {
    if (this.disposed) throw new Error('QwenModel.head: model was disposed');
    const gpu = this.gpu;
    const { hiddenSize: H, vocabSize: V } = this.config;
    return gpu.scope(() => {
      const rows = h.size / H;
      const hn = rmsnorm(gpu, h, this.weights.norm, { eps: this.config.rmsNormEps }).y.reshape([rows, H]);
      // Allocated in its final shape and written through a 2-D view: a reshape() view returned from the scope
      // would not own its buffer.
      const out = gpu.tensor([...h.shape.slice(0, -1), V], 'f32', undefined, 'lmHead');
      matmul(gpu, hn, this.weights.lmHead, { transB: true, out: out.reshape([rows, V]), packedB: this.packedWeight(this.weights.lmHead, rows) });
      return out;
    });
  }

  /** Whether `dispose()` was called. */
  get isDisposed(): boolean {
    return this.disposed;
  }

  /** Frees every weight on the GPU. The model cannot be used afterwards. */
  dispose(): void {
    if (this.disposed) return;
    this.dropPackedWeights();
    this.dropLogitsScratch();
    this.disposed = true;
    const seen = new Set<Tensor>();
    const free = (t: Tensor | undefined) => {
      if (t && !seen.has(t)) {
        seen.add(t);
        t.dispose();
      }
    };
    free(this.weights.embed);
    free(this.weights.lmHead);
    free(this.weights.norm);
    for (const L of this.weights.layers) for (const t of Object.values(L) as Tensor[]) free(t);
  }
}
