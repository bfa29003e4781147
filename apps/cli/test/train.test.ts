import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { initModel } from '@mlagent/policy';
import { mlagent } from './run-cli.js';

// Usage errors of `mlagent train` (exit 2, a message naming what is wrong, no stack trace). The pipeline itself
// runs in packages/rl's tests (the loop) and in the documented main-job run (docs/TRAINING.md).
const tmp = mkdtempSync(join(tmpdir(), 'mlagent-cli-train-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('mlagent train', () => {
  it('needs --preset or --config', async () => {
    const r = await mlagent('train', '--out', join(tmp, 'a'));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/train: give --preset tiny or --config FILE/);
  });

  it('refuses unknown presets and options', async () => {
    const a = await mlagent('train', '--preset', 'huge');
    expect(a.code).toBe(2);
    expect(a.stderr).toMatch(/--preset must be default or tiny, got 'huge'/);
    const b = await mlagent('train', '--preset', 'tiny', '--iterations', '3');
    expect(b.code).toBe(2);
    expect(b.stderr).toMatch(/train: .*--iterations/);
    const c = await mlagent('train', '--preset', 'tiny', '--model-preset', 'big');
    expect(c.code).toBe(2);
    expect(c.stderr).toMatch(/--model-preset must be tiny, mini or small/);
  });

  it('refuses a directory that already holds a run unless --resume', async () => {
    const dir = join(tmp, 'taken');
    mkdirSync(dir);
    writeFileSync(join(dir, 'train-config.json'), '{}');
    const r = await mlagent('train', '--preset', 'tiny', '--out', dir);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/already holds a run; pass --resume/);
  });

  it('reports every bad config field at once, before any stage runs', async () => {
    const file = join(tmp, 'bad.yaml');
    writeFileSync(file, 'preset: tiny\nppo:\n  historyWindow: -1\n  poolSampling: random\n  clipRatio: 2\n');
    const r = await mlagent('train', '--config', file, '--out', join(tmp, 'b'));
    expect(r.code).toBe(2);
    for (const field of ['ppo.historyWindow', 'ppo.poolSampling', 'ppo.clipRatio']) expect(r.stderr).toContain(field);
    expect(r.stderr).not.toMatch(/at .*\.js:\d+/);
  });

  it("checks the config's model before the collection, leaving no run directory behind", async () => {
    const model = join(tmp, 'half-model');
    mkdirSync(model);
    // A Qwen2 config but no tokenizer or weights.
    writeFileSync(join(model, 'config.json'), JSON.stringify({ architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', hidden_size: 64, intermediate_size: 128, num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 1000, max_position_embeddings: 512, rms_norm_eps: 1e-6, rope_theta: 10000, tie_word_embeddings: false }));
    const file = join(tmp, 'model.yaml');
    writeFileSync(file, `model: ${model}\n`);
    const out = join(tmp, 'c');
    const r = await mlagent('train', '--config', file, '--out', out);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/half-model\/tokenizer\.json not found/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.stderr).not.toMatch(/collect/);
    expect(existsSync(out)).toBe(false);
  });

  it('--memory-budget: SFT that cannot fit is refused before the collection (train) and before loading (sft)', async () => {
    const model = join(tmp, 'tiny-model');
    initModel({ arch: 'qwen2', preset: 'tiny', outDir: model, seed: 0 }); // f32 weights of ~80 MiB
    const file = join(tmp, 'tiny-model.yaml');
    writeFileSync(file, `preset: tiny
model: ${model}
`);
    const out = join(tmp, 'd');
    const bad = await mlagent('train', '--config', file, '--out', out, '--memory-budget', '0');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/train: --memory-budget must be a number in \[0\.001, /);
    const r = await mlagent('train', '--config', file, '--out', out, '--memory-budget', '0.05');
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/sft: a micro-batch of 4 x 1024 tokens needs about [\d.]+ MiB of GPU memory: this will not fit: .*budget is 51\.20 MiB/);
    expect(r.stderr).toMatch(/sft\.activationCheckpointing \(now false\)/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(out)).toBe(false);

    const data = join(tmp, 'sft.jsonl');
    writeFileSync(data, `${JSON.stringify({ prompt: 'a', response: 'b' })}\n`);
    const s = await mlagent('sft', '--model', model, '--data', data, '--out', join(tmp, 'sft-out'), '--memory-budget', '0.05');
    expect(s.code, s.stderr).toBe(2);
    expect(s.stderr).toMatch(/sft: a micro-batch of 1 x \d+ tokens needs about [\d.]+ MiB of GPU memory: this will not fit/);
  }, 120_000);
});
