import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
    expect(tok.decode([])).toBe(''); // the library underneath throws on no ids
    expect(tok.decode([], { skipSpecialTokens: true })).toBe('');
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

describe('QwenTokenizer: bad tokenizer files (audit)', () => {
  const src = bundledTokenizerDir();
  const srcConfig = JSON.parse(readFileSync(join(src, 'tokenizer_config.json'), 'utf8'));
  /** A tokenizer directory with the bundled tokenizer.json and this tokenizer_config.json text. */
  function withConfig(config: unknown, raw?: string): string {
    const dir = mkdtempSync(join(tmpdir(), 'mlagent-tok-'));
    copyFileSync(join(src, 'tokenizer.json'), join(dir, 'tokenizer.json'));
    writeFileSync(join(dir, 'tokenizer_config.json'), raw ?? JSON.stringify(config));
    return dir;
  }
  const CHAT = [{ role: 'user' as const, content: 'Hi' }];

  it('a chat_template that does not parse breaks only hf chat rendering, with the file named', () => {
    const dir = withConfig({ ...srcConfig, chat_template: '{% for m in messages %}{{ m.content ' });
    const t = QwenTokenizer.fromDir(dir);
    expect(t.encode('Hello world')).toEqual([9707, 1879]);
    expect(t.applyChatTemplate(CHAT, { template: 'ml-agent' })).toContain('Hi');
    const render = () => t.applyChatTemplate(CHAT);
    expect(render).toThrow(TokenizerError);
    expect(render).toThrow(new RegExp(`^${join(dir, 'tokenizer_config.json')}: chat_template does not parse \\(.+\\); use template "ml-agent" \\(--template ml-agent\\)$`));
  });

  it("HF's list form of chat_template: the one named 'default' is used, or the form is refused by name", () => {
    const good = QwenTokenizer.fromDir(withConfig({ ...srcConfig, chat_template: [{ name: 'tool_use', template: 'T' }, { name: 'default', template: srcConfig.chat_template }] }));
    expect(good.applyChatTemplate(CHAT, { addGenerationPrompt: true })).toBe(tok.applyChatTemplate(CHAT, { addGenerationPrompt: true }));
    const dir = withConfig({ ...srcConfig, chat_template: [{ name: 'tool_use', template: 'T' }] });
    expect(() => QwenTokenizer.fromDir(dir).applyChatTemplate(CHAT)).toThrow(
      `${join(dir, 'tokenizer_config.json')}: chat_template is a list of named templates ("tool_use") with no string template named "default"`,
    );
  });

  it('chat_template.jinja (the layout of transformers >= 4.47) is used before the config, and named in errors', () => {
    // The config has no template at all, as transformers now saves it: the .jinja file alone gives one.
    const { chat_template: qwenTemplate, ...noTemplate } = srcConfig;
    const dir = withConfig(noTemplate);
    expect(() => QwenTokenizer.fromDir(dir).applyChatTemplate(CHAT)).toThrow(`${join(dir, 'tokenizer_config.json')} has no chat_template`);
    writeFileSync(join(dir, 'chat_template.jinja'), qwenTemplate);
    expect(QwenTokenizer.fromDir(dir).applyChatTemplate(CHAT, { addGenerationPrompt: true })).toBe(tok.applyChatTemplate(CHAT, { addGenerationPrompt: true }));
    // Both present: the file wins, as in transformers.
    const both = withConfig(srcConfig);
    writeFileSync(join(both, 'chat_template.jinja'), '{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}');
    expect(QwenTokenizer.fromDir(both).applyChatTemplate(CHAT)).toBe('[user] Hi');
    writeFileSync(join(both, 'chat_template.jinja'), '{% for m in messages %}{{ m.content ');
    expect(() => QwenTokenizer.fromDir(both).applyChatTemplate(CHAT)).toThrow(new RegExp(`^${join(both, 'chat_template.jinja')}: chat_template does not parse \\(`));
    rmSync(join(both, 'chat_template.jinja'));
    mkdirSync(join(both, 'chat_template.jinja'));
    expect(() => QwenTokenizer.fromDir(both)).toThrow(new RegExp(`^${join(both, 'chat_template.jinja')}: cannot read the chat template \\(`));
  });

  it('names the file that is not valid JSON, and a tokenizer_config.json that is null', () => {
    const dir = withConfig(undefined, '{"chat_template": "x');
    expect(() => QwenTokenizer.fromDir(dir)).toThrow(new RegExp(`^${join(dir, 'tokenizer_config.json')}: not valid JSON \\(`));
    const dir2 = withConfig(srcConfig);
    writeFileSync(join(dir2, 'tokenizer.json'), '{"model": ');
    expect(() => QwenTokenizer.fromDir(dir2)).toThrow(new RegExp(`^${join(dir2, 'tokenizer.json')}: not valid JSON \\(`));
    const dir3 = withConfig(null);
    expect(() => QwenTokenizer.fromDir(dir3)).toThrow(TokenizerError);
    expect(() => QwenTokenizer.fromDir(dir3)).toThrow(`${join(dir3, 'tokenizer_config.json')}: expected a JSON object, got null`);
  });

  it('an eos_token the tokenizer lacks names the file and the field; the {content} form is read', () => {
    const dir = withConfig({ ...srcConfig, eos_token: '<|no_such_token|>' });
    expect(() => QwenTokenizer.fromDir(dir)).toThrow(`${join(dir, 'tokenizer_config.json')}: eos_token "<|no_such_token|>" is not a token of ${join(dir, 'tokenizer.json')}`);
    expect(QwenTokenizer.fromDir(withConfig({ ...srcConfig, eos_token: { content: '<|endoftext|>', special: true } })).eosTokenId).toBe(151643);
  });

  it("size is the highest id + 1 with added tokens; a model vocab_size below it is an error, far above it a warning", () => {
    expect(tok.size).toBe(151669); // Qwen3's tokenizer: 151643 BPE tokens + added tokens up to <|/think|> 151668
    expect(tok.checkModelVocab(151936)).toBeUndefined(); // Qwen's padded embeddings: silent
    expect(() => tok.checkModelVocab(482, '/m/config.json')).toThrow(TokenizerError);
    expect(() => tok.checkModelVocab(482, '/m/config.json')).toThrow(
      `${join(src, 'tokenizer.json')} has 151669 tokens (ids 0..151668) but /m/config.json has vocab_size 482: the tokenizer does not belong to this model`,
    );
    expect(tok.checkModelVocab(400_000, '/m/config.json')).toMatch(/has only 151669 tokens but \/m\/config\.json has vocab_size 400000/);
  });
});
