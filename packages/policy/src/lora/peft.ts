import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { convertCheckpointData, type CheckpointDType } from '@mlagent/core-kernels';
import { requireJsonObject } from '../config.js';
import { makeDirs } from '../init-model.js';
import type { QwenModel } from '../model.js';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../safetensors.js';
import { LoraAdapter } from './adapter.js';
import { LORA_MODULES, LoraError, moduleShape, peftTensorName, type LoraModule } from './config.js';

export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';

export interface SaveAdapterOptions {
  /** Written as base_model_name_or_path (the base model's hub id or directory). Default ''. */
  baseModel?: string;
}

/** PEFT's adapter_config.json for a LoRA adapter on a causal LM. */
export function peftConfig(adapter: LoraAdapter, baseModel = ''): Record<string, unknown> {
  const c = adapter.config;
  return {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: baseModel,
    r: c.r,
    lora_alpha: c.alpha,
    lora_dropout: c.dropout,
    target_modules: [...c.targetModules],
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    use_rslora: false,
    use_dora: false,
    modules_to_save: null,
    layers_to_transform: null,
    layers_pattern: null,
    rank_pattern: {},
    alpha_pattern: {},
    revision: null,
  };
}

/**
 * Saves an adapter in PEFT's format: `adapter_config.json` and `adapter_model.safetensors` (f32, PEFT tensor
 * names `base_model.model.model.layers.{i}.{self_attn|mlp}.{module}.lora_{A|B}.weight`), loadable by HF PEFT
 * and vLLM.
 */
export async function saveAdapter(adapter: LoraAdapter, dir: string, opts: SaveAdapterOptions = {}): Promise<void> {
  adapter.assertLive('save');
  makeDirs(dir);
  const names = adapter.paramNames();
  const params = adapter.params();
  const tensors: Record<string, TensorToWrite> = {};
  for (let i = 0; i < params.length; i++) {
    tensors[names[i]] = { dtype: 'F32', shape: [...params[i].shape], data: (await params[i].read()) as Float32Array };
  }
  const configText = JSON.stringify(peftConfig(adapter, opts.baseModel ?? ''), null, 2) + '\n';
  // Over an existing adapter, a save stopped part way (killed, disk full) must not leave the old config with the
  // new weights (same shapes, another alpha would load silently): the old config goes first, so until the new
  // one is renamed into place the directory is no adapter at all. Each file appears whole (write, then rename).
  const configPath = join(dir, ADAPTER_CONFIG);
  rmSync(configPath, { force: true });
  writeSafetensors(join(dir, ADAPTER_WEIGHTS), tensors, { format: 'pt' });
  writeFileSync(`${configPath}.partial`, configText);
  renameSync(`${configPath}.partial`, configPath);
}

const peftModuleNames = new Map<string, LoraModule>(LORA_MODULES.map((m) => [m, m]));

