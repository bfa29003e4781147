import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QwenTokenizer, initModel, type QwenModel } from '@mlagent/policy';
import type { PpoConfig } from '../src/config/train-config.js';
import { latestCheckpoint } from '../src/checkpoint/checkpoint.js';
import { readMetrics } from '../src/metrics/jsonl.js';
import { trainPpo, validationSet, type PpoIterationInfo } from '../src/train/ppo-loop.js';
import { StatesPool } from '../src/pool/states-pool.js';
import { promptRoom } from '../src/train/rollout.js';
import { ROLLOUTS_FILE, type RolloutGroup } from '../src/train/rollouts.js';
import { LOOP_CONFIG, countingEnv, fakeCollection, fakeEnv, fakeMetric } from './ppo-loop-fixture.js';

// The step-wise PPO loop on a tiny random Qwen2 through lavapipe and a fake env (no Python): metrics, checkpoints,
// and a real SIGKILL in the middle of an iteration (rollouts saved, update not done), then resume.
let root: string;
let modelDir: string;
let collection: string;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'rl-ppo-loop-'));
  modelDir = join(root, 'model');
  collection = join(root, 'collect');
  initModel({ arch: 'qwen2', preset: 'tiny', outDir: modelDir, seed: 0 });
  await fakeCollection(collection);
}, 60_000);

afterAll(() => rmSync(root, { recursive: true, force: true }));

const rolloutLines = (out: string): RolloutGroup[] =>
  readFileSync(join(out, ROLLOUTS_FILE), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as RolloutGroup);

/** The child runs asynchronously: a blocking spawnSync would starve vitest's worker RPC for minutes. */
function runChild(args: string[]): Promise<{ signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./ppo-loop-child.ts', import.meta.url)), ...args], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGTERM'), 300_000);
    child.on('error', reject);
    child.on('exit', (_code, signal) => {
      clearTimeout(timer);
      resolve({ signal, stderr });
    });
  });
}

