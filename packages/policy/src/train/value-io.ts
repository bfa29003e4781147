import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { convertCheckpointData, type CheckpointDType } from '@mlagent/core-kernels';
import type { QwenModel } from '../model.js';
import { ADAPTER_WEIGHTS, loadAdapter, saveAdapter, type SaveAdapterOptions } from '../lora/peft.js';
import { LoraError } from '../lora/config.js';
import { SafetensorsFile, writeSafetensors } from '../safetensors.js';
import { ValueHead } from './value.js';

/** Our file for the critic's scalar head, next to its PEFT adapter files: v_head.weight [1, H], v_head.bias [1]. */
export const VALUE_HEAD_FILE = 'value_head.safetensors';

/** Metadata key of value_head.safetensors: the SHA-256 of the adapter_model.safetensors saved with it. */
const ADAPTER_HASH_KEY = 'adapter_sha256';

function adapterHash(dir: string): string {
  return createHash('sha256').update(readFileSync(join(dir, ADAPTER_WEIGHTS))).digest('hex');
}

/** Saves a critic: its LoRA adapter in PEFT format plus `value_head.safetensors`. */
export async function saveValueHead(head: ValueHead, dir: string, opts: SaveAdapterOptions = {}): Promise<void> {
  // The head is read before anything is written, and an old head is removed before the new adapter lands: a save
  // that fails or is killed part way must not leave the new adapter with the old head (it would load silently).
  const [w, b] = await Promise.all([head.weight.read(), head.bias.read()]);
  rmSync(join(dir, VALUE_HEAD_FILE), { force: true });
  await saveAdapter(head.adapter, dir, opts);
  writeSafetensors(
    join(dir, VALUE_HEAD_FILE),
    {
      'v_head.weight': { dtype: 'F32', shape: [...head.weight.shape], data: w as Float32Array },
      'v_head.bias': { dtype: 'F32', shape: [1], data: b as Float32Array },
    },
    // Ties the head to these adapter weights, so a head left next to another adapter (an adapter saved over a
    // critic's directory) is refused on load rather than paired with it.
    { format: 'mlagent-value-head', [ADAPTER_HASH_KEY]: adapterHash(dir) },
  );
}

/** Loads what `saveValueHead` wrote, checking names and shapes against the model. */
export function loadValueHead(model: QwenModel, dir: string): ValueHead {
  const path = join(dir, VALUE_HEAD_FILE);
  if (!existsSync(path)) throw new LoraError(`${dir}: no ${VALUE_HEAD_FILE} (not a saved value head)`);
  const H = model.config.hiddenSize;
  const f = SafetensorsFile.open(path);
  let values: { w: Float32Array; b: Float32Array };
  try {
    const get = (name: string, shape: number[]): Float32Array => {
      const info = f.tensors.get(name);
      if (!info) throw new LoraError(`${path}: missing tensor '${name}'`);
      if (info.shape.join() !== shape.join()) throw new LoraError(`${path}: tensor '${name}' has shape [${info.shape}], expected [${shape}]`);
      if (info.dtype !== 'F32' && info.dtype !== 'F16' && info.dtype !== 'BF16') throw new LoraError(`${path}: tensor '${name}' has dtype ${info.dtype}`);
      const v = convertCheckpointData(f.read(name), info.dtype.toLowerCase() as CheckpointDType, 'f32') as Float32Array;
      if (!v.every(Number.isFinite)) throw new LoraError(`${path}: tensor '${name}' holds NaN or infinite values`);
      return v;
    };
    values = { w: get('v_head.weight', [1, H]), b: get('v_head.bias', [1]) };
    for (const name of f.tensors.keys()) if (name !== 'v_head.weight' && name !== 'v_head.bias') throw new LoraError(`${path}: unexpected tensor '${name}'`);
    // Files written before the hash was recorded have none and load as before.
    const saved = f.metadata[ADAPTER_HASH_KEY];
    if (saved !== undefined && existsSync(join(dir, ADAPTER_WEIGHTS)) && saved !== adapterHash(dir)) {
      throw new LoraError(`${path}: was saved with another ${ADAPTER_WEIGHTS} than the one in ${dir} (an adapter saved over this critic, or a save cut short); save the critic again with saveValueHead`);
    }
  } finally {
    f.close();
  }
  const adapter = loadAdapter(model, dir);
  const gpu = model.gpu;
  return new ValueHead(adapter, gpu.keep(gpu.tensor([1, H], 'f32', values.w, 'value head weight')), gpu.keep(gpu.tensor([1], 'f32', values.b, 'value head bias')));
}