/** Reads and checks a PEFT adapter_config.json; returns our LoRA config. Unsupported PEFT features are errors. */
export function readPeftConfig(dir: string): { r: number; alpha: number; dropout: number; targetModules: LoraModule[]; baseModel: string } {
  const path = join(dir, ADAPTER_CONFIG);
  if (!existsSync(path)) throw new LoraError(`${dir}: no ${ADAPTER_CONFIG} (not a PEFT adapter directory)`);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new LoraError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  requireJsonObject(raw, path, LoraError);
  const fail = (msg: string): never => {
    throw new LoraError(`${path}: ${msg}`);
  };
  // JSON.stringify prints Infinity (Python's json writes 1e999 for it) and NaN as null.
  const show = (v: unknown): string => (typeof v === 'number' ? String(v) : JSON.stringify(v));
  if (raw.peft_type !== 'LORA') fail(`peft_type is ${JSON.stringify(raw.peft_type)}; only LORA adapters load`);
  if (raw.task_type !== undefined && raw.task_type !== null && raw.task_type !== 'CAUSAL_LM') fail(`task_type ${JSON.stringify(raw.task_type)} is not CAUSAL_LM`);
  const r = raw.r;
  if (typeof r !== 'number' || !Number.isInteger(r) || r <= 0) fail(`r must be a positive integer, got ${show(r)}`);
  const alpha = raw.lora_alpha;
  if (typeof alpha !== 'number' || !(alpha > 0 && alpha < Infinity)) fail(`lora_alpha must be a positive number, got ${show(alpha)}`);
  const dropout = raw.lora_dropout ?? 0;
  if (typeof dropout !== 'number' || !(dropout >= 0 && dropout < 1)) fail(`lora_dropout must be in [0, 1), got ${show(dropout)}`);
  for (const key of ['use_dora', 'use_rslora', 'fan_in_fan_out']) {
    if (raw[key]) fail(`${key} is set; only plain LoRA (W + alpha/r·B·A) is supported`);
  }
  if (raw.bias !== undefined && raw.bias !== 'none') fail(`bias ${JSON.stringify(raw.bias)} is not supported (only 'none')`);
  // Python truthiness, as PEFT tests these options: null, false, 0, '', [] and {} are off.
  const isOn = (v: unknown): boolean =>
    v !== undefined && v !== null && v !== false && v !== '' && v !== 0 && !(typeof v === 'object' && Object.keys(v).length === 0);
  for (const key of ['rank_pattern', 'alpha_pattern']) {
    if (isOn(raw[key])) fail(`${key} is not supported (one r and alpha for all modules)`);
  }
  // PEFT features that change which weights the adapter touches or what it computes: activated LoRA applies the
  // update only after its invocation tokens, QALoRA pools the input, trainable tokens add embedding deltas.
  for (const key of ['exclude_modules', 'lora_bias', 'layer_replication', 'target_parameters', 'alora_invocation_tokens', 'use_qalora', 'trainable_token_indices']) {
    const v = raw[key];
    if (isOn(v)) fail(`${key} ${JSON.stringify(v)} is not supported`);
  }
  // These initialisations rewrite the base weights (a residual of an SVD, a quantisation): the adapter fits only
  // that modified base, not the original model it would be loaded onto here.
  const init = raw.init_lora_weights;
  if (typeof init === 'string' && /^(pissa|olora|loftq|corda)/i.test(init)) {
    fail(
      `init_lora_weights ${JSON.stringify(init)} changed the base weights, so the adapter does not fit the original base ` +
        `(PEFT converts PiSSA/OLoRA/CorDA adapters to plain LoRA when saved with path_initial_model_for_weight_conversion)`,
    );
  }
  for (const key of ['layers_to_transform', 'modules_to_save']) {
    const v = raw[key];
    if (v !== undefined && v !== null && !(Array.isArray(v) && v.length === 0)) fail(`${key} is not supported`);
  }
  let targets = raw.target_modules;
  if (targets === 'all-linear') targets = [...LORA_MODULES];
  if (typeof targets === 'string') {
    fail(`target_modules ${JSON.stringify(targets)} is a regular expression; only a list of module names (${LORA_MODULES.join(', ')}) or 'all-linear' is supported`);
  }
  if (!Array.isArray(targets) || targets.length === 0) fail(`target_modules must be a list of module names (${LORA_MODULES.join(', ')})`);
  const targetModules = (targets as unknown[]).map((t) => {
    const m = typeof t === 'string' ? peftModuleNames.get(t) : undefined;
    if (!m) return fail(`target module ${JSON.stringify(t)} is not one of ${LORA_MODULES.join(', ')}`);
    return m;
  });
  const baseModel = typeof raw.base_model_name_or_path === 'string' ? raw.base_model_name_or_path : '';
  return { r: r as number, alpha: alpha as number, dropout: dropout as number, targetModules, baseModel };
}

const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16']);

/**
 * Loads a PEFT LoRA adapter onto `model`. Every expected tensor must be present with PEFT's name and its shape
 * for this model; all problems (missing, unexpected, wrong shape or dtype) are reported together.
 */
export function loadAdapter(model: QwenModel, dir: string): LoraAdapter {
  const cfg = readPeftConfig(dir);
  const path = join(dir, ADAPTER_WEIGHTS);
  if (!existsSync(path)) throw new LoraError(`${dir}: no ${ADAPTER_WEIGHTS}`);
  const f = SafetensorsFile.open(path);
  try {
    const expected = new Map<string, number[]>();
    for (let l = 0; l < model.config.numLayers; l++) {
      for (const m of cfg.targetModules) {
        const [outF, inF] = moduleShape(model.config, m);
        expected.set(peftTensorName(l, m, 'A'), [cfg.r, inF]);
        expected.set(peftTensorName(l, m, 'B'), [outF, cfg.r]);
      }
    }
    const problems: string[] = [];
    for (const [name, shape] of expected) {
      const info = f.tensors.get(name);
      if (!info) problems.push(`missing tensor '${name}' [${shape}]`);
      else if (info.shape.join() !== shape.join()) problems.push(`tensor '${name}' has shape [${info.shape}], expected [${shape}] (r=${cfg.r})`);
      else if (!FLOAT_DTYPES.has(info.dtype)) problems.push(`tensor '${name}' has dtype ${info.dtype}; F32, F16 or BF16 expected`);
    }
    for (const name of f.tensors.keys()) if (!expected.has(name)) problems.push(`unexpected tensor '${name}'`);
    if (problems.length > 0) {
      const shown = problems.slice(0, 20).join('\n  ');
      const more = problems.length > 20 ? `\n  ... and ${problems.length - 20} more` : '';
      throw new LoraError(`${path}: adapter does not match the model (${model.config.arch}, ${model.config.numLayers} layers):\n  ${shown}${more}`);
    }
    // Tensor by tensor as they are uploaded (build frees what it made if one throws). A NaN or infinity would turn
    // every logprob NaN with no trace of where it came from.
    const read = (name: string): Float32Array => {
      const v = convertCheckpointData(f.read(name), f.tensors.get(name)!.dtype.toLowerCase() as CheckpointDType, 'f32') as Float32Array;
      if (!v.every(Number.isFinite)) throw new LoraError(`${path}: tensor '${name}' holds NaN or infinite values`);
      return v;
    };
    return LoraAdapter.build(model, cfg, (l, m) => ({ A: read(peftTensorName(l, m, 'A')), B: read(peftTensorName(l, m, 'B')) }));
  } finally {
    f.close();
  }
}
