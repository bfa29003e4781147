import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Gpu } from '@mlagent/core-kernels';
import { QwenModel, QwenTokenizer, initModel } from '@mlagent/policy';
import { probeFormat, spreadStates } from '../src/sft/format-probe.js';

let gpu: Gpu;
let model: QwenModel;
let tokenizer: QwenTokenizer;

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rl-probe-'));
  initModel({ arch: 'qwen2', preset: 'tiny', outDir: dir, seed: 0, vocabMerges: 200 });
  gpu = await Gpu.create();
  model = await QwenModel.load(gpu, dir);
  tokenizer = QwenTokenizer.fromDir(dir);
}, 120_000);

afterAll(() => {
  model?.dispose();
  gpu?.destroy();
});

const states = [
  { task: 'a', messages: [{ role: 'user' as const, content: 'Research Problem: predict y. Begin with step 1.' }] },
  { task: 'b', messages: [{ role: 'user' as const, content: 'Observation: the script printed 0.5' }] },
];

describe('probeFormat', () => {
  it('samples n actions per state and counts the ones the env parser refuses', async () => {
    const opts = { model, tokenizer, states, compactPrompts: true, samplesPerState: 3, maxNewTokens: 12, temperature: 1, seed: 5 };
    const r = await probeFormat(opts);
    expect(r.samples).toBe(6);
    expect(r.responses.map((x) => x.task)).toEqual(['a', 'a', 'a', 'b', 'b', 'b']);
    // A random model writes no action, so every sample is a format error, each with its kind counted.
    expect(r.formatErrors).toBe(6);
    expect(r.formatErrorRate).toBe(1);
    expect(Object.values(r.byKind).reduce((a, b) => a + b, 0)).toBe(6);
    expect(r.responses.every((x) => !x.ok && x.error !== undefined && x.text.length > 0)).toBe(true);
    // The same seed samples the same texts.
    expect((await probeFormat(opts)).responses).toEqual(r.responses);
  }, 120_000);

  it('rejects an empty state list and a bad sample count', async () => {
    await expect(probeFormat({ model, tokenizer, states: [], compactPrompts: true, samplesPerState: 1, maxNewTokens: 4, temperature: 1, seed: 0 })).rejects.toThrow(/no states/);
    await expect(probeFormat({ model, tokenizer, states, compactPrompts: true, samplesPerState: 0, maxNewTokens: 4, temperature: 1, seed: 0 })).rejects.toThrow(/samplesPerState/);
  });
});

describe('spreadStates', () => {
  it('picks evenly spread items in order, or all of them', () => {
    expect(spreadStates([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 4)).toEqual([0, 2, 5, 7]);
    expect(spreadStates([1, 2], 5)).toEqual([1, 2]);
  });
});
