import { SeededRng, f32ToF16Bits, type Gpu, type Tensor } from '@mlagent/core-kernels';
import { layerTensorNames, parseQwenConfig, type QwenConfig } from '../config.js';
import { allocFused, type FusedGroup } from '../fused-weights.js';
import { QwenModel, type QwenLayerWeights } from '../model.js';

/** config.json of a Qwen2.5-7B-shaped model (Qwen2ForCausalLM), for benchmarks with random weights. */
export const QWEN25_7B_CONFIG = {
  architectures: ['Qwen2ForCausalLM'],
  model_type: 'qwen2',
  hidden_size: 3584,
  intermediate_size: 18944,
  num_hidden_layers: 28,
  num_attention_heads: 28,
  num_key_value_heads: 4,
  vocab_size: 152064,
  max_position_embeddings: 32768,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  tie_word_embeddings: false,
  hidden_act: 'silu',
  torch_dtype: 'bfloat16',
  bos_token_id: 151643,
  eos_token_id: 151643,
};

export interface RandomModelOptions {
  dtype: 'f32' | 'f16';
  seed?: number;
  /** Elements of the random block that every matrix is tiled from (default 2^22). */
  blockElements?: number;
  onProgress?: (msg: string) => void;
}

export function qwen25_7bConfig(): QwenConfig {
  return parseQwenConfig(QWEN25_7B_CONFIG);
}

/**
 * A QwenModel with random weights made on the GPU, without a checkpoint: writing and reading 15 GB of
 * safetensors for a 7B shape would take minutes. One block of N(0, 0.02²) values is drawn on the host from the
 * seed and uploaded once; every matrix is then filled with GPU copies of it, each starting at a different offset,
 * so matrices differ but repeat with the block's period (irrelevant to speed, which is all this is for). Norm
 * weights are 1, biases N(0, 0.02²) drawn in full.
 */
export async function randomModel(gpu: Gpu, cfg: QwenConfig, opts: RandomModelOptions): Promise<QwenModel> {
  const { dtype } = opts;
  if (dtype === 'f16' && !gpu.features.shaderF16) throw new Error(`randomModel: dtype 'f16' needs the shader-f16 feature, which this adapter lacks; use 'f32'`);
  const rng = new SeededRng(opts.seed ?? 0);
  const blockN = opts.blockElements ?? 1 << 22;
  if (!Number.isInteger(blockN) || blockN < 2 || blockN % 2 !== 0) throw new Error(`randomModel: blockElements must be an even integer >= 2, got ${blockN}`);
  const normal = rng.fillNormal(new Float32Array(blockN), 0.02);
  const block = gpu.keep(gpu.tensor([blockN], dtype, dtype === 'f32' ? normal : Uint16Array.from(normal, f32ToF16Bits), 'random block'));
  const blockBytes = block.byteLength;
  const made: Tensor[] = [];
  let shift = 0;
  const matrix = (shape: [number, number], name: string): Tensor => {
    const t = gpu.keep(gpu.tensor(shape, dtype, undefined, `random ${name}`));
    made.push(t);
    return fill(t);
  };
  function fill(t: Tensor): Tensor {
    // 4-byte aligned start in the block, different for each matrix.
    let src = (shift = (shift + 4 * 9973) % blockBytes);
    const total = Math.ceil(t.byteLength / 4) * 4;
    for (let done = 0; done < total; ) {
      const n = Math.min(blockBytes - src, total - done);
      gpu.copy(block.buffer, block.byteOffset + src, t.buffer, t.byteOffset + done, n);
      done += n;
      src = 0;
    }
    return t;
  }
  const vector = (n: number, name: string, fill: 'ones' | 'normal'): Tensor => {
    const v = fill === 'ones' ? new Float32Array(n).fill(1) : rng.fillNormal(new Float32Array(n), 0.02);
    const t = gpu.keep(gpu.tensor([n], 'f32', v, `random ${name}`));
    made.push(t);
    return t;
  };
  const { hiddenSize: H, intermediateSize: I, vocabSize: V, numHeads: nh, numKvHeads: nkv, headDim: D } = cfg;
  try {
    const embed = matrix([V, H], 'model.embed_tokens.weight');
    const lmHead = cfg.tieWordEmbeddings ? embed : matrix([V, H], 'lm_head.weight');
    const norm = vector(H, 'model.norm.weight', 'ones');
    const layers: QwenLayerWeights[] = [];
    for (let l = 0; l < cfg.numLayers; l++) {
      const n = layerTensorNames(cfg, l);
      const fused = (g: FusedGroup) => {
        const f = allocFused(gpu, cfg, g, dtype, `random layer ${l} ${g}`);
        if (!f) return undefined;
        made.push(f.whole);
        f.parts.forEach(fill);
        if (f.bias) {
          made.push(f.bias.whole);
          f.bias.whole.write(rng.fillNormal(new Float32Array(f.bias.whole.size), 0.02));
        }
        return f;
      };
      const qkv = fused('qkv');
      const gateUp = fused('gateUp');
      const layer: QwenLayerWeights = {
        inputNorm: vector(H, n.inputNorm, 'ones'),
        postNorm: vector(H, n.postNorm, 'ones'),
        q: qkv?.parts[0] ?? matrix([nh * D, H], n.q),
        k: qkv?.parts[1] ?? matrix([nkv * D, H], n.k),
        v: qkv?.parts[2] ?? matrix([nkv * D, H], n.v),
        o: matrix([H, nh * D], n.o),
        gate: gateUp?.parts[0] ?? matrix([I, H], n.gate),
        up: gateUp?.parts[1] ?? matrix([I, H], n.up),
        down: matrix([H, I], n.down),
        qkv: qkv?.whole,
        qkvBias: qkv?.bias?.whole,
        gateUp: gateUp?.whole,
      };
      if (cfg.attentionBias) {
        layer.qBias = qkv?.bias?.parts[0] ?? vector(nh * D, n.qBias!, 'normal');
        layer.kBias = qkv?.bias?.parts[1] ?? vector(nkv * D, n.kBias!, 'normal');
        layer.vBias = qkv?.bias?.parts[2] ?? vector(nkv * D, n.vBias!, 'normal');
      }
      if (cfg.qkNorm) {
        layer.qNorm = vector(D, n.qNorm!, 'ones');
        layer.kNorm = vector(D, n.kNorm!, 'ones');
      }
      layers.push(layer);
      await gpu.sync();
      if ((l + 1) % 4 === 0 || l + 1 === cfg.numLayers) opts.onProgress?.(`random weights: ${l + 1}/${cfg.numLayers} layers`);
    }
    return QwenModel.fromWeights(gpu, cfg, { embed, lmHead, norm, layers }, dtype);
  } catch (e) {
    for (const t of made) t.dispose();
    throw e;
  } finally {
    block.dispose();
  }
}
