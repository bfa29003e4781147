import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import { jsonKind, requireJsonObject } from './config.js';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/**
 * Chat templates by name:
 * - 'hf': the model's own chat template, rendered as HF's apply_chat_template does: `chat_template.jinja` where
 *   the directory has one (transformers >= 4.47 saves it there, and reads it before tokenizer_config.json), else
 *   `chat_template` in tokenizer_config.json;
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
  /** Compiled on first use, so a template the Jinja port cannot parse breaks only chat rendering. */
  private hfTemplate: Template | undefined;
  readonly eosTokenId: number;
  readonly padTokenId: number;
  /** <|endoftext|>: the end of a turn in the ML-Agent template and the pad token. */
  readonly endOfTextId: number;
  readonly imEndId: number;

  private constructor(
    private readonly tokenizer: Tokenizer,
    readonly config: Record<string, unknown>,
    /** Highest token id + 1, added tokens included: the model's vocab_size must be at least this. */
    readonly size: number,
    /** The tokenizer.json and tokenizer_config.json it was read from, for messages. */
    readonly files: { tokenizer: string; config: string } = { tokenizer: 'tokenizer.json', config: 'tokenizer_config.json' },
    /** A chat_template.jinja beside them: its path and text, used instead of the config's chat_template. */
    private readonly templateFile?: { path: string; text: string },
  ) {
    this.endOfTextId = this.requireId('<|endoftext|>', 'the end of plain text and the default pad token');
    this.imEndId = this.requireId('<|im_end|>', 'the end of a ChatML turn');
    this.eosTokenId = this.configToken('eos_token') ?? this.imEndId;
    this.padTokenId = this.configToken('pad_token') ?? this.endOfTextId;
  }

  static fromDir(dir: string): QwenTokenizer {
    const tj = join(dir, 'tokenizer.json');
    const tc = join(dir, 'tokenizer_config.json');
    for (const p of [tj, tc]) if (!existsSync(p)) throw new TokenizerError(`${p} not found`);
    const readJson = (p: string): unknown => {
      try {
        return JSON.parse(readFileSync(p, 'utf8'));
      } catch (e) {
        throw new TokenizerError(`${p}: not valid JSON (${(e as Error).message})`);
      }
    };
    const json = readJson(tj);
    const config = readJson(tc);
    requireJsonObject(config, tc, TokenizerError);
    let tokenizer: Tokenizer;
    try {
      tokenizer = new Tokenizer(json as object, config);
    } catch (e) {
      // Valid JSON that is not a tokenizer (e.g. {}): the library's own message, but naming the file.
      throw new TokenizerError(`${tj}: not a Hugging Face tokenizer (${(e as Error).message})`);
    }
    const jinja = join(dir, 'chat_template.jinja');
    const templateFile = existsSync(jinja) ? { path: jinja, text: readTemplateFile(jinja) } : undefined;
    return new QwenTokenizer(tokenizer, config, tokenizerSize(json as TokenizerJson), { tokenizer: tj, config: tc }, templateFile);
  }

  /**
   * Checks this tokenizer against a model's vocab_size (from `configPath`): ids the model has no row for are an
   * error. A tokenizer under half the model's size is most likely another model's (its samples then mostly
   * decode to nothing), so that is returned as a warning. Qwen pads its vocabulary (151665 tokens, vocab_size
   * 151936): no warning.
   */
  checkModelVocab(vocabSize: number, configPath = 'config.json'): string | undefined {
    // NaN (or undefined) compares false both ways: it used to pass as a match with no warning.
    if (!Number.isInteger(vocabSize) || vocabSize <= 0) throw new TokenizerError(`checkModelVocab: vocabSize must be a positive integer (${configPath}'s vocab_size), got ${describe(vocabSize)}`);
    if (this.size > vocabSize) {
      throw new TokenizerError(
        `${this.files.tokenizer} has ${this.size} tokens (ids 0..${this.size - 1}) but ${configPath} has vocab_size ${vocabSize}: ` +
          'the tokenizer does not belong to this model',
      );
    }
    if (this.size < vocabSize / 2) {
      return `${this.files.tokenizer} has only ${this.size} tokens but ${configPath} has vocab_size ${vocabSize}: ` +
        'the tokenizer may belong to another model (ids it lacks decode to nothing)';
    }
    return undefined;
  }

  /** Token ids of `text`. Special tokens written in the text (e.g. <|im_start|>) map to their ids. */
  encode(text: string, { addSpecialTokens = false } = {}): number[] {
    // The underlying tokenizer returns [] for a number and throws a bare TypeError for undefined.
    if (typeof text !== 'string') throw new TokenizerError(`encode: text must be a string, got ${describe(text)}`);
    return this.tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  /**
   * Text of token ids. Ids at or past `size` (the rows a model pads its vocabulary with) decode to nothing, as in
   * HF; a negative or non-integer id is an error (-1 is what sampling gives a row with NaN logits).
   */
  decode(ids: number[], { skipSpecialTokens = false } = {}): string {
    if (!Array.isArray(ids)) throw new TokenizerError(`decode: ids must be an array of token ids, got ${describe(ids)}${ArrayBuffer.isView(ids) ? ' (use Array.from)' : ''}`);
    // The underlying tokenizer throws on an empty list; no tokens are no text (a reply that is only a stop token).
    if (ids.length === 0) return '';
    for (let i = 0; i < ids.length; i++) {
      // Its own error says "must be a non-empty array of integers" for [1.5], and a negative id decodes to nothing.
      if (!Number.isInteger(ids[i]) || ids[i] < 0) throw new TokenizerError(`decode: ids[${i}] is ${describe(ids[i])}, not a token id (an integer >= 0)`);
    }
    return this.tokenizer.decode(ids, { skip_special_tokens: skipSpecialTokens });
  }

  tokenId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }

  /** Renders a conversation; with `addGenerationPrompt` it ends with an open assistant turn. */
  applyChatTemplate(messages: ChatMessage[], { template = 'hf', addGenerationPrompt = false }: { template?: ChatTemplateName; addGenerationPrompt?: boolean } = {}): string {
    // A non-array or a null message used to fail as a bare TypeError, and the string 'false' added the prompt.
    if (!Array.isArray(messages)) throw new TokenizerError(`messages must be an array of {role, content}, got ${describe(messages)}`);
    if (typeof addGenerationPrompt !== 'boolean') throw new TokenizerError(`addGenerationPrompt must be a boolean, got ${describe(addGenerationPrompt)}`);
    for (const [i, m] of messages.entries()) {
      if (typeof m !== 'object' || m === null || !['system', 'user', 'assistant'].includes(m.role) || typeof m.content !== 'string') {
        throw new TokenizerError(`message ${i}: needs role system|user|assistant and string content`);
      }
    }
    if (template === 'ml-agent') return renderMlAgent(messages, addGenerationPrompt);
    if (template !== 'hf') throw new TokenizerError(`unknown chat template '${template}' (hf or ml-agent)`);
    const compiled = this.compileTemplate();
    try {
      return compiled.render({
        messages,
        add_generation_prompt: addGenerationPrompt,
        bos_token: '',
        eos_token: '<|im_end|>',
      });
    } catch (e) {
      throw new TokenizerError(`${this.templateFile?.path ?? this.files.config}: chat_template failed on these messages (${(e as Error).message}); use template "ml-agent" (--template ml-agent)`);
    }
  }

  private compileTemplate(): Template {
    if (this.hfTemplate) return this.hfTemplate;
    const where = this.templateFile?.path ?? this.files.config;
    const useMlAgent = 'use template "ml-agent" (--template ml-agent)';
    let tpl = this.templateFile ? this.templateFile.text : this.config.chat_template;
    if (tpl === undefined || tpl === null) throw new TokenizerError(`${where} has no chat_template; ${useMlAgent}`);
    // HF's list form of named templates: apply_chat_template without tools uses the one named 'default'.
    if (Array.isArray(tpl)) {
      const named = tpl.filter((t): t is { name: unknown; template: unknown } => typeof t === 'object' && t !== null);
      const def = named.find((t) => t.name === 'default');
      if (!def || typeof def.template !== 'string') {
        const names = named.map((t) => JSON.stringify(t.name)).join(', ');
        throw new TokenizerError(`${where}: chat_template is a list of named templates (${names}) with no string template named "default"; ${useMlAgent}`);
      }
      tpl = def.template;
    }
    if (typeof tpl !== 'string') throw new TokenizerError(`${where}: chat_template must be a string or a list of {name, template}, got ${jsonKind(tpl)}; ${useMlAgent}`);
    try {
      this.hfTemplate = new Template(tpl);
    } catch (e) {
      throw new TokenizerError(`${where}: chat_template does not parse (${(e as Error).message}); ${useMlAgent}`);
    }
    return this.hfTemplate;
  }

  /** The id of tokenizer_config.json's `key` token (a string or HF's {content} form), if it names one. */
  private configToken(key: string): number | undefined {
    const v = this.config[key];
    const token = typeof v === 'string' ? v : typeof v === 'object' && v !== null && typeof (v as { content?: unknown }).content === 'string' ? (v as { content: string }).content : undefined;
    if (token === undefined) return undefined;
    const id = this.tokenizer.token_to_id(token);
    if (id === undefined) throw new TokenizerError(`${this.files.config}: ${key} ${JSON.stringify(token)} is not a token of ${this.files.tokenizer}`);
    return id;
  }

  private requireId(token: string, role: string): number {
    const id = this.tokenizer.token_to_id(token);
    if (id === undefined) throw new TokenizerError(`${this.files.tokenizer} has no token ${token} (${role}); is this a Qwen tokenizer?`);
    return id;
  }
}

