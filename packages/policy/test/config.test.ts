import { describe, expect, it } from 'vitest';
import { expectedShapes, parseQwenConfig } from '../src/index.js';

// The published Qwen2.5-7B-Instruct config.json fields that matter.
const qwen25_7b = {
  architectures: ['Qwen2ForCausalLM'],
  hidden_size: 3584,
  intermediate_size: 18944,
  num_attention_heads: 28,
  num_hidden_layers: 28,
  num_key_value_heads: 4,
  max_position_embeddings: 32768,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  tie_word_embeddings: false,
  torch_dtype: 'bfloat16',
  vocab_size: 152064,
};

describe('Qwen config', () => {
  it('reads Qwen2.5-7B: GQA 28/4, head_dim 128, q/k/v bias, untied head', () => {
    const c = parseQwenConfig(qwen25_7b);
    expect(c).toMatchObject({ arch: 'qwen2', headDim: 128, numKvHeads: 4, attentionBias: true, qkNorm: false, tieWordEmbeddings: false });
    const shapes = expectedShapes(c);
    expect(shapes.get('model.layers.0.self_attn.k_proj.weight')).toEqual([512, 3584]);
    expect(shapes.get('model.layers.27.self_attn.v_proj.bias')).toEqual([512]);
    expect(shapes.get('lm_head.weight')).toEqual([152064, 3584]);
    // Parameter count matches the published ~7.6B.
    let n = 0;
    for (const s of shapes.values()) n += s.reduce((a, b) => a * b, 1);
    expect(n / 1e9).toBeCloseTo(7.62, 2);
  });

  it('reads Qwen3: explicit head_dim, q/k norm, no bias, tied head', () => {
    const c = parseQwenConfig({
      architectures: ['Qwen3ForCausalLM'],
      hidden_size: 1024,
      head_dim: 128,
      intermediate_size: 3072,
      num_attention_heads: 16,
      num_key_value_heads: 8,
      num_hidden_layers: 2,
      vocab_size: 151936,
      tie_word_embeddings: true,
      rope_theta: 1000000,
    });
    expect(c).toMatchObject({ arch: 'qwen3', headDim: 128, qkNorm: true, attentionBias: false });
    const shapes = expectedShapes(c);
    expect(shapes.get('model.layers.1.self_attn.q_proj.weight')).toEqual([2048, 1024]);
    expect(shapes.get('model.layers.1.self_attn.q_norm.weight')).toEqual([128]);
    expect(shapes.has('lm_head.weight')).toBe(false);
  });

  it('names what is wrong with a bad config', () => {
    expect(() => parseQwenConfig({ architectures: ['LlamaForCausalLM'] })).toThrow(/unsupported architecture.*Llama/);
    expect(() => parseQwenConfig({ ...qwen25_7b, hidden_size: 3585 })).toThrow(/not divisible/);
    expect(() => parseQwenConfig({ ...qwen25_7b, num_key_value_heads: 5 })).toThrow(/not a multiple/);
    expect(() => parseQwenConfig({ ...qwen25_7b, vocab_size: -1 })).toThrow(/'vocab_size' must be a positive integer/);
    expect(() => parseQwenConfig({ ...qwen25_7b, rope_scaling: { type: 'yarn', factor: 4 } })).toThrow(/rope_scaling/);
  });
});
