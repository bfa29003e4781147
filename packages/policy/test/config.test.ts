import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, expectedShapes, loadQwenConfig, parseQwenConfig } from '../src/index.js';

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
    expect(() => parseQwenConfig({ ...qwen25_7b, rope_scaling: { type: 'dynamic', factor: 4 } })).toThrow(
      `config.json: rope_scaling of type "dynamic" is not supported (default, linear and yarn are)`,
    );
  });
});

describe('Qwen config: fields checked at load (audit)', () => {
  const bad = (patch: Record<string, unknown>) => () => parseQwenConfig({ ...qwen25_7b, ...patch });

  it('eos_token_id and bos_token_id: integers (or a list for eos), null read as absent', () => {
    expect(parseQwenConfig({ ...qwen25_7b, eos_token_id: [151645, 151643], bos_token_id: 151643 })).toMatchObject({ eosTokenId: [151645, 151643], bosTokenId: 151643 });
    const nulls = parseQwenConfig({ ...qwen25_7b, eos_token_id: null, bos_token_id: null });
    expect(nulls.eosTokenId).toBeUndefined();
    expect(nulls.bosTokenId).toBeUndefined();
    expect(bad({ eos_token_id: '151645' })).toThrow(ConfigError);
    expect(bad({ eos_token_id: '151645' })).toThrow(`config.json: 'eos_token_id' must be an integer or a list of integers, got "151645"`);
    expect(bad({ eos_token_id: [151645, 'x'] })).toThrow(/'eos_token_id' must be an integer or a list of integers, got \[151645,"x"\]/);
    expect(bad({ eos_token_id: 1.5 })).toThrow(/'eos_token_id'/);
    expect(bad({ bos_token_id: '1' })).toThrow(`config.json: 'bos_token_id' must be a non-negative integer, got "1"`);
  });

  it('a config.json that is not a JSON object names the file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mlagent-cfg-'));
    try {
      for (const [text, kind] of [['null', 'null'], ['[]', 'an array'], ['3', 'a number']]) {
        writeFileSync(join(dir, 'config.json'), text);
        expect(() => loadQwenConfig(dir)).toThrow(ConfigError);
        expect(() => loadQwenConfig(dir)).toThrow(`${join(dir, 'config.json')}: expected a JSON object, got ${kind}`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(() => parseQwenConfig(null as never)).toThrow('config.json: expected a JSON object, got null');
  });

  it('refuses fields that change the computation and are not implemented', () => {
    expect(bad({ hidden_act: 'gelu' })).toThrow(`config.json: hidden_act "gelu" is not supported (only silu)`);
    expect(parseQwenConfig({ ...qwen25_7b, hidden_act: 'silu' }).arch).toBe('qwen2');
    expect(bad({ use_sliding_window: true, sliding_window: 1, max_window_layers: 0 })).toThrow(/use_sliding_window is true .*sliding-window attention is not supported/);
    // max_window_layers absent: HF's default 28, so layers 28.. of a 40-layer model would be windowed.
    expect(bad({ use_sliding_window: true, sliding_window: 4096, num_hidden_layers: 40 })).toThrow(/max_window_layers 28, 40 layers/);
    // A window covering the context, or no layer at or above max_window_layers, is full attention.
    expect(parseQwenConfig({ ...qwen25_7b, use_sliding_window: true, sliding_window: 32768, max_window_layers: 0 }).numLayers).toBe(28);
    expect(parseQwenConfig({ ...qwen25_7b, use_sliding_window: true, sliding_window: 1, max_window_layers: 28 }).numLayers).toBe(28);
    // Qwen2.5's own config: use_sliding_window false.
    expect(parseQwenConfig({ ...qwen25_7b, use_sliding_window: false, sliding_window: 131072, max_window_layers: 28 }).numLayers).toBe(28);
    expect(bad({ rope_scaling: { factor: 4 } })).toThrow(`config.json: rope_scaling {"factor":4} has no type/rope_type`);
    expect(bad({ rope_scaling: 4 })).toThrow(`config.json: rope_scaling must be an object, got 4`);
    expect(parseQwenConfig({ ...qwen25_7b, rope_scaling: { rope_type: 'default' } }).arch).toBe('qwen2');
  });

  it("rope_scaling yarn as Qwen2.5's model card sets it: pairs kept, ramped and interpolated, and the attention factor", () => {
    const cfg = parseQwenConfig({ ...qwen25_7b, rope_scaling: { type: 'yarn', factor: 4, original_max_position_embeddings: 32768 } });
    const f = cfg.ropeScaling!.invFreq;
    const plain = (i: number) => 1e6 ** ((-2 * i) / 128);
    expect(f).toHaveLength(64);
    // Pairs turning more than 32 times over 32768 positions (i <= 23 here) keep their frequency; fewer than once
    // (i >= 40) are divided by the factor; in between, a straight line.
    expect(f[0]).toBe(1);
    expect(f[23]).toBeCloseTo(plain(23), 15);
    expect(f[40] / plain(40)).toBeCloseTo(0.25, 12);
    expect(f[63] / plain(63)).toBeCloseTo(0.25, 12);
    expect(f[30] / plain(30)).toBeCloseTo(1 - (7 / 17) * 0.75, 12);
    expect(cfg.ropeScaling!.attentionFactor).toBeCloseTo(0.1 * Math.log(4) + 1, 12);
    const linear = parseQwenConfig({ ...qwen25_7b, rope_scaling: { rope_type: 'linear', factor: 2 } }).ropeScaling!;
    expect(linear.invFreq[5]).toBeCloseTo(plain(5) / 2, 15);
    expect(linear.attentionFactor).toBeUndefined();
    expect(parseQwenConfig({ ...qwen25_7b, rope_scaling: null }).ropeScaling).toBeUndefined();
  });

  it("rope_parameters (transformers 5): its rope_theta is read, and what cannot be computed is refused", () => {
    const { rope_theta: _theta, ...noTheta } = qwen25_7b;
    // Read as the default 10000, this would be a silently wrong model.
    expect(parseQwenConfig({ ...noTheta, rope_parameters: { rope_type: 'default', rope_theta: 1e6 } }).ropeTheta).toBe(1e6);
    expect(parseQwenConfig({ ...noTheta, rope_parameters: { rope_theta: 5e5 } }).ropeTheta).toBe(5e5);
    expect(bad({ rope_parameters: { rope_type: 'default', rope_theta: 1e4 } })).toThrow(`config.json: rope_theta 1000000 and rope_parameters.rope_theta 10000 differ`);
    expect(bad({ rope_parameters: { full_attention: { rope_theta: 1e6 }, sliding_attention: { rope_theta: 1e4 } } })).toThrow(
      /rope_parameters holds settings per layer type \(full_attention, sliding_attention\)/,
    );
    expect(bad({ rope_parameters: { rope_type: 'default', partial_rotary_factor: 0.5 } })).toThrow(/partial_rotary_factor 0.5 is not supported/);
    expect(bad({ partial_rotary_factor: 0.25 })).toThrow(/partial_rotary_factor 0.25 is not supported/);
    expect(bad({ rope_parameters: 'yarn' })).toThrow(`config.json: rope_parameters must be an object, got "yarn"`);
    expect(bad({ rope_theta: 'big' })).toThrow(`config.json: 'rope_theta' must be a number > 1, got "big"`);
    expect(bad({ rope_scaling: { type: 'yarn' } })).toThrow(`config.json: rope_scaling of type yarn needs a factor`);
    expect(bad({ rope_scaling: { type: 'yarn', factor: 0.5 } })).toThrow(`config.json: rope_scaling.factor must be a number >= 1, got 0.5`);
    expect(bad({ rope_scaling: { type: 'yarn', factor: 4, truncate: 'no' } })).toThrow(`config.json: rope_scaling.truncate must be true or false, got "no"`);
    expect(bad({ rope_scaling: { type: 'longrope', short_factor: [1], long_factor: [2] } })).toThrow(/type "longrope" is not supported/);
  });

  it('tie_word_embeddings and attention_bias must be booleans', () => {
    expect(bad({ tie_word_embeddings: 'true' })).toThrow(`config.json: 'tie_word_embeddings' must be true or false, got "true"`);
    expect(bad({ attention_bias: 'false' })).toThrow(/'attention_bias' must be true or false/);
    expect(parseQwenConfig({ ...qwen25_7b, tie_word_embeddings: null }).tieWordEmbeddings).toBe(false);
  });
});
