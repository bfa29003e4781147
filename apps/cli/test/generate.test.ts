import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mlagent, tinyModel } from './run-cli.js';

let tmp: string;
let model: string;

beforeAll(async () => {
  ({ tmp, model } = await tinyModel('qwen2', 3));
}, 120_000);

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('mlagent generate', () => {
  it('--json: greedy from --prompt gives ids, text, logprobs and a finish reason; a seed makes sampling repeatable', async () => {
    const r = await mlagent('generate', '--model', model, '--prompt', 'def add(a, b):', '--max-new-tokens', '3', '--temperature', '0', '--json');
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.prompt_ids.length).toBeGreaterThan(3);
    expect(out.ids.length).toBeGreaterThan(0);
    expect(out.ids.length).toBeLessThanOrEqual(3);
    expect(out.logprobs).toHaveLength(out.ids.length);
    for (const lp of out.logprobs) expect(lp).toBeLessThan(0);
    expect(typeof out.text).toBe('string');
    expect(['stop', 'length']).toContain(out.finish_reason);
    expect(r.stderr).toMatch(/loaded qwen2 \(2 layers, hidden 64, f32\)/);

    const chat = join(tmp, 'chat.json');
    writeFileSync(chat, JSON.stringify([{ role: 'user', content: 'Say hi.' }]));
    const run = async () => JSON.parse((await mlagent('generate', '--model', model, '--chat', chat, '--max-new-tokens', '2', '--seed', '7', '--json')).stdout);
    const [a, b] = [await run(), await run()];
    expect(a.ids).toEqual(b.ids);
    // The chat template wraps the message: <|im_start|>user ... <|im_start|>assistant
    expect(a.prompt_ids.length).toBeGreaterThan(6);
  });

  it('streams plain text without --json', async () => {
    const r = await mlagent('generate', '--model', model, '--prompt', 'Hello', '--max-new-tokens', '2', '--temperature', '0');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.endsWith('\n')).toBe(true);
    expect(r.stderr).toMatch(/\[\d tokens, finish_reason: (stop|length)\]/);
  });

  it('rejects bad arguments before loading anything', async () => {
    const cases: [string[], RegExp][] = [
      [['--prompt', 'x'], /--model DIR is required/],
      [['--model', model], /exactly one of --prompt TEXT or --chat FILE\.json/],
      [['--model', model, '--prompt', 'x', '--chat', 'f.json'], /exactly one of --prompt/],
      [['--model', model, '--prompt', 'x', '--max-new-tokens', '0'], /--max-new-tokens must be an integer in \[1/],
      [['--model', model, '--prompt', 'x', '--temperature', 'hot'], /--temperature must be a number/],
      [['--model', model, '--prompt', 'x', '--seed', '1.5'], /--seed must be an integer/],
      [['--model', model, '--chat', join(tmp, 'missing.json')], /--chat .*missing\.json: ENOENT/],
      [['--model', join(tmp, 'nowhere'), '--prompt', 'x'], /has no config\.json/],
      [['--model', model, '--prompt', 'x', '--template', 'llama'], /--template must be hf or ml-agent/],
    ];
    for (const [args, message] of cases) {
      const r = await mlagent('generate', ...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(message);
    }
    const bad = join(tmp, 'bad-chat.json');
    writeFileSync(bad, JSON.stringify([{ role: 'user' }]));
    expect((await mlagent('generate', '--model', model, '--chat', bad)).stderr).toMatch(/message 0 needs role system\|user\|assistant and string content/);
  });
});

describe('mlagent generate and the context', () => {
  let small: string;
  beforeAll(() => {
    small = join(tmp, 'ctx16');
    cpSync(model, small, { recursive: true });
    const cfg = JSON.parse(readFileSync(join(small, 'config.json'), 'utf8'));
    writeFileSync(join(small, 'config.json'), JSON.stringify({ ...cfg, max_position_embeddings: 16 }));
  });

  it('refuses an explicit --max-new-tokens beyond the context, or a prompt that fills it, in one line', async () => {
    const r = await mlagent('generate', '--model', small, '--prompt', 'hi there', '--max-new-tokens', '40');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^mlagent generate: prompt \(2 tokens\) \+ --max-new-tokens 40 exceed the model's 16-token context; lower --max-new-tokens to at most 14\n$/);
    const full = await mlagent('generate', '--model', small, '--prompt', 'a b '.repeat(10));
    expect(full.code).toBe(2);
    expect(full.stderr).toMatch(/^mlagent generate: the prompt has \d+ tokens, which leaves no room in the model's 16-token context; shorten --prompt\n$/);
  });

  it('cuts the default --max-new-tokens to what the context leaves, and says so', async () => {
    const r = await mlagent('generate', '--model', small, '--prompt', 'hi there', '--temperature', '0', '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/generate: --max-new-tokens 14, what the model's 16-token context leaves after the 2-token prompt \(default 64\)/);
    const out = JSON.parse(r.stdout);
    expect(out.ids.length).toBeLessThanOrEqual(14);
    // Where the default fits, nothing is said.
    expect((await mlagent('generate', '--model', model, '--prompt', 'hi', '--max-new-tokens', '1')).stderr).not.toMatch(/--max-new-tokens/);
  });

  it('fails on NaN weights, naming the tensor, instead of emitting token 0 with null logprobs', async () => {
    const nan = join(tmp, 'nan-weights');
    cpSync(model, nan, { recursive: true });
    const file = join(nan, 'model.safetensors');
    const buf = readFileSync(file);
    const headerLen = Number(buf.readBigUInt64LE(0));
    const [from, to] = (JSON.parse(buf.subarray(8, 8 + headerLen).toString()) as Record<string, { data_offsets: [number, number] }>)['model.norm.weight'].data_offsets;
    for (let o = 8 + headerLen + from; o < 8 + headerLen + to; o += 4) buf.writeFloatLE(NaN, o);
    writeFileSync(file, buf);
    for (const json of [['--json'], []]) {
      const r = await mlagent('generate', '--model', nan, '--prompt', 'hi', '--max-new-tokens', '3', '--temperature', '0', ...json);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/\nmlagent generate: non-finite logits at step 0 of prompt 0; the weights in \S+nan-weights hold NaN or Inf values \('model\.norm\.weight'\)\n$/);
    }
  });
});
