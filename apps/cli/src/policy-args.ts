import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Gpu } from '@mlagent/core-kernels';
import {
  Checkpoint,
  ConfigError,
  NonFiniteError,
  QwenModel,
  QwenTokenizer,
  loadAdapter,
  loadQwenConfig,
  nonFiniteTensors,
  readPeftConfig,
  type ChatMessage,
  type ChatTemplateName,
  type LoraAdapter,
} from '@mlagent/policy';
import { UsageError } from './args.js';

/** The options every model-using command takes (generate, logprobs, serve). */
export const MODEL_OPTIONS = {
  model: { type: 'string' },
  adapter: { type: 'string' },
  dtype: { type: 'string', default: 'f32' },
} as const;

export const MODEL_USAGE = `  --model DIR is a Hugging Face model directory (config.json, safetensors, tokenizer files); --adapter DIR a PEFT
  LoRA adapter (adapter_config.json + adapter_model.safetensors) applied on top; --dtype f32|f16 the dtype of the
  weights on the GPU (default f32).`;

export interface LoadedPolicy {
  gpu: Gpu;
  model: QwenModel;
  tokenizer: QwenTokenizer;
  /** Frees the model and the device. */
  close(): void;
}

/** Checks --model/--adapter/--dtype before anything is loaded, so bad arguments fail fast. */
export function checkModelArgs(command: string, values: { model?: string; adapter?: string; dtype?: string }, usage: string): void {
  if (!values.model) throw new UsageError(`${command}: --model DIR is required\n${usage}`);
  checkModelDir(command, values.model);
  if (values.dtype !== 'f32' && values.dtype !== 'f16') throw new UsageError(`${command}: --dtype must be f32 or f16, got '${values.dtype}'`);
  if (values.adapter !== undefined && !existsSync(join(values.adapter, 'adapter_config.json'))) {
    throw new UsageError(`${command}: --adapter ${values.adapter} has no adapter_config.json (not a PEFT adapter directory)`);
  }
}

/**
 * Checks that `dir` looks like a Hugging Face model directory we can load: a config.json of a supported
 * architecture, the tokenizer files and the weights. Cheap (no weights read), so commands fail before other work.
 */
export function checkModelDir(command: string, dir: string, flag = '--model'): void {
  if (!existsSync(join(dir, 'config.json'))) throw new UsageError(`${command}: ${flag} ${dir} has no config.json`);
  try {
    loadQwenConfig(dir);
  } catch (e) {
    if (e instanceof ConfigError) throw new UsageError(`${command}: ${flag} ${dir}: ${e.message}`);
    throw e;
  }
  const missing = ['tokenizer.json', 'tokenizer_config.json'].filter((f) => !existsSync(join(dir, f)));
  if (missing.length) throw new UsageError(`${command}: ${flag} ${dir} has no ${missing.join(' or ')} (the tokenizer files belong beside config.json)`);
  if (!existsSync(join(dir, 'model.safetensors')) && !existsSync(join(dir, 'model.safetensors.index.json'))) {
    throw new UsageError(`${command}: ${flag} ${dir} has no model.safetensors or model.safetensors.index.json`);
  }
}

/**
 * The tokenizer of model directory `dir`, checked against its config.json's vocab_size: a larger tokenizer is an
 * error (TokenizerError), a much smaller one a warning on stderr.
 */
export function loadTokenizer(command: string, dir: string): QwenTokenizer {
  const tokenizer = QwenTokenizer.fromDir(dir);
  const warning = tokenizer.checkModelVocab(loadQwenConfig(dir).vocabSize, join(dir, 'config.json'));
  if (warning) process.stderr.write(`${command}: warning: ${warning}\n`);
  return tokenizer;
}

/**
 * Loads the tokenizer (unless given: one from loadTokenizer, already checked against config.json), the
 * model and the PEFT adapter if given (applied by every forward), reporting on stderr.
 */
