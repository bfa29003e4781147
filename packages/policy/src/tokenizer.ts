import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/**
 * Chat templates by name:
 * - 'hf': the model's own `chat_template` from tokenizer_config.json, rendered as HF's apply_chat_template does;
 * - 'ml-agent': the ML-Agent SFT template, Qwen ChatML whose turns end with <|endoftext|> instead of <|im_end|>
 *   (as in the paper's released LLaMA-Factory template), with the default system prompt.
 */
export type ChatTemplateName = 'hf' | 'ml-agent';

export const ML_AGENT_SYSTEM_PROMPT = 'You are a helpful assistant.';

export class TokenizerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TokenizerError';
  }
}

/** The Qwen tokenizer and chat templates of a Hugging Face model directory. */
export class QwenTokenizer {
  private readonly hfTemplate: Template | undefined;
  readonly eosTokenId: number;
  readonly padTokenId: number;
  /** <|endoftext|>: the end of a turn in the ML-Agent template and the pad token. */
  readonly endOfTextId: number;
  readonly imEndId: number;

  private constructor(
    private readonly tokenizer: Tokenizer,
    readonly config: Record<string, unknown>,
  ) {
    const tpl = config.chat_template;
    this.hfTemplate = typeof tpl === 'string' ? new Template(tpl) : undefined;
    this.endOfTextId = this.requireId('<|endoftext|>');
    this.imEndId = this.requireId('<|im_end|>');
    this.eosTokenId = typeof config.eos_token === 'string' ? this.requireId(config.eos_token) : this.imEndId;
    this.padTokenId = typeof config.pad_token === 'string' ? this.requireId(config.pad_token) : this.endOfTextId;
  }

  static fromDir(dir: string): QwenTokenizer {
    const tj = join(dir, 'tokenizer.json');
    const tc = join(dir, 'tokenizer_config.json');
    for (const p of [tj, tc]) if (!existsSync(p)) throw new TokenizerError(`${p} not found`);
    let json: object;
    let config: Record<string, unknown>;
    try {
      json = JSON.parse(readFileSync(tj, 'utf8'));
      config = JSON.parse(readFileSync(tc, 'utf8'));
    } catch (e) {
      throw new TokenizerError(`${dir}: tokenizer files are not valid JSON (${(e as Error).message})`);
    }
    let tokenizer: Tokenizer;
    try {
      tokenizer = new Tokenizer(json, config);
    } catch (e) {
      // Valid JSON that is not a tokenizer (e.g. {}): the library's own message, but naming the file.
      throw new TokenizerError(`${tj}: not a Hugging Face tokenizer (${(e as Error).message})`);
    }
    return new QwenTokenizer(tokenizer, config);
  }

  /** Token ids of `text`. Special tokens written in the text (e.g. <|im_start|>) map to their ids. */
  encode(text: string, { addSpecialTokens = false } = {}): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  decode(ids: number[], { skipSpecialTokens = false } = {}): string {
    return this.tokenizer.decode(ids, { skip_special_tokens: skipSpecialTokens });
  }

  tokenId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }

  /** Renders a conversation; with `addGenerationPrompt` it ends with an open assistant turn. */
  applyChatTemplate(messages: ChatMessage[], { template = 'hf', addGenerationPrompt = false }: { template?: ChatTemplateName; addGenerationPrompt?: boolean } = {}): string {
    for (const [i, m] of messages.entries()) {
      if (!['system', 'user', 'assistant'].includes(m.role) || typeof m.content !== 'string') {
        throw new TokenizerError(`message ${i}: needs role system|user|assistant and string content`);
      }
    }
    if (template === 'ml-agent') return renderMlAgent(messages, addGenerationPrompt);
    if (template !== 'hf') throw new TokenizerError(`unknown chat template '${template}' (hf or ml-agent)`);
    if (!this.hfTemplate) throw new TokenizerError('tokenizer_config.json has no chat_template; use template "ml-agent"');
    return this.hfTemplate.render({
      messages,
      add_generation_prompt: addGenerationPrompt,
      bos_token: '',
      eos_token: '<|im_end|>',
    });
  }

  private requireId(token: string): number {
    const id = this.tokenizer.token_to_id(token);
    if (id === undefined) throw new TokenizerError(`tokenizer has no token ${token}`);
    return id;
  }
}

function renderMlAgent(messages: ChatMessage[], addGenerationPrompt: boolean): string {
  const all = messages[0]?.role === 'system' ? messages : [{ role: 'system' as const, content: ML_AGENT_SYSTEM_PROMPT }, ...messages];
  let out = '';
  for (const m of all) out += `<|im_start|>${m.role}\n${m.content}<|endoftext|>\n`;
  if (addGenerationPrompt) out += '<|im_start|>assistant\n';
  return out;
}
