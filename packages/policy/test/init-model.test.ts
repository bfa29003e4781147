import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Checkpoint, QwenTokenizer, TokenizerError, bundledTokenizerDir, expectedShapes, initModel, loadQwenConfig, makeDirs } from '../src/index.js';

describe('initModel', () => {
  for (const arch of ['qwen2', 'qwen3'] as const) {
    it(`writes a loadable ${arch} tiny model in HF layout`, () => {
      const dir = mkdtempSync(join(tmpdir(), `mlagent-init-${arch}-`));
      const { params } = initModel({ arch, preset: 'tiny', outDir: dir, seed: 1 });
      const cfg = loadQwenConfig(dir);
      expect(cfg.arch).toBe(arch);
      const ck = Checkpoint.open(dir);
      const shapes = expectedShapes(cfg);
      expect(new Set(ck.names())).toEqual(new Set(shapes.keys()));
      let n = 0;
      for (const [name, shape] of shapes) {
        expect(ck.info(name).shape).toEqual(shape);
        n += shape.reduce((a, b) => a * b, 1);
      }
      expect(n).toBe(params);
      // Norms start at 1, projections are small random values with std ~0.02.
      const norm = new Float32Array(ck.read('model.norm.weight').slice().buffer);
      expect(norm.every((x) => x === 1)).toBe(true);
      const q = new Float32Array(ck.read('model.layers.0.self_attn.q_proj.weight').slice().buffer);
      const std = Math.sqrt(q.reduce((s, x) => s + x * x, 0) / q.length);
      expect(std).toBeGreaterThan(0.018);
      expect(std).toBeLessThan(0.022);
      ck.close();
      const tok = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
      expect(tok.eos_token).toBe('<|im_end|>');
    });
  }

  it('is deterministic for a seed and different across seeds; f16 halves the file', () => {
    const a = mkdtempSync(join(tmpdir(), 'mlagent-init-a-'));
    const b = mkdtempSync(join(tmpdir(), 'mlagent-init-b-'));
    const c = mkdtempSync(join(tmpdir(), 'mlagent-init-c-'));
    const h = mkdtempSync(join(tmpdir(), 'mlagent-init-h-'));
    initModel({ arch: 'qwen2', preset: 'tiny', outDir: a, seed: 7 });
    initModel({ arch: 'qwen2', preset: 'tiny', outDir: b, seed: 7 });
    initModel({ arch: 'qwen2', preset: 'tiny', outDir: c, seed: 8 });
    initModel({ arch: 'qwen2', preset: 'tiny', outDir: h, seed: 7, dtype: 'float16' });
    const file = (d: string) => readFileSync(join(d, 'model.safetensors'));
    expect(file(a).equals(file(b))).toBe(true);
    expect(file(a).equals(file(c))).toBe(false);
    expect(file(h).length).toBeLessThan(file(a).length * 0.51);
  });

  it("keeps a tokenizer's chat_template.jinja, with the full and the cut vocabulary", () => {
    const tokDir = mkdtempSync(join(tmpdir(), 'mlagent-init-tok-'));
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(bundledTokenizerDir(), f), join(tokDir, f));
    const template = '{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}';
    writeFileSync(join(tokDir, 'chat_template.jinja'), template);
    for (const vocabMerges of [undefined, 300]) {
      const out = mkdtempSync(join(tmpdir(), 'mlagent-init-tpl-'));
      initModel({ arch: 'qwen2', preset: 'tiny', outDir: out, tokenizerDir: tokDir, vocabMerges });
      expect(QwenTokenizer.fromDir(out).applyChatTemplate([{ role: 'user', content: 'Hi' }]), String(vocabMerges)).toBe('<user>Hi');
    }
  });

  it('rejects an unknown preset or a missing tokenizer', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mlagent-init-x-'));
    expect(() => initModel({ arch: 'qwen2', preset: 'huge' as never, outDir: dir })).toThrow(/unknown preset 'huge'/);
    expect(() => initModel({ arch: 'qwen2', preset: 'tiny', outDir: dir, tokenizerDir: dir })).toThrow(/tokenizer.json not found/);
    // The caller's input, so typed (the CLI maps TokenizerError to a one-line exit 2).
    expect(() => initModel({ arch: 'qwen2', preset: 'tiny', outDir: dir, tokenizerDir: join(dir, 'nowhere') })).toThrow(TokenizerError);
  });

  it('makes the output directory and its missing parents with plain mkdirs, failing where one cannot be made', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mlagent-init-dirs-'));
    try {
      makeDirs(join(dir, 'a', 'b', 'c'));
      expect(existsSync(join(dir, 'a', 'b', 'c'))).toBe(true);
      makeDirs(join(dir, 'a', 'b')); // already there
      writeFileSync(join(dir, 'file'), '');
      expect(() => makeDirs(join(dir, 'file', 'x', 'y'))).toThrow(/ENOTDIR/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