export async function loadPolicy(
  command: string,
  values: { model?: string; adapter?: string; dtype?: string },
  // Errors in the directory itself (tokenizer, checkpoint, memory plan) reach main's exit-2 handling as they are.
  tokenizer = loadTokenizer(command, values.model!),
): Promise<LoadedPolicy> {
  const dir = values.model!;
  const gpu = await Gpu.create();
  const t0 = performance.now();
  let model: QwenModel | undefined;
  let adapter: LoraAdapter | undefined;
  try {
    model = await QwenModel.load(gpu, dir, { dtype: values.dtype as 'f32' | 'f16' });
    if (values.adapter !== undefined) model.adapter = adapter = readAdapter(command, model, values.adapter);
  } catch (e) {
    model?.dispose();
    gpu.destroy();
    throw e;
  }
  const c = model.config;
  const lora = adapter ? ` with ${describeAdapter(adapter, values.adapter!)}` : '';
  process.stderr.write(`loaded ${c.arch} (${c.numLayers} layers, hidden ${c.hiddenSize}, ${values.dtype}) from ${dir}${lora} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  return {
    gpu,
    model,
    tokenizer,
    close: () => {
      adapter?.dispose();
      model.dispose();
      gpu.destroy();
    },
  };
}

/** Loads a PEFT adapter for `model` (not attached), a bad one being a usage error naming its --adapter DIR. */
export function readAdapter(command: string, model: QwenModel, dir: string): LoraAdapter {
  try {
    return loadAdapter(model, dir);
  } catch (e) {
    throw new UsageError(`${command}: --adapter ${dir}: ${(e as Error).message}`);
  }
}

/** "LoRA r=8 from DIR (trained on BASE)": the recorded base lets a user see an adapter made for another model. */
export function describeAdapter(adapter: LoraAdapter, dir: string): string {
  const base = readPeftConfig(dir).baseModel;
  return `LoRA r=${adapter.config.r} from ${dir}${base ? ` (trained on ${base})` : ''}`;
}

/**
 * A NonFiniteError of a pass over the --model weights, with its cause: the checkpoint's tensors are scanned for
 * NaN/Inf only now, on this failure, so that loading never pays for the scan.
 */
export function explainNonFinite(values: { model?: string; adapter?: string; dtype?: string }, e: NonFiniteError): NonFiniteError {
  const dir = values.model!;
  const ck = Checkpoint.open(dir);
  let bad: string[];
  try {
    bad = nonFiniteTensors(ck);
  } finally {
    ck.close();
  }
  const names = bad.slice(0, 3).map((n) => `'${n}'`).join(', ') + (bad.length > 3 ? ` and ${bad.length - 3} more` : '');
  const why = bad.length > 0
    ? `the weights in ${dir} hold NaN or Inf values (${names})`
    : `the weights in ${dir} are finite, so ${values.adapter !== undefined ? `the adapter ${values.adapter} holds NaN/Inf or ` : ''}the ${values.dtype} arithmetic overflowed`;
  return new NonFiniteError(e.what, { why });
}

/** Reads a --chat FILE.json: a JSON list of {role, content} messages. */
export function readChatFile(command: string, path: string): ChatMessage[] {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new UsageError(`${command}: --chat ${path}: ${(e as Error).message}`);
  }
  if (!Array.isArray(raw) || raw.length === 0) throw new UsageError(`${command}: --chat ${path} must hold a non-empty JSON list of {role, content}`);
  raw.forEach((m: unknown, i) => {
    const ok = typeof m === 'object' && m !== null && ['system', 'user', 'assistant'].includes((m as ChatMessage).role) && typeof (m as ChatMessage).content === 'string';
    if (!ok) throw new UsageError(`${command}: --chat ${path}: message ${i} needs role system|user|assistant and string content, got ${JSON.stringify(m)}`);
  });
  return raw as ChatMessage[];
}

export function parseTemplate(command: string, value: string | undefined): ChatTemplateName {
  if (value !== 'hf' && value !== 'ml-agent') throw new UsageError(`${command}: --template must be hf or ml-agent, got '${value}'`);
  return value;
}

/** A number option in [min, max]; `integer` ones must be integers. */
export function numberArg(command: string, name: string, value: string | undefined, { min = 0, max = Number.MAX_SAFE_INTEGER, integer = false } = {}): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
    throw new UsageError(`${command}: --${name} must be ${integer ? 'an integer' : 'a number'} in [${min}, ${max}], got '${value}'`);
  }
  return n;
}