describe('trainPpo', () => {
  it('is killed with SIGKILL between rollouts and update, resumes from the checkpoint and reuses the saved rollouts', async () => {
    const out = join(root, 'run');
    const child = await runChild([modelDir, collection, out, '1', '1']);
    expect(child.signal, child.stderr).toBe('SIGKILL');
    // Iteration 0 was completed and checkpointed; of iteration 1, one group was executed and saved.
    expect(latestCheckpoint(out)?.step).toBe(1);
    const before = rolloutLines(out);
    expect(before.map((g) => [g.iteration, g.group])).toEqual(expect.arrayContaining([[0, 0], [0, 1], [1, 0]]));
    expect(before).toHaveLength(3);
    for (const g of before) {
      expect(g.samples).toHaveLength(2);
      for (const s of g.samples) {
        expect(s.oldLogp).toHaveLength(s.response.length);
        expect(s.metric).toBeCloseTo(fakeMetric(s.text), 12);
      }
    }

    const iterations: PpoIterationInfo[] = [];
    const r = await trainPpo({ modelDir, collection, out, config: LOOP_CONFIG, env: fakeEnv(), progress: false, resume: true, log: () => {}, onIteration: (i) => iterations.push(i) });
    expect(r).toMatchObject({ iterations: 2, stopped: false, resumedFrom: 1 });
    expect(iterations.map((i) => [i.iteration, i.reusedGroups])).toEqual([[2, 1]]);

    // No rollout lost or redone: the saved group of iteration 1 is used as it was, the other one is new.
    const after = rolloutLines(out);
    expect(after).toHaveLength(4);
    expect(after.slice(0, 3)).toEqual(before);
    expect(after.filter((g) => g.iteration === 1).map((g) => g.group).sort()).toEqual([0, 1]);

    // Metrics: one record per iteration (the killed iteration's only from the resumed run), per task too.
    const records = readMetrics(join(out, 'metrics.jsonl'));
    const overall = records.filter((m) => m.task === undefined);
    expect(overall.map((m) => m.step)).toEqual([1, 2]);
    for (const m of overall) for (const k of ['reward', 'kl', 'entropy', 'valueLoss', 'formatErrorRate', 'clipFrac', 'envSeconds', 'tokensPerSecond']) expect(m.values[k], k).toBeTypeOf('number');
    // Memory per iteration: the process holds at least the model (and on lavapipe its buffers), the GPU peak is above 0.
    for (const m of overall) {
      expect(m.values.rssGiB).toBeGreaterThan(0.02);
      expect(m.values.gpuPeakGiB).toBeGreaterThan(0);
      expect(m.values.gpuCachedGiB).toBeGreaterThanOrEqual(0);
      expect(m.values.gpuCachedGiB).toBeLessThanOrEqual(Math.max(m.values.gpuPeakGiB, 64 / 1024));
    }
    expect(new Set(records.filter((m) => m.task).map((m) => m.task))).toEqual(new Set(['alpha', 'beta']));
    const iter2Reward = after.filter((g) => g.iteration === 1).flatMap((g) => g.samples.map((s) => s.reward));
    expect(overall[1].values.reward).toBeCloseTo(iter2Reward.reduce((a, b) => a + b, 0) / iter2Reward.length, 6);

    // The final checkpoint holds everything a resume needs.
    const ck = latestCheckpoint(out)!;
    expect(ck.step).toBe(2);
    expect(ck.poolCursor).toMatchObject([{ drawn: 4 }]); // one cursor per pool drawn from (one: the whole pool)
    for (const f of ['adapter/adapter_model.safetensors', 'critic/value_head.safetensors', 'actor-optimizer.safetensors', 'critic-optimizer.safetensors']) expect(existsSync(ck.path(f)), f).toBe(true);
    expect(existsSync(join(out, 'adapter', 'adapter_config.json'))).toBe(true);
    expect(existsSync(join(out, 'tb'))).toBe(true);
  }, 600_000);

  it('episode-wise baseline: whole episodes from the start state, every step rewarded with its episode\'s outcome', async () => {
    const out = join(root, 'episodes');
    const config = { ...LOOP_CONFIG, ppo: { ...LOOP_CONFIG.ppo, rollout: 'episode' as const, advantage: 'grpo' as const, iterations: 1, statesPerIteration: 1, minibatchSize: 2, episodeMaxSteps: 2 } };
    const r = await trainPpo({ modelDir, collection, out, config, env: fakeEnv(2), progress: false, log: () => {} });
    expect(r.iterations).toBe(1);
    const [group, ...rest] = rolloutLines(out);
    expect(rest).toHaveLength(0);
    expect(group).toMatchObject({ iteration: 0, group: 0, task: 'alpha', state: 'initial' });
    // 2 episodes × 2 steps; the two steps of an episode share its reward: the last step's metric against 0.25.
    expect(group.samples).toHaveLength(4);
    expect(group.prompts).toHaveLength(4);
    const byEpisode = [0, 1].map((e) => group.samples.filter((_, i) => i % 2 === e));
    for (const steps of byEpisode) expect(steps[0].reward).toBe(steps[1].reward);
    expect(readMetrics(join(out, 'metrics.jsonl')).find((m) => m.task === undefined)?.values.reward).toBeTypeOf('number');
  }, 300_000);

  it('splits each iteration between edit and other states, logs the reward of each, and warms the actor lr up', async () => {
    const out = join(root, 'split');
    const withEdits = join(root, 'collect-edits');
    await fakeCollection(withEdits, 8);
    const config = { ...LOOP_CONFIG, ppo: { ...LOOP_CONFIG.ppo, advantage: 'grpo' as const, iterations: 1, editStateShare: 0.5, actorWarmupSteps: 4 } };
    const infos: PpoIterationInfo[] = [];
    await trainPpo({ modelDir, collection: withEdits, out, config, env: fakeEnv(1), progress: false, log: () => {}, onIteration: (i) => infos.push(i) });
    const groups = rolloutLines(out);
    expect(groups).toHaveLength(2);
    const steps = readFileSync(join(withEdits, 'steps.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { type: string; action?: string; stateBefore?: string });
    const editStates = new Set(steps.filter((r) => r.type === 'step' && r.action === 'Edit Script Lines').map((r) => r.stateBefore));
    expect(editStates.size).toBeGreaterThan(0);
    expect(groups.map((g) => editStates.has(g.state))).toEqual([true, false]);
    const row = readMetrics(join(out, 'metrics.jsonl')).find((m) => m.task === undefined)!;
    const mean = (g: RolloutGroup) => g.samples.reduce((a, s) => a + s.reward, 0) / g.samples.length;
    expect(row.values.rewardEditStates).toBeCloseTo(mean(groups[0]), 12);
    expect(row.values.rewardOtherStates).toBeCloseTo(mean(groups[1]), 12);
    // One optimizer step of a 4-step warmup: a quarter of actorLr.
    expect(infos[0].stats.actorLr).toBeCloseTo(1e-3 / 4, 12);
  }, 300_000);

  it("executes a state's identical responses once and copies the result to the others (ppo.reuseIdenticalResponses)", async () => {
    // A near-zero temperature samples the same response three times at each state.
    const config = (reuse: boolean) => ({ ...LOOP_CONFIG, ppo: { ...LOOP_CONFIG.ppo, advantage: 'grpo' as const, iterations: 1, samplesPerState: 3, minibatchSize: 6, temperature: 1e-4, reuseIdenticalResponses: reuse } });
    const reused = countingEnv();
    await trainPpo({ modelDir, collection, out: join(root, 'reuse'), config: config(true), env: reused.env, progress: false, log: () => {} });
    const groups = rolloutLines(join(root, 'reuse'));
    expect(groups).toHaveLength(2);
    expect(reused.counter.steps).toBe(2);
    for (const g of groups) {
      expect(new Set(g.samples.map((x) => x.text)).size).toBe(1);
      expect(g.samples.map((x) => x.reused ?? false)).toEqual([false, true, true]);
      expect(g.samples[1]).toMatchObject({ reward: g.samples[0].reward, metric: g.samples[0].metric, outcome: g.samples[0].outcome, envSeconds: 0 });
      // A copy spent no env time, but its action's code took as long as the original's (ppo.durationWeighting).
      expect(g.samples.map((x) => x.execSeconds)).toEqual([0.02, 0.02, 0.02]);
    }
    const row = readMetrics(join(root, 'reuse', 'metrics.jsonl')).find((m) => m.task === undefined)!.values;
    expect(row.reusedSamples).toBe(4);
    // The iteration's wall time: rollouts, then the update, then a little logging.
    expect(row.rolloutSeconds).toBeGreaterThan(0);
    expect(row.updateSeconds).toBeGreaterThan(0);
    expect(row.rolloutSeconds + row.updateSeconds).toBeLessThanOrEqual(row.iterationSeconds + 1e-9);
    const every = countingEnv();
    await trainPpo({ modelDir, collection, out: join(root, 'no-reuse'), config: config(false), env: every.env, progress: false, log: () => {} });
    expect(every.counter.steps).toBe(6);
    for (const g of rolloutLines(join(root, 'no-reuse'))) expect(g.samples.some((x) => x.reused)).toBe(false);
    expect(readMetrics(join(root, 'no-reuse', 'metrics.jsonl')).find((m) => m.task === undefined)!.values.reusedSamples).toBe(0);
  }, 300_000);

  it('resumes across a change of generationBatch or reuseIdenticalResponses (how samples are drawn), not of the config itself', async () => {
    const out = join(root, 'resume-batch');
    const config = (ppo: Record<string, unknown>) => ({ ...LOOP_CONFIG, ppo: { ...LOOP_CONFIG.ppo, advantage: 'grpo' as const, ...ppo } });
    await trainPpo({ modelDir, collection, out, config: config({ iterations: 1 }), env: fakeEnv(), progress: false, log: () => {} });
    const r = await trainPpo({ modelDir, collection, out, config: config({ iterations: 2, generationBatch: 2, reuseIdenticalResponses: false }), env: fakeEnv(), progress: false, resume: true, log: () => {} });
    expect(r.iterations).toBe(2);
    expect(latestCheckpoint(out)?.step).toBe(2);
    await expect(trainPpo({ modelDir, collection, out, config: config({ iterations: 3, temperature: 0.5 }), env: fakeEnv(), progress: false, resume: true, log: () => {} })).rejects.toThrow(/made with another config/);
  }, 300_000);

  it('decays the actor lr by a cosine over the iterations, logs the PPO-ptx loss on the expert steps, and validates greedily at fixed states', async () => {
    const out = join(root, 'cosine-ptx');
    const config = {
      ...LOOP_CONFIG,
      ppo: { ...LOOP_CONFIG.ppo, advantage: 'grpo' as const, iterations: 2, actorWarmupSteps: 0, actorMinLrRatio: 0.1, ptxCoef: 0.5, ptxBatchSize: 2, validateEvery: 2, validationStates: 2 },
    };
    const infos: PpoIterationInfo[] = [];
    const lines: string[] = [];
    const result = await trainPpo({ modelDir, collection, out, config, env: fakeEnv(), progress: false, log: (l) => lines.push(l), onIteration: (i) => infos.push(i) });
    // Iteration 0 at progress 0 takes the full lr; iteration 1 at progress 1/2 takes 0.1 + 0.9 · (1 + cos(π/2)) / 2.
    expect(infos[0].stats.actorLr).toBeCloseTo(1e-3, 12);
    expect(infos[1].stats.actorLr).toBeCloseTo(1e-3 * 0.55, 12);
    const metrics = readMetrics(join(out, 'metrics.jsonl'));
    const rows = metrics.filter((m) => m.task === undefined && m.values.reward !== undefined);
    expect(rows).toHaveLength(2);
    for (const r of rows) {
      expect(r.values.ptxLoss).toBeGreaterThan(0);
      expect(Number.isFinite(r.values.ptxLoss)).toBe(true);
    }
    // Validation before the first iteration and after the second (every 2): 2 states, one greedy answer each, not
    // saved with the rollouts.
    const val = metrics.filter((m) => m.task === undefined && m.values.valReward !== undefined);
    expect(val.map((m) => m.step)).toEqual([0, 2]);
    for (const m of val) {
      expect(m.values.valReward).toBeGreaterThanOrEqual(0);
      expect(m.values.valReward).toBeLessThanOrEqual(1);
      expect(m.values.valFormatErrorRate).toBeGreaterThanOrEqual(0);
    }
    expect(metrics.filter((m) => m.task !== undefined && m.values.valReward !== undefined).length).toBeGreaterThanOrEqual(2);
    expect(result.validation).toEqual(val.map((m) => ({ iteration: m.step, reward: m.values.valReward })));
    expect(lines.filter((l) => /^ppo iteration [02]: greedy reward [\d.]+ at the 2 validation states/.test(l))).toHaveLength(2);
    // Held out (validationHoldout, the default): no training rollout starts from a validation state.
    const rollouts = rolloutLines(out);
    expect(rollouts).toHaveLength(2 * LOOP_CONFIG.ppo!.statesPerIteration!);
    const held = new Set(validationSet(StatesPool.fromCollection(collection), LOOP_CONFIG.seed ?? 0, 2).map((s) => s.snapshotId));
    expect(held.size).toBe(2);
    expect(rollouts.filter((g) => held.has(g.state))).toEqual([]);
    // Holding out every state leaves nothing to train on: refused, naming the fields.
    const all = StatesPool.fromCollection(collection).size;
    await expect(trainPpo({ modelDir, collection, out: join(root, 'all-held-out'), config: { ...config, ppo: { ...config.ppo, validationStates: all } }, env: fakeEnv(), progress: false, log: () => {} })).rejects.toThrow(
      /ppo\.validationStates: the \d+ held-out validation states leave no state to train on; hold out fewer, or set ppo\.validationHoldout: false/,
    );
  }, 300_000);

  it('splits each update into the largest micro-batches that fit the memory budget, refuses a set size that does not (rollouts kept), and resumes with another', async () => {
    const config = (ppo: Record<string, unknown>) => ({ ...LOOP_CONFIG, ppo: { ...LOOP_CONFIG.ppo, iterations: 1, ...ppo } });
    const planned = async (microBatchSize: number | null, memoryBudgetBytes: number) => {
      const lines: string[] = [];
      const out = mkdtempSync(join(root, 'micro-'));
      await trainPpo({ modelDir, collection, out, config: config({ microBatchSize }), env: fakeEnv(), progress: false, log: (l) => lines.push(l), memoryBudgetBytes });
      const line = lines.filter((l) => l.includes('micro-batches of'));
      expect(line, lines.join('\n')).toHaveLength(1);
      return { line: line[0], bytes: Number(/need about ([\d.]+) MiB/.exec(line[0])![1]) * 2 ** 20 };
    };
    // The same seed draws the same states and actions, so each run plans the same samples.
    const huge = 2 ** 40;
    const whole = await planned(null, huge);
    expect(whole.line).toMatch(/^ppo iteration 1: micro-batches of 4 need about [\d.]+ MiB of GPU memory \(generation .*actor pass \(4 x \d+ tokens, \d+ scored\).*critic pass .*; 1\.00 TiB available\)$/);
    const one = await planned(1, huge);
    expect(one.bytes).toBeLessThan(whole.bytes);
    const budget = Math.floor((one.bytes + whole.bytes) / 2);

    // A set size over the budget: refused before the update, with the rollouts saved; resuming with null uses them
    // in the largest micro-batches that fit.
    const out = join(root, 'micro-refused');
    await expect(trainPpo({ modelDir, collection, out, config: config({ microBatchSize: 4 }), env: fakeEnv(), progress: false, log: () => {}, memoryBudgetBytes: budget })).rejects.toThrow(
      /^ppo iteration 1: micro-batches of 4 need about [\d.]+ MiB of GPU memory at their largest, .* but the budget is [\d.]+ MiB[\s\S]*ppo\.microBatchSize \(now 4\)[\s\S]*This iteration's rollouts are saved in .*rollouts\.jsonl: --resume reuses them\.$/,
    );
    expect(rolloutLines(out)).toHaveLength(2);
    const infos: PpoIterationInfo[] = [];
    const lines: string[] = [];
    const r = await trainPpo({ modelDir, collection, out, config: config({ microBatchSize: null }), env: fakeEnv(), progress: false, resume: true, log: (l) => lines.push(l), memoryBudgetBytes: budget, onIteration: (i) => infos.push(i) });
    const fitted = lines.filter((l) => l.includes('micro-batches of'));
    expect(fitted).toHaveLength(1);
    expect(fitted[0]).toMatch(/^ppo iteration 1: micro-batches of [123] \(the largest that fits\) need about/);
    expect(Number(/need about ([\d.]+) MiB/.exec(fitted[0])![1]) * 2 ** 20).toBeLessThanOrEqual(budget);
    expect(r.iterations).toBe(1);
    expect(infos.map((i) => i.reusedGroups)).toEqual([2]);
  }, 300_000);

  it("cuts prompts longer than ppo.maxPromptTokens to their end, counts them in the metrics, and keeps the cap in the fingerprint; logs the gap to π_old recomputed by the actor ('actor')", async () => {
    const out = join(root, 'max-prompt');
    const config = (ppo: Record<string, unknown>) => ({ ...LOOP_CONFIG, ppo: { ...LOOP_CONFIG.ppo, iterations: 1, advantage: 'grpo' as const, ...ppo } });
    const lines: string[] = [];
    await trainPpo({ modelDir, collection, out, config: config({ maxPromptTokens: 12, oldLogprobs: 'actor' }), env: fakeEnv(), progress: false, log: (l) => lines.push(l) });
    const groups = rolloutLines(out);
    expect(groups.length).toBeGreaterThan(0);
    for (const g of groups) for (const p of g.prompts) expect(p.length).toBeLessThanOrEqual(12);
    // Cut at the start: the prompts still end in the open assistant turn the model answers.
    const turn = QwenTokenizer.fromDir(modelDir).encode('<|im_start|>assistant\n');
    for (const g of groups) expect(g.prompts[0].slice(-turn.length)).toEqual(turn);
    const row = readMetrics(join(out, 'metrics.jsonl')).find((m) => m.task === undefined)!;
    expect(row.values.truncatedPrompts).toBe(groups.length);
    // generate()'s log-probs (f32 caches and weights here) against the actor's training forward: kernels apart.
    expect(row.values.oldLogpGap).toBeGreaterThanOrEqual(0);
    expect(row.values.oldLogpGapMax).toBeLessThan(1e-3);
    console.log(`sampler vs actor log-probs: mean gap ${row.values.oldLogpGap}, largest ${row.values.oldLogpGapMax}`);
    expect(lines).toContain(`ppo iteration 1: ${groups.length} prompts kept only their last 12 tokens (ppo.maxPromptTokens, or the model's context less maxNewTokens)`);
    await expect(trainPpo({ modelDir, collection, out, config: config({ iterations: 2, maxPromptTokens: 13, oldLogprobs: 'actor' }), env: fakeEnv(), progress: false, resume: true, log: () => {} })).rejects.toThrow(/made with another config/);
    await expect(trainPpo({ modelDir, collection, out, config: config({ iterations: 2, maxPromptTokens: 12 }), env: fakeEnv(), progress: false, resume: true, log: () => {} })).rejects.toThrow(/made with another config/);
    expect(() => promptRoom({ model: { config: { maxPositionEmbeddings: 300 } } as QwenModel, config: { maxNewTokens: 300, maxPromptTokens: null } as PpoConfig })).toThrow(
      /maxNewTokens \(300\) leaves no room for a prompt in the model's 300-token context/,
    );
    expect(promptRoom({ model: { config: { maxPositionEmbeddings: 300 } } as QwenModel, config: { maxNewTokens: 100, maxPromptTokens: 250 } as PpoConfig })).toBe(200);
  }, 300_000);

  it('refuses to start over a run without resume, or next to a live writer, before touching the GPU', async () => {
    await expect(trainPpo({ modelDir, collection, out: join(root, 'run'), config: LOOP_CONFIG, env: fakeEnv(), progress: false })).rejects.toThrow(/already holds a run .*--resume/);
    const locked = join(root, 'locked');
    mkdirSync(locked);
    writeFileSync(join(locked, '.lock'), String(process.pid)); // a live process
    await expect(trainPpo({ modelDir, collection, out: locked, config: LOOP_CONFIG, env: fakeEnv(), progress: false })).rejects.toThrow(/another run \(pid \d+\) is writing/);
    await expect(trainPpo({ modelDir, collection: join(root, 'nothing'), out: join(root, 'x'), config: LOOP_CONFIG, env: fakeEnv(), progress: false })).rejects.toThrow(/not a collection directory/);
  });
});
