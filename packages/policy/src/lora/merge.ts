import { copyFileSync, existsSync, readdirSync, realpathSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { convertCheckpointData, f32ToF16Bits, type CheckpointDType } from '@mlagent/core-kernels';
import { layerTensorNames } from '../config.js';
import { makeDirs } from '../init-model.js';
import { Checkpoint, writeSafetensors, type TensorToWrite } from '../safetensors.js';
import type { LoraAdapter } from './adapter.js';
import { LoraError, MODULE_WEIGHT } from './config.js';

/** Round-to-nearest-even f32 → bf16 bits. */
function toBf16(x: Float32Array): Uint16Array {
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = ((u[i] + 0x7fff + ((u[i] >>> 16) & 1)) >>> 16) & 0xffff;
  return out;
}

/** The path with every symlink of its existing part resolved, so two spellings of one directory compare equal. */
function canonicalPath(p: string): string {
  const abs = resolve(p);
  if (existsSync(abs)) return realpathSync(abs);
  const parent = dirname(abs);
  return parent === abs ? abs : join(canonicalPath(parent), basename(abs));
}

/**
 * Merges an adapter into its base and writes a full Hugging Face checkpoint to `outDir`: every adapted weight
 * becomes W + (alpha/r)·B·A (summed in float64, stored in the base tensor's dtype), everything else is copied
 * unchanged, and config.json, generation_config.json and the tokenizer files come along. `baseDir` must be the
 * directory the adapter's model was loaded from. Tensors are read and written one at a time.
 */
export async function mergeAdapter(adapter: LoraAdapter, baseDir: string, outDir: string): Promise<void> {
  adapter.assertLive('merge');
  // Through a symlink too: writing model.safetensors there would replace the base's weights.
  if (canonicalPath(baseDir) === canonicalPath(outDir)) throw new LoraError('mergeAdapter: outDir must differ from baseDir (the base would be overwritten)');
  // A loader prefers the index to model.safetensors, so the merged weights written next to it would never load.
  if (existsSync(join(outDir, 'model.safetensors.index.json'))) {
    throw new LoraError(`mergeAdapter: ${outDir} holds a sharded checkpoint (model.safetensors.index.json), which would be loaded instead of the merged weights; merge into an empty directory`);
  }
  const cfg = adapter.model.config;
  const ck = Checkpoint.open(baseDir);
  try {
    // Host copies of A and B per adapted weight name (small: r·(in+out) values each).
    const deltas = new Map<string, { A: Float32Array; B: Float32Array; r: number; inF: number; outF: number }>();
    for (const s of adapter.slots()) {
      const name = layerTensorNames(cfg, s.layer)[MODULE_WEIGHT[s.module]];
      const [outF, inF] = [s.B.shape[0], s.A.shape[1]];
      deltas.set(name, { A: (await s.A.read()) as Float32Array, B: (await s.B.read()) as Float32Array, r: adapter.config.r, inF, outF });
    }
    for (const [name, d] of deltas) {
      if (!ck.has(name)) throw new LoraError(`mergeAdapter: ${baseDir} has no tensor '${name}'`);
      // Another model's base (or a transposed tensor) would be read with the adapter's layout: garbage, silently.
      const { shape, dtype } = ck.info(name);
      if (shape.join() !== [d.outF, d.inF].join()) {
        throw new LoraError(`mergeAdapter: ${baseDir}: tensor '${name}' has shape [${shape}], the adapter's model has [${d.outF},${d.inF}]`);
      }
      if (dtype !== 'F32' && dtype !== 'BF16' && dtype !== 'F16') throw new LoraError(`mergeAdapter: ${baseDir}: tensor '${name}' has dtype ${dtype}; F32, F16 or BF16 expected`);
    }
    const scale = adapter.scale;
    makeDirs(outDir);
    const tensors: Record<string, TensorToWrite> = {};
    for (const name of ck.names()) {
      const info = ck.info(name);
      const d = deltas.get(name);
      tensors[name] = {
        dtype: info.dtype,
        shape: info.shape,
        data: () => {
          if (!d) return ck.read(name);
          const w = convertCheckpointData(ck.read(name), info.dtype.toLowerCase() as CheckpointDType, 'f32') as Float32Array;
          const merged = new Float32Array(w.length);
          const row = new Float64Array(d.inF);
          for (let o = 0; o < d.outF; o++) {
            row.fill(0);
            for (let k = 0; k < d.r; k++) {
              const b = d.B[o * d.r + k] * scale;
              if (b === 0) continue;
              const a = d.A.subarray(k * d.inF, (k + 1) * d.inF);
              for (let i = 0; i < d.inF; i++) row[i] += b * a[i];
            }
            for (let i = 0; i < d.inF; i++) merged[o * d.inF + i] = w[o * d.inF + i] + row[i];
          }
          if (info.dtype === 'F32') return merged;
          return info.dtype === 'BF16' ? toBf16(merged) : Uint16Array.from(merged, f32ToF16Bits);
        },
      };
    }
    writeSafetensors(join(outDir, 'model.safetensors'), tensors, { format: 'pt' });
  } finally {
    ck.close();
  }
  // Config, generation config, tokenizer and chat-template files; not the weights (written above) or their index.
  for (const f of readdirSync(baseDir)) {
    if (f.endsWith('.safetensors') || f === 'model.safetensors.index.json') continue;
    if (/\.(json|txt|model|jinja)$/.test(f) && existsSync(join(baseDir, f))) copyFileSync(join(baseDir, f), join(outDir, f));
  }
}
