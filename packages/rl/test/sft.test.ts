import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Gpu, profileWork } from '@mlagent/core-kernels';
import { QwenModel, initModel, loadAdapter, readPeftConfig } from '@mlagent/policy';
import { latestCheckpoint } from '../src/checkpoint/checkpoint.js';
import type { TrainConfigInput } from '../src/config/train-config.js';
import { readMetrics } from '../src/metrics/jsonl.js';
import { sft, type SftResult } from '../src/sft/sft.js';

// A tiny random Qwen2 (2 layers, hidden 64, Qwen's full vocabulary) on lavapipe: every pass costs seconds, so the
// runs are a handful of optimizer steps over six short examples, and all share one GPU and one loaded model.
let gpu: Gpu;
let model: QwenModel;
let modelDir: string;
let dataPath: string;
const dirs: string[] = [];
const newDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'rl-sft-'));
  dirs.push(d);
  return d;
};

const config: TrainConfigInput = {
  preset: 'tiny',
  seed: 3,
  lora: { rank: 4, alpha: 8, dropout: 0.1, targets: ['q_proj', 'v_proj', 'o_proj', 'down_proj'] },
  sft: { epochs: 2, batchSize: 3, gradAccum: 1, evalFraction: 0.15, lr: 1e-2, warmupRatio: 0, maxSeqLen: 64 },
};

beforeAll(async () => {
  modelDir = newDir();
  initModel({ arch: 'qwen2', preset: 'tiny', outDir: modelDir, seed: 0 });
  dataPath = join(newDir(), 'data.jsonl');
  const lines = ['List Files', 'Understand File', 'Execute Script', 'Edit Script (AI)', 'Final Answer', 'Inspect Script Lines'].map((action) =>
    JSON.stringify({ prompt: 'Next action?', response: `Action: ${action}` }),
  );
  writeFileSync(dataPath, lines.join('\n') + '\n');
  gpu = await Gpu.create();
  model = await QwenModel.load(gpu, modelDir);
}, 120_000);

