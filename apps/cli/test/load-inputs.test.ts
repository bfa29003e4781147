// Bad user files given to generate/serve: each is a one-line error (exit 2) naming the file, or a warning (audit).
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundledTokenizerDir, loadQwenConfig, moduleShape, truncateTokenizer, peftTensorName, writeSafetensors, type TensorToWrite } from '@mlagent/policy';
import { mlagent, tinyModel } from './run-cli.js';

let tmp: string;
let model: string;

beforeAll(async () => {
  ({ tmp, model } = await tinyModel('qwen2', 11));
}, 120_000);

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A copy of the tiny model with `file` (a JSON file) patched. */
function variant(name: string, file: string, patch: (j: Record<string, unknown>) => unknown): string {
  const dir = join(tmp, name);
  cpSync(model, dir, { recursive: true });
  const path = join(dir, file);
  writeFileSync(path, JSON.stringify(patch(JSON.parse(readFileSync(path, 'utf8')))));
  return dir;
}

const generate = (dir: string, ...args: string[]) => mlagent('generate', '--model', dir, '--max-new-tokens', '1', '--temperature', '0', ...args);

describe('mlagent generate: config.json and tokenizer files', () => {
  it('eos_token_id: a string is refused naming config.json; null is read as absent', async () => {
    const bad = await generate(variant('eos-string', 'config.json', (j) => ({ ...j, eos_token_id: '151645' })), '--prompt', 'hi');
    expect(bad.code, bad.stderr).toBe(2);
    expect(bad.stderr).toMatch(/config\.json: 'eos_token_id' must be an integer or a list of integers, got "151645"\n$/);
    const ok = await generate(variant('eos-null', 'config.json', (j) => ({ ...j, eos_token_id: null })), '--prompt', 'hi');
    expect(ok.code, ok.stderr).toBe(0);
  });

  it('a config.json holding null is named, not a TypeError', async () => {
    const r = await generate(variant('cfg-null', 'config.json', () => null), '--prompt', 'hi');
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/config\.json: expected a JSON object, got null\n$/);
  });

  it('a chat_template that does not parse leaves --prompt working; --chat names the file and --template ml-agent', async () => {
    const dir = variant('bad-jinja', 'tokenizer_config.json', (j) => ({ ...j, chat_template: '{% for m in messages %}{{ m.content ' }));
    const plain = await generate(dir, '--prompt', 'hi');
    expect(plain.code, plain.stderr).toBe(0);
    const chat = join(tmp, 'chat.json');
    writeFileSync(chat, JSON.stringify([{ role: 'user', content: 'hi' }]));
    const r = await generate(dir, '--chat', chat);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/^mlagent generate: \S+\/bad-jinja\/tokenizer_config\.json: chat_template does not parse \(.+\); use template "ml-agent" \(--template ml-agent\)\n$/);
    expect((await generate(dir, '--chat', chat, '--template', 'ml-agent')).code).toBe(0);
  });
});

describe('mlagent generate/serve: tokenizer against the model vocabulary', () => {
  it('a tokenizer larger than vocab_size is refused before loading, naming both files and sizes', async () => {
    const dir = variant('vocab-small', 'config.json', (j) => ({ ...j, vocab_size: 1000 }));
    const message = new RegExp(
      `^mlagent (generate|serve|logprobs): ${dir}/tokenizer\\.json has 151669 tokens \\(ids 0\\.\\.151668\\) but ${dir}/config\\.json has vocab_size 1000: the tokenizer does not belong to this model\\n$`,
    );
    const r = await generate(dir, '--prompt', 'hi');
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(message);
    const s = await mlagent('serve', '--model', dir, '--port', '0');
    expect(s.code, s.stderr).toBe(2);
    expect(s.stderr).toMatch(message);
    expect(s.stdout).not.toMatch(/listening/);
    const l = await mlagent('logprobs', '--model', dir, '--text', 'hi');
    expect(l.code, l.stderr).toBe(2);
    expect(l.stderr).toMatch(message);
  });

  it('a tokenizer under half the vocabulary is a warning; Qwen’s own padding (151669 of 151936) is silent', async () => {
    const dir = join(tmp, 'tok-smaller');
    cpSync(model, dir, { recursive: true });
    truncateTokenizer(bundledTokenizerDir(), dir, 50); // rewrites the tokenizer files in place
    const r = await generate(dir, '--prompt', 'hi');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`generate: warning: ${dir}/tokenizer\\.json has only \\d+ tokens but ${dir}/config\\.json has vocab_size 151936`));
    const normal = await generate(model, '--prompt', 'hi');
    expect(normal.code, normal.stderr).toBe(0);
    expect(normal.stderr).not.toMatch(/warning/);
  });
});

describe('mlagent generate --adapter', () => {
  it("names the adapter's base model in the loaded line", async () => {
    const dir = join(tmp, 'adapter');
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      join(dir, 'adapter_config.json'),
      JSON.stringify({ peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: 'Qwen/Qwen2.5-0.5B', r: 2, lora_alpha: 4, bias: 'none', target_modules: ['q_proj'] }),
    );
    const cfg = loadQwenConfig(model);
    const tensors: Record<string, TensorToWrite> = {};
    for (let l = 0; l < cfg.numLayers; l++) {
      const [outF, inF] = moduleShape(cfg, 'q_proj');
      tensors[peftTensorName(l, 'q_proj', 'A')] = { dtype: 'F32', shape: [2, inF], data: new Float32Array(2 * inF) };
      tensors[peftTensorName(l, 'q_proj', 'B')] = { dtype: 'F32', shape: [outF, 2], data: new Float32Array(outF * 2) };
    }
    writeSafetensors(join(dir, 'adapter_model.safetensors'), tensors, { format: 'pt' });
    const r = await generate(model, '--adapter', dir, '--prompt', 'hi');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`with LoRA r=2 from ${dir} \\(trained on Qwen/Qwen2\\.5-0\\.5B\\) in `));
  });
});