/** A value for a message: its type, and the value itself when short. */
function describe(v: unknown): string {
  if (v === null || v === undefined) return String(v);
  if (typeof v === 'object') return Array.isArray(v) ? 'an array' : (v.constructor?.name ?? 'an object');
  const text = typeof v === 'string' ? JSON.stringify(v) : String(v);
  return `${typeof v} ${text.length > 40 ? `${text.slice(0, 40)}...` : text}`;
}

function readTemplateFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    // A directory or an unreadable file by that name: named now, not at the first chat render.
    throw new TokenizerError(`${path}: cannot read the chat template (${(e as Error).message})`);
  }
}

interface TokenizerJson {
  model?: { vocab?: unknown };
  added_tokens?: unknown;
}

/** Highest id + 1 over the model's vocabulary (BPE/WordPiece map, or Unigram list) and the added tokens. */
function tokenizerSize(json: TokenizerJson): number {
  let max = -1;
  const vocab = json.model?.vocab;
  if (Array.isArray(vocab)) max = vocab.length - 1;
  else if (vocab && typeof vocab === 'object') for (const id of Object.values(vocab)) if (typeof id === 'number' && id > max) max = id;
  if (Array.isArray(json.added_tokens)) for (const t of json.added_tokens) if (typeof t?.id === 'number' && t.id > max) max = t.id;
  return max + 1;
}

function renderMlAgent(messages: ChatMessage[], addGenerationPrompt: boolean): string {
  const all = messages[0]?.role === 'system' ? messages : [{ role: 'system' as const, content: ML_AGENT_SYSTEM_PROMPT }, ...messages];
  let out = '';
  for (const m of all) out += `<|im_start|>${m.role}\n${m.content}<|endoftext|>\n`;
  if (addGenerationPrompt) out += '<|im_start|>assistant\n';
  return out;
}