afterAll(() => {
  model?.dispose();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('LoRA SFT', () => {
  let full: SftResult;
  let fullOut: string;
  const losses: number[] = [];

  it('lowers the training and held-out loss, writes a PEFT adapter, metrics and a checkpoint per epoch', async () => {
    fullOut = newDir();
    full = await sft({ modelDir, data: dataPath, out: fullOut, config, gpu, model, progress: false, onStep: (s) => losses.push(s.loss) });
    expect(full.totalSteps).toBe(4); // 5 train examples in batches of 3: 2 steps per epoch
    expect(full.examples).toEqual({ train: 5, eval: 1, truncated: 0, dropped: 0 });
    expect(losses).toHaveLength(4);
    expect(losses[3]).toBeLessThan(losses[0]);
    expect(full.evalLoss!).toBeLessThan(full.initialEvalLoss!);

    expect(readPeftConfig(full.adapterDir!)).toMatchObject({ r: 4, alpha: 8, targetModules: ['q_proj', 'v_proj', 'o_proj', 'down_proj'] });
    loadAdapter(model, full.adapterDir!).dispose(); // loads back onto the base
    const metrics = readMetrics(join(fullOut, 'metrics.jsonl'));
    expect(metrics.map((m) => m.step)).toEqual([0, 1, 2, 3, 4]);
    expect(metrics[0].values.evalLoss).toBeCloseTo(full.initialEvalLoss!, 10);
    expect(metrics[2].values.evalLoss).toBeDefined(); // end of epoch 1
    expect(metrics[4].values.loss).toBeCloseTo(losses[3], 10);
    expect(metrics[4].values.rssGiB).toBeGreaterThan(0.02);
    expect(metrics[4].values.gpuPeakGiB).toBeGreaterThan(0);
    expect(latestCheckpoint(fullOut)!.step).toBe(4);
    expect(existsSync(join(fullOut, 'tb'))).toBe(true);
    expect(JSON.parse(readFileSync(join(fullOut, 'sft-summary.json'), 'utf8')).steps).toBe(4);
  }, 300_000);

  it('stopped after 3 steps and resumed, it ends with the same adapter bytes and losses', async () => {
    const out = newDir();
    const abort = new AbortController();
    const first = await sft({
      modelDir,
      data: dataPath,
      out,
      config,
      gpu,
      model,
      progress: false,
      signal: abort.signal,
      onStep: (s) => s.step === 3 && abort.abort(),
    });
    expect(first).toMatchObject({ stopped: true, steps: 3, adapterDir: null });
    expect(latestCheckpoint(out)!.step).toBe(3); // saved where it stopped, mid-epoch

    await expect(sft({ modelDir, data: dataPath, out, config, gpu, model, progress: false })).rejects.toThrow(/already holds checkpoints/);
    const resumedLosses: number[] = [];
    const resumed = await sft({ modelDir, data: dataPath, out, config, gpu, model, progress: false, resume: true, log: () => {}, onStep: (s) => resumedLosses.push(s.loss) });
    expect(resumed.resumedFrom).toBe(3);
    expect(resumedLosses).toEqual(losses.slice(3));
    expect(resumed.evalLoss).toBe(full.evalLoss);
    expect(resumed.initialEvalLoss).toBe(full.initialEvalLoss);
    const bytes = (dir: string) => readFileSync(join(dir, 'adapter_model.safetensors'));
    expect(bytes(resumed.adapterDir!).equals(bytes(full.adapterDir!))).toBe(true);
    // The log holds each step once, as the uninterrupted run's.
    const log = readMetrics(join(out, 'metrics.jsonl'));
    expect(log.map((m) => [m.step, m.values.loss])).toEqual(readMetrics(join(fullOut, 'metrics.jsonl')).map((m) => [m.step, m.values.loss]));

    const other = { ...config, sft: { ...config.sft, lr: 2e-2 } };
    await expect(sft({ modelDir, data: dataPath, out, config: other, gpu, model, progress: false, resume: true, log: () => {} })).rejects.toThrow(/made with other data, config or model/);
  }, 300_000);

  it('starts afresh over the curves of a run that left no checkpoint, and refuses to overwrite a finished run', async () => {
    const out = newDir();
    // A run killed before its first checkpoint left these behind.
    writeFileSync(join(out, 'metrics.jsonl'), '{"step":1,"time":0,"loss":99}\n{"step":2,"time":0,"loss":98}\n');
    mkdirSync(join(out, 'tb'));
    writeFileSync(join(out, 'tb', 'events.out.tfevents.0.stale'), 'x');
    const cfg = { ...config, sft: { ...config.sft, epochs: 1 } };
    await sft({ modelDir, data: dataPath, out, config: cfg, gpu, model, progress: false, log: () => {} });
    expect(readMetrics(join(out, 'metrics.jsonl')).map((m) => m.step)).toEqual([0, 1, 2]);
    expect(readdirSync(join(out, 'tb')).some((f) => f.endsWith('.stale'))).toBe(false);
    // Finished, its checkpoints pruned: nothing to resume, and its results stay.
    rmSync(join(out, 'checkpoints'), { recursive: true });
    await expect(sft({ modelDir, data: dataPath, out, config: cfg, gpu, model, progress: false })).rejects.toThrow(/holds a finished run \(sft-summary.json\)/);
  }, 300_000);

  it('gives up when every step has non-finite gradients (NaN weights), rather than write an untrained adapter', async () => {
    const nanDir = newDir();
    for (const f of readdirSync(modelDir)) copyFileSync(join(modelDir, f), join(nanDir, f));
    const file = join(nanDir, 'model.safetensors');
    const buf = readFileSync(file);
    const headerLen = Number(buf.readBigUInt64LE(0));
    const [from, to] = (JSON.parse(buf.subarray(8, 8 + headerLen).toString()) as Record<string, { data_offsets: [number, number] }>)['model.norm.weight'].data_offsets;
    for (let o = 8 + headerLen + from; o < 8 + headerLen + to; o += 4) buf.writeFloatLE(NaN, o);
    writeFileSync(file, buf);
    const out = newDir();
    await expect(sft({ modelDir: nanDir, data: dataPath, out, config, gpu, progress: false, log: () => {} })).rejects.toThrow(
      /^sft: the loss or gradients were not finite for 4 steps in a row \(to step 4\), so nothing was learned/,
    );
    expect(existsSync(join(out, 'adapter'))).toBe(false);
  }, 300_000);

  it("loads the base in the config's dtype: f16 weights take less memory and learn alike", async () => {
    const run = async (dtype: 'f32' | 'f16') => {
      const fresh = await Gpu.create(); // its own allocator, so the peak is this run's
      try {
        const out = newDir();
        const stepLosses: number[] = [];
        const r = await sft({ modelDir, data: dataPath, out, config: { ...config, dtype }, gpu: fresh, progress: false, onStep: (s) => stepLosses.push(s.loss) });
        const metrics = readMetrics(join(out, 'metrics.jsonl'));
        return { r, stepLosses, peakGiB: metrics[metrics.length - 1].values.gpuPeakGiB };
      } finally {
        fresh.destroy();
      }
    };
    const f32 = await run('f32');
    const f16 = await run('f16');
    console.log(`sft peak GPU memory: f32 weights ${f32.peakGiB} GiB, f16 ${f16.peakGiB} GiB`);
    expect(f32.stepLosses).toEqual(losses);
    // Weights dominate this model. f16 halves them; on lavapipe the LM head's packed copy (for the CPU matmul)
    // stays f32, so the whole falls to about two thirds (0.67 seen), and on a GPU to about half.
    expect(f16.peakGiB).toBeLessThan(0.8 * f32.peakGiB);
    f16.stepLosses.forEach((l, i) => expect(Math.abs(l - losses[i]), `step ${i + 1}`).toBeLessThan(0.02 * losses[i]));
    expect(f16.r.evalLoss!).toBeLessThan(f16.r.initialEvalLoss!);
    await expect(sft({ modelDir, data: dataPath, out: newDir(), config: { ...config, dtype: 'f16' }, gpu, model, progress: false })).rejects.toThrow(
      /holds f32 weights but the config's dtype is f16/,
    );
  }, 300_000);

  it('activation checkpointing recomputes each layer in the backward, changes no result, and resumes either way', async () => {
    const run = async (activationCheckpointing: boolean, out = newDir(), signal?: AbortSignal) => {
      const stepLosses: number[] = [];
      let r!: SftResult;
      const profile = await profileWork(gpu, async () => {
        const c = { ...config, sft: { ...config.sft, activationCheckpointing } };
        r = await sft({ modelDir, data: dataPath, out, config: c, gpu, model, progress: false, resume: signal === undefined && existsSync(join(out, 'checkpoints')), log: () => {}, signal, onStep: (s) => {
          stepLosses.push(s.loss);
          if (s.step === 2) controller?.abort();
        } });
      });
      // Forward RMSNorms: each layer's two, once per forward, and again in each backward when recomputed.
      const norms = profile?.filter((p) => p.op.startsWith('rmsnorm') && !p.op.startsWith('rmsnormBackward')).reduce((n, p) => n + p.calls, 0);
      return { r, stepLosses, norms };
    };
    let controller: AbortController | undefined;
    const on = await run(true);
    expect(on.stepLosses).toEqual(losses);
    const bytes = (dir: string) => readFileSync(join(dir, 'adapter_model.safetensors'));
    expect(bytes(on.r.adapterDir!).equals(bytes(full.adapterDir!))).toBe(true);
    const off = await run(false);
    expect(on.norms).toBeDefined(); // lavapipe has timestamp queries
    expect(on.norms!).toBeGreaterThan(off.norms!);

    // Stopped with it on, resumed with it off: the same run.
    const out = newDir();
    controller = new AbortController();
    await run(true, out, controller.signal);
    controller = undefined;
    const resumed = await run(false, out);
    expect(resumed.r.resumedFrom).toBe(2);
    expect(bytes(resumed.r.adapterDir!).equals(bytes(full.adapterDir!))).toBe(true);
  }, 300_000);
});
