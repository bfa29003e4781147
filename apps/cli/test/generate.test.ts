import { rmSync, writeFileSync } from 'node:fs';
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
