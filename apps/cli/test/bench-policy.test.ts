import { describe, expect, it } from 'vitest';
import { mlagent } from './run-cli.js';

describe('mlagent bench policy', () => {
  it('names the bad option', async () => {
    expect((await mlagent('bench', 'policy', '--mode', 'fit')).stderr).toMatch(/--mode must be generate, train or all, got 'fit'/);
    expect((await mlagent('bench', 'policy', '--checkpoint', 'maybe')).stderr).toMatch(/--checkpoint must be on, off or both, got 'maybe'/);
    expect((await mlagent('bench', 'policy', '--presets', '70b')).stderr).toMatch(/--presets takes tiny, small and\/or 7b, got '70b'/);
    expect((await mlagent('bench', 'policy', '--presets', '7b', '--arch', 'qwen3')).stderr).toMatch(/7b preset is Qwen2.5-7B-shaped/);
    expect((await mlagent('bench', 'policy', '--seq-len', '1')).stderr).toMatch(/--seq-len must be an integer >= 2, got '1'/);
    expect((await mlagent('bench', 'policy', '--kv-dtype', 'bf16')).stderr).toMatch(/--kv-dtype must be f32 or f16, got 'bf16'/);
    const r = await mlagent('bench', 'policy', '--memory-budget=0');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--memory-budget must be a positive number of GiB, got '0'/);
  });

  it('refuses a prompt and new tokens beyond a preset\'s context before making any model', async () => {
    const r = await mlagent('bench', 'policy', '--mode', 'generate', '--presets', 'tiny', '--no-torch', '--prompt-len', '40000', '--new-tokens', '2', '--iterations', '1', '--batch', '1');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^mlagent bench policy: --prompt-len 40000 \+ --new-tokens 2 exceed the tiny model's 32768-token context; lower --prompt-len or --new-tokens\n$/);
    // Training runs take no prompt.
    const train = await mlagent('bench', 'policy', '--mode', 'train', '--presets', '7b', '--prompt-len', '40000', '--seq-len', '4096', '--memory-budget', '20');
    expect(train.stderr).not.toMatch(/context/);
  }, 60_000);

  it('refuses a 7b run that will not fit before allocating, naming the biggest items', async () => {
    const r = await mlagent('bench', 'policy', '--mode', 'train', '--presets', '7b', '--seq-len', '4096', '--checkpoint', 'both', '--memory-budget', '20');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--presets 7b: this will not fit: it needs about 54\.\d+ GiB but the budget is 20\.00 GiB/);
    expect(r.stderr).toMatch(/activations \(batch 1 x 4096 tokens, training, no checkpointing\)/);
    expect(r.stderr).toMatch(/activation checkpointing/);
    expect(r.stderr).not.toMatch(/random weights/);
  }, 60_000);

  it('--mode train --json times LoRA steps here and in torch, with ratios and peak memory', async () => {
    const r = await mlagent('bench', 'policy', '--mode', 'train', '--presets', 'tiny', '--seq-len', '8', '--checkpoint', 'on', '--iterations', '1', '--json', '--profile');
    expect(r.code, r.stderr).toBe(0);
    const rep = JSON.parse(r.stdout);
    expect(rep.mode).toBe('train');
    expect(rep.rows).toEqual([]);
    expect(rep.torch).toMatch(/^torch .* float32$/);
    if (/ on cpu /.test(rep.torch)) expect(rep.torch).toMatch(/ on cpu \(\d+ threads, OpenBLAS [\d.]+, \w+ kernels( \(a fallback: this CPU has AVX2; [^)]*\))?\), float32$/);
    expect(rep.training).toHaveLength(1);
    const row = rep.training[0];
    expect(row).toMatchObject({ preset: 'tiny', arch: 'qwen2', dtype: 'f32', batch: 1, seqLen: 8, checkpoint: true, r: 16 });
    expect(row.ours.tokPerS).toBeCloseTo(8 / (row.ours.stepMs / 1000), 6);
    expect(row.ours.peakBytes).toBeGreaterThan(19e6 * 4);
    // The memory planner's estimate beside the measured peak: the memory checks stand on it.
    expect(Math.abs(row.plannedBytes - row.ours.peakBytes) / row.ours.peakBytes, `planned ${row.plannedBytes}, peak ${row.ours.peakBytes}`).toBeLessThan(0.05);
    expect(row.torch.tokPerS).toBeGreaterThan(0);
    expect(r.stderr).toMatch(/LoRA train: batch 1 x 8 tokens, r=16 on 7 linears, checkpointing on/);
    // Every op of the profiled step is in the JSON, not only the table's largest: the optimizer ran.
    const ops = new Map<string, { calls: number; ms: number }>(row.ours.profile.map((p: { op: string; calls: number; ms: number }) => [p.op, p]));
    expect(ops.get('adamwUpdate')?.calls).toBeGreaterThanOrEqual(1);
    expect(ops.get('adamwUpdate')?.ms).toBeGreaterThan(0);
    expect([...ops.keys()].some((op) => op.startsWith('headBackward'))).toBe(true);
  }, 240_000);

  it('--profile reports where the GPU time of a generation run and of a LoRA step goes, by op', async () => {
    const r = await mlagent('bench', 'policy', '--mode', 'all', '--presets', 'tiny', '--batch', '1', '--prompt-len', '6', '--new-tokens', '3', '--seq-len', '8', '--checkpoint', 'off', '--iterations', '1', '--no-torch', '--profile', '--kv-dtype', 'f16');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/GPU time by op, one profiled qwen2 tiny f32 generate, batch 1, prompt 6, 3 new tokens:\n\nGPU time [\d.]+ ms in \d+ commands/);
    expect(r.stdout).toMatch(/GPU time by op, one profiled qwen2 tiny f32 LoRA step, batch 1 x 8, checkpointing off:/);
    // Both tables give the planned peak beside the measured one (no torch: its columns stay empty).
    expect(r.stdout).toMatch(/\n\| qwen2 tiny \| f32 \(KV f16\) \| 1 \| 6 \| 3 \|( [^|]+ \|){6} [\d.]+ GiB \| [\d.]+ GiB \| - \|\n/);
    expect(r.stdout).toMatch(/\n\| qwen2 tiny \| f32 \| r=16 all linears \| 1 \| 8 \| off \|( [^|]+ \|){4} [\d.]+ GiB \| [\d.]+ GiB \| - \|\n/);
    // The step's largest ops: the LM head's backward and the matmuls. (Whether the optimizer makes the table's 12 is
    // down to timing noise on lavapipe; the JSON test above finds it among all the ops.)
    const step = r.stdout.slice(r.stdout.indexOf('LoRA step, batch 1'));
    for (const op of [/\| headBackward[\w:-]* \| 1 \|/, /\| matmul-[\w-]+ \| \d+ \|/]) expect(step).toMatch(op);
    expect(r.stderr).toMatch(/profiled step: \d+ ms/);
  }, 240_000);
});
