import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SeededRng } from '@mlagent/core-kernels';
import { expectedShapes, initModel, loadQwenConfig, writeSafetensors, type ModelPreset, type QwenArch, type TensorToWrite } from '../src/index.js';

/** Round-to-nearest-even f32 → bf16 bits. */
export function toBf16Bits(x: Float32Array): Uint16Array {
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = ((u[i] + 0x7fff + ((u[i] >>> 16) & 1)) >>> 16) & 0xffff;
  return out;
}

/**
 * A tiny model from initModel, with its weights rewritten at scales where every part of the network matters
 * (HF's init at std 0.02 leaves attention nearly uniform and the layers small next to the residual):
 * matrices ~ N(0, 1/in), norm weights ~ 1 + 0.2·N(0, 1), biases ~ 0.2·N(0, 1).
 * `vocabSize` shrinks the vocabulary (the LM head over Qwen's 152k rows dominates training tests on lavapipe).
 */
export function writeModel(arch: QwenArch, seed: number, dtype: 'F32' | 'BF16' = 'F32', opts: { vocabSize?: number; preset?: ModelPreset } = {}): string {
  const dir = mkdtempSync(join(tmpdir(), `mlagent-model-${arch}-`));
  initModel({ arch, preset: opts.preset ?? 'tiny', outDir: dir, seed });
  if (opts.vocabSize) {
    const raw = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...raw, vocab_size: opts.vocabSize }, null, 2));
  }
  const cfg = loadQwenConfig(dir);
  const rng = new SeededRng(seed + 1000);
  const tensors: Record<string, TensorToWrite> = {};
  for (const [name, shape] of expectedShapes(cfg)) {
    const n = shape.reduce((a, b) => a * b, 1);
    tensors[name] = {
      dtype,
      shape,
      data: () => {
        const v = new Float32Array(n);
        if (name.endsWith('norm.weight')) for (let i = 0; i < n; i++) v[i] = 1 + 0.2 * rng.normal();
        else if (name.endsWith('.bias')) rng.fillNormal(v, 0.2);
        else rng.fillNormal(v, 1 / Math.sqrt(shape[1]));
        return dtype === 'F32' ? v : toBf16Bits(v);
      },
    };
  }
  writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  return dir;
}

/** Overwrites every value of F32 tensor `name` in `dir`/model.safetensors with `value` (e.g. NaN weights). */
export function fillTensor(dir: string, name: string, value: number): void {
  const file = join(dir, 'model.safetensors');
  const buf = readFileSync(file);
  const headerLen = Number(buf.readBigUInt64LE(0));
  const entry = (JSON.parse(buf.subarray(8, 8 + headerLen).toString()) as Record<string, { dtype: string; data_offsets: [number, number] }>)[name];
  if (entry?.dtype !== 'F32') throw new Error(`fillTensor: ${name} is not an F32 tensor of ${file}`);
  for (let o = 8 + headerLen + entry.data_offsets[0]; o < 8 + headerLen + entry.data_offsets[1]; o += 4) buf.writeFloatLE(value, o);
  writeFileSync(file, buf);
}
