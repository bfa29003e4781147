// A tiny random Qwen2 written to a temp dir and loaded on this machine's adapter (lavapipe in CI), for the tests
// that sample from a real model.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Gpu } from '@mlagent/core-kernels';
import { QwenModel, QwenTokenizer, initModel } from '@mlagent/policy';

export interface TinyModel {
  dir: string;
  gpu: Gpu;
  model: QwenModel;
  tokenizer: QwenTokenizer;
  /** Disposes the model, destroys the device and removes the dir. */
  close(): void;
}

export async function tinyModel(prefix: string): Promise<TinyModel> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  initModel({ arch: 'qwen2', preset: 'tiny', outDir: dir, seed: 0 });
  const gpu = await Gpu.create();
  const model = await QwenModel.load(gpu, dir);
  return {
    dir,
    gpu,
    model,
    tokenizer: QwenTokenizer.fromDir(dir),
    close() {
      model.dispose();
      gpu.destroy();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
