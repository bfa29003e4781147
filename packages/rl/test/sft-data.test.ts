import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { QwenTokenizer, bundledTokenizerDir } from '@mlagent/policy';
import { epochBatches, shuffledIndices, trainEvalSplit } from '../src/sft/batches.js';
import { readSftData, toChat } from '../src/sft/data.js';
import { encodeChat } from '../src/sft/tokenize.js';

const tokenizer = QwenTokenizer.fromDir(bundledTokenizerDir());

describe('SFT data formats', () => {
  it('reads prompt/response, messages and ShareGPT lines into chats', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rl-sft-data-'));
    const path = join(dir, 'data.jsonl');
    writeFileSync(
      path,
      [
        { prompt: 'p', response: 'r', system: 's', task: 'ignored' },
        { messages: [{ role: 'user', content: 'u' }, { role: 'assistant', content: 'a' }] },
        { conversations: [{ from: 'human', value: 'h' }, { from: 'gpt', value: 'g' }], system: 'sys' },
      ]
        .map((x) => JSON.stringify(x))
        .join('\n') + '\n\n',
    );
    expect(readSftData(path)).toEqual([
      [
        { role: 'system', content: 's' },
        { role: 'user', content: 'p' },
        { role: 'assistant', content: 'r' },
      ],
      [
        { role: 'user', content: 'u' },
        { role: 'assistant', content: 'a' },
      ],
      [
        { role: 'system', content: 'sys' },
        { role: 'user', content: 'h' },
        { role: 'assistant', content: 'g' },
      ],
    ]);
    const jsonPath = join(dir, 'data.json');
    writeFileSync(jsonPath, JSON.stringify([{ prompt: 'a', response: 'b' }]));
    expect(readSftData(jsonPath)).toHaveLength(1);
  });

  it('names the line and the problem of a bad example', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rl-sft-data-'));
    const path = join(dir, 'bad.jsonl');
    writeFileSync(path, '{"prompt":"a","response":"b"}\n{"prompt":"a"}\n');
    expect(() => readSftData(path)).toThrow(`${path}:2: 'prompt' and 'response' must both be strings`);
    writeFileSync(path, '{"prompt":"a","response":"b"}\nnot json\n');
    expect(() => readSftData(path)).toThrow(/bad\.jsonl:2: not valid JSON/);
    expect(() => toChat({ messages: [{ role: 'user', content: 'x' }] })).toThrow(/has no assistant turn/);
    expect(() => toChat({ conversations: [{ from: 'robot', value: 'x' }] })).toThrow(/conversations\[0\] needs from human\|gpt\|system/);
    expect(() => toChat({ text: 'x' })).toThrow(/needs 'messages', 'conversations' \(ShareGPT\) or 'prompt' \+ 'response'/);
    expect(() => readSftData(join(dir, 'missing.jsonl'))).toThrow(/cannot read SFT data/);
  });
});

describe('assistant-only targets', () => {
  it('targets exactly the assistant contents and their end-of-turn tokens (ml-agent template)', () => {
    const chat = toChat({
      messages: [
        { role: 'user', content: 'Train a model.' },
        { role: 'assistant', content: 'Action: List Files' },
        { role: 'user', content: 'Observation: train.csv' },
        { role: 'assistant', content: 'Action: Final Answer' },
      ],
    });
    const e = encodeChat(tokenizer, chat, 'ml-agent', 4096);
    expect(tokenizer.decode(e.ids)).toBe(tokenizer.applyChatTemplate(chat, { template: 'ml-agent' }));
    // Maximal runs of targets, decoded.
    const runs: string[] = [];
    let run: number[] = [];
    e.ids.forEach((id, t) => {
      if (e.mask[t]) run.push(id);
      else if (run.length) {
        runs.push(tokenizer.decode(run));
        run = [];
      }
    });
    if (run.length) runs.push(tokenizer.decode(run));
    expect(runs).toEqual(['Action: List Files<|endoftext|>', 'Action: Final Answer<|endoftext|>']);
    expect(e.targets).toBe(e.mask.reduce((a, b) => a + b, 0));
    expect(e.truncated).toBe(false);
  });

  it("the hf template (the bundled Qwen3 one) ends assistant targets at <|im_end|>, its empty think block included", () => {
    const chat = toChat({ prompt: 'Hi', response: 'Hello there' });
    const e = encodeChat(tokenizer, chat, 'hf', 4096);
    const targets = e.ids.filter((_, t) => e.mask[t]);
    expect(tokenizer.decode(targets)).toBe('<think>\n\n</think>\n\nHello there<|im_end|>');
  });

  it('truncates to maxSeqLen, keeping the targets that fit', () => {
    const chat = toChat({ prompt: 'Hi', response: 'one two three four five six seven eight nine ten' });
    const full = encodeChat(tokenizer, chat, 'ml-agent', 4096);
    const cut = encodeChat(tokenizer, chat, 'ml-agent', full.ids.length - 4);
    expect(cut.truncated).toBe(true);
    expect(cut.ids).toEqual(full.ids.slice(0, full.ids.length - 4));
    expect(cut.targets).toBe(full.targets - 3); // the trailing newline after <|endoftext|> was no target
  });
});

describe('batching', () => {
  it('splits train and eval reproducibly, at least one of each', () => {
    const a = trainEvalSplit(10, 0.2, 1);
    expect(a).toEqual(trainEvalSplit(10, 0.2, 1));
    expect(a.eval).toHaveLength(2);
    expect([...a.train, ...a.eval].sort((x, y) => x - y)).toEqual([...Array(10).keys()]);
    expect(trainEvalSplit(3, 0.01, 1).eval).toHaveLength(1);
    expect(trainEvalSplit(3, 0, 1).eval).toHaveLength(0);
    expect(shuffledIndices(5, 3)).not.toEqual(shuffledIndices(5, 4));
  });

  it('epoch batches are a pure function of (seed, epoch), cover every item once, and bucket by length', () => {
    const items = [...Array(100).keys()];
    const length = (i: number) => (i * 37) % 101;
    const o = { batchSize: 4, seed: 5, epoch: 0, bucketing: true };
    const a = epochBatches(items, length, o);
    expect(epochBatches(items, length, o)).toEqual(a);
    expect(epochBatches(items, length, { ...o, epoch: 1 })).not.toEqual(a);
    expect(a.flat().sort((x, y) => x - y)).toEqual(items);
    // Padding waste: bucketed batches are much tighter than plain shuffled ones.
    const spread = (bs: number[][]) => bs.reduce((s, b) => s + Math.max(...b.map(length)) - Math.min(...b.map(length)), 0);
    expect(spread(a)).toBeLessThan(spread(epochBatches(items, length, { ...o, bucketing: false })) / 4);
  });
});
