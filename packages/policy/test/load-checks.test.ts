// QwenModel.load on a config.json that disagrees with its checkpoint: found before anything is uploaded (audit).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Gpu } from '@mlagent/core-kernels';
import { CheckpointError, QwenModel, initModel } from '../src/index.js';

let gpu: Gpu;
const dirs: string[] = [];

beforeAll(async () => {
  gpu = await Gpu.create();
}, 120_000);

afterAll(() => {
  gpu?.destroy();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A tiny qwen3 (tied embeddings, a 50-merge vocabulary) whose config.json is then patched. */
function patched(patch: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'mlagent-load-'));
  dirs.push(dir);
  initModel({ arch: 'qwen3', preset: 'tiny', outDir: dir, seed: 2, vocabMerges: 50 });
  const path = join(dir, 'config.json');
  writeFileSync(path, JSON.stringify({ ...JSON.parse(readFileSync(path, 'utf8')), ...patch }));
  return dir;
}

describe('QwenModel.load: config.json against the checkpoint', () => {
  it('a num_hidden_layers beyond the stored layers fails at once, naming both counts', async () => {
    const dir = patched({ num_hidden_layers: 3_000_000 });
    const t0 = performance.now();
    await expect(QwenModel.load(gpu, dir)).rejects.toThrow(CheckpointError);
    await expect(QwenModel.load(gpu, dir)).rejects.toThrow(`${dir}: config.json says num_hidden_layers 3000000 but the checkpoint has layers 0..1`);
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  it('a tied checkpoint read as untied hints at tie_word_embeddings', async () => {
    const dir = patched({ tie_word_embeddings: false });
    await expect(QwenModel.load(gpu, dir)).rejects.toThrow(
      /missing tensor 'lm_head\.weight' \(expected shape \[\d+, 64\]\); the checkpoint looks tied \(embed_tokens and no lm_head\): set "tie_word_embeddings": true in config\.json/,
    );
  });
});
