import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Checkpoint, QwenTokenizer, bundledTokenizerDir, initModel, loadQwenConfig, truncateTokenizer } from '../src/index.js';

const TEXTS = [
  'Action: Execute Script\nAction Input: {\n    "script_name": "train.py"\n}',
  "features = [c for c in train.columns if c not in ('Id', 'SalePrice')]\n\tprint(f'{mae:.2f}')",
  'Ünïcödé, 中文, emoji 🚀 and odd bytes \u0000\u0007 survive a round trip.',
  '<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n',
];

describe('truncateTokenizer', () => {
  const full = QwenTokenizer.fromDir(bundledTokenizerDir());

  for (const merges of [0, 300, 4000]) {
    it(`keeps ${merges} merges: every text round-trips, ids stay below the vocabulary, special tokens map`, () => {
      const dir = mkdtempSync(join(tmpdir(), 'mlagent-trunc-'));
      const t = truncateTokenizer(bundledTokenizerDir(), dir, merges);
      expect(t.vocabSize).toBe(256 + merges + 26);
      const tok = QwenTokenizer.fromDir(dir);
      expect(tok.endOfTextId).toBe(256 + merges);
      expect(tok.imEndId).toBe(t.specialIds['<|im_end|>']);
      for (const text of TEXTS) {
        const ids = tok.encode(text);
        expect(tok.decode(ids)).toBe(full.decode(full.encode(text)));
        expect(Math.max(...ids)).toBeLessThan(t.vocabSize);
        // Fewer merges spell the same text with at least as many tokens.
        expect(ids.length).toBeGreaterThanOrEqual(full.encode(text).length);
      }
      expect(tok.encode('<|im_start|>')).toEqual([t.specialIds['<|im_start|>']]);
      if (merges === 0) expect(tok.encode('ab')).toEqual([...'ab'].map((c) => full.encode(c)[0]));
    });
  }

  it('agrees with the full tokenizer on tokens made by kept merges', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mlagent-trunc-'));
    truncateTokenizer(bundledTokenizerDir(), dir, 4000);
    const tok = QwenTokenizer.fromDir(dir);
    // Text whose full-vocabulary tokens all come from the first 4000 merges is tokenized identically.
    let compared = 0;
    for (const w of [' the', 'in', ' train', ' model', 'Action', ' data', 'import numpy as np']) {
      const ids = full.encode(w);
      if (Math.max(...ids) >= 256 + 4000) continue;
      expect(tok.encode(w)).toEqual(ids);
      compared++;
    }
    expect(compared).toBeGreaterThanOrEqual(3);
  });

  it('rejects a bad merge count and a vocabulary that is not in merge order', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mlagent-trunc-'));
    expect(() => truncateTokenizer(bundledTokenizerDir(), dir, -1)).toThrow(/non-negative integer/);
    expect(() => truncateTokenizer(bundledTokenizerDir(), dir, 10_000_000)).toThrow(/cannot keep/);
    const bad = mkdtempSync(join(tmpdir(), 'mlagent-trunc-bad-'));
    const tj = JSON.parse(readFileSync(join(bundledTokenizerDir(), 'tokenizer.json'), 'utf8'));
    const vocab = tj.model.vocab as Record<string, number>;
    const [a, b] = Object.keys(vocab).filter((k) => vocab[k] === 300 || vocab[k] === 301);
    [vocab[a], vocab[b]] = [vocab[b], vocab[a]];
    writeFileSync(join(bad, 'tokenizer.json'), JSON.stringify(tj));
    writeFileSync(join(bad, 'tokenizer_config.json'), readFileSync(join(bundledTokenizerDir(), 'tokenizer_config.json')));
    expect(() => truncateTokenizer(bad, dir, 1000)).toThrow(/not ordered/);
    expect(() => truncateTokenizer(bad, dir, 40)).not.toThrow();
  });
});

describe('initModel with a small vocabulary', () => {
  it('sizes the embedding and head to the truncated tokenizer and scales the head', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mlagent-init-small-vocab-'));
    initModel({ arch: 'qwen2', preset: 'tiny', outDir: dir, seed: 3, vocabMerges: 1000, headInitStd: 0.2 });
    const cfg = loadQwenConfig(dir);
    expect(cfg.vocabSize).toBe(1282);
    const raw = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    const tok = QwenTokenizer.fromDir(dir);
    expect(raw.eos_token_id).toBe(tok.imEndId);
    expect(raw.bos_token_id).toBe(tok.endOfTextId);
    const gen = JSON.parse(readFileSync(join(dir, 'generation_config.json'), 'utf8'));
    expect(gen.eos_token_id).toEqual([tok.imEndId, tok.endOfTextId]);
    const ck = Checkpoint.open(dir);
    expect(ck.info('lm_head.weight').shape).toEqual([1282, 64]);
    expect(ck.info('model.embed_tokens.weight').shape).toEqual([1282, 64]);
    const std = (name: string) => {
      const v = new Float32Array(ck.read(name).slice().buffer);
      return Math.sqrt(v.reduce((s, x) => s + x * x, 0) / v.length);
    };
    expect(std('lm_head.weight')).toBeGreaterThan(0.19);
    expect(std('lm_head.weight')).toBeLessThan(0.21);
    expect(std('model.embed_tokens.weight')).toBeLessThan(0.022);
    ck.close();
    expect(() => initModel({ arch: 'qwen2', preset: 'tiny', outDir: dir, headInitStd: 0 })).toThrow(/headInitStd/);
  });
});
