import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { QwenTokenizer, TokenizerError, bundledTokenizerDir } from '../src/index.js';

const tok = QwenTokenizer.fromDir(bundledTokenizerDir());

describe('QwenTokenizer', () => {
  it('encodes like the Qwen tokenizer: known ids, special tokens, round trip', () => {
    // Ids of the public Qwen2/Qwen2.5/Qwen3 vocabulary.
    expect(tok.encode('Hello world')).toEqual([9707, 1879]);
    expect(tok.tokenId('<|endoftext|>')).toBe(151643);
    expect(tok.tokenId('<|im_start|>')).toBe(151644);
    expect(tok.tokenId('<|im_end|>')).toBe(151645);
    expect(tok.encode('<|im_start|>user')).toEqual([151644, 872]);
    const text = 'def train(model):\n    loss = F.cross_entropy(logits, y)  # ünïcödé ✓\n';
    expect(tok.decode(tok.encode(text))).toBe(text);
    expect(tok.eosTokenId).toBe(151645);
    expect(tok.padTokenId).toBe(151643);
  });

  it('renders the model chat template as apply_chat_template does', () => {
    const s = tok.applyChatTemplate(
      [
        { role: 'system', content: 'S' },
        { role: 'user', content: 'Hi' },
      ],
      { addGenerationPrompt: true },
    );
    expect(s).toBe('<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n');
  });

  it('renders the ML-Agent SFT template: turns end with <|endoftext|>, default system prompt', () => {
    const s = tok.applyChatTemplate(
      [
        { role: 'user', content: 'x' },
        { role: 'assistant', content: 'y' },
      ],
      { template: 'ml-agent' },
    );
    expect(s).toBe(
      '<|im_start|>system\nYou are a helpful assistant.<|endoftext|>\n<|im_start|>user\nx<|endoftext|>\n<|im_start|>assistant\ny<|endoftext|>\n',
    );
    const ids = tok.encode(s);
    expect(ids.filter((i) => i === tok.endOfTextId)).toHaveLength(3);
    expect(() => tok.applyChatTemplate([{ role: 'tool' as never, content: 'x' }])).toThrow(/role system\|user\|assistant/);
    expect(() => tok.applyChatTemplate([], { template: 'vicuna' as never })).toThrow(/unknown chat template/);
  });

  it('rejects a tokenizer.json that is JSON but no tokenizer with a TokenizerError naming the file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mlagent-tok-'));
    try {
      copyFileSync(join(bundledTokenizerDir(), 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
      for (const bad of ['{}', '[]', 'null']) {
        writeFileSync(join(dir, 'tokenizer.json'), bad);
        const load = () => QwenTokenizer.fromDir(dir);
        expect(load, bad).toThrow(TokenizerError);
        expect(load, bad).toThrow(`${join(dir, 'tokenizer.json')}: not a Hugging Face tokenizer (`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
