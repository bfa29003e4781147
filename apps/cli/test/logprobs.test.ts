import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QwenTokenizer } from '@mlagent/policy';
import { mlagent, tinyModel } from './run-cli.js';

let tmp: string;
let model: string;

beforeAll(() => {
  ({ tmp, model } = tinyModel('qwen3', 5));
});

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('mlagent logprobs', () => {
  it('scores --ids so that they agree with the logprobs generate reported for the same tokens', () => {
    const g = JSON.parse(mlagent('generate', '--model', model, '--prompt', 'import numpy as', '--max-new-tokens', '3', '--temperature', '0', '--json').stdout);
    const ids: number[] = [...g.prompt_ids, ...g.ids];
    const r = mlagent('logprobs', '--model', model, '--ids', ids.join(','), '--json');
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(Object.keys(out)).toEqual(['ids', 'logprobs']);
    expect(out.ids).toEqual(ids);
    expect(out.logprobs).toHaveLength(ids.length);
    expect(out.logprobs[0]).toBeNull();
    // Greedy generate reports log softmax(logits) of each token it picked: the same quantity, computed by the
    // KV-cache decode path instead of the fused head over the whole sequence.
    const tail = out.logprobs.slice(g.prompt_ids.length);
    tail.forEach((lp: number, i: number) => expect(Math.abs(lp - g.logprobs[i]), `token ${i}`).toBeLessThan(1e-4));
  });

  it('--text is tokenized without special tokens; without --json it prints a table', () => {
    const text = 'Hello, world! <|im_end|>';
    const ids = QwenTokenizer.fromDir(model).encode(text, { addSpecialTokens: false });
    const json = JSON.parse(mlagent('logprobs', '--model', model, '--text', text, '--json').stdout);
    expect(json.ids).toEqual(ids);
    const table = mlagent('logprobs', '--model', model, '--text', text);
    expect(table.code).toBe(0);
    const lines = table.stdout.trim().split('\n');
    expect(lines).toHaveLength(ids.length + 1);
    expect(lines[0]).toMatch(/^0\t\d+\t"Hello"\t-$/);
    expect(lines[lines.length - 1]).toMatch(new RegExp(`^sum -\\d+\\.\\d{4} over ${ids.length - 1} predicted tokens$`));
  });

  it('rejects bad arguments', () => {
    const cases: [string[], RegExp][] = [
      [['--model', model, '--json'], /exactly one of --text TEXT or --ids 1,2,3/],
      [['--model', model, '--ids', '1,2,x'], /'x' is not one/],
      [['--model', model, '--ids', '1,,2'], /'' is not one/],
      [['--model', model, '--ids', '1,999999'], /token id 999999 is outside this model's vocabulary \[0, 151936\)/],
      [['--model', model, '--text', 'x', '--adapter', join(tmp, 'adapter')], /--adapter/],
    ];
    for (const [args, message] of cases) {
      const r = mlagent('logprobs', ...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(message);
    }
  });
});
