// Bad inputs through the public API must fail loudly (naming the argument) instead of giving a silent wrong
// result, and checkpoints/metrics must not lose data on a bad argument or a damaged file.
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_PPO_LOSS,
  MetricsLogger,
  ProgressMeter,
  StatesPool,
  defaultTrainConfig,
  farthestPointSampling,
  formatProgress,
  gaeSingleStep,
  grpoAdvantages,
  klPenalizedRewards,
  latestCheckpoint,
  loadTrainConfig,
  normalizeAdvantages,
  parseTrainConfig,
  ppoLoss,
  pruneCheckpoints,
  saveCheckpoint,
  selectDiverse,
  toShareGpt,
  truncateMetricsAfter,
  valueLoss,
  type KlEstimator,
  type LossAggregation,
  type PoolCursor,
  type PoolState,
  type PpoBatch,
  type TrainConfigInput,
} from '../src/index.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'rl-api-audit-'));
const batch: PpoBatch = {
  lengths: [2, 1],
  logp: [-1, -1.1, -0.9],
  oldLogp: [-1, -1, -1],
  refLogp: [-1, -1, -1],
  entropy: [1, 1, 1],
  advantages: [1, -1],
  values: [0, 0.5],
  oldValues: [0, 0.4],
  returns: [1, 0],
};
const state = (i: number, task = 'a'): PoolState => ({ task, trajectory: `${task}/${i}`, step: 1, snapshotId: `s${i}`, messages: [], prompt: 'p', metric: null, visits: 1 });
const ckptDir = (run: string, step: number) => join(run, 'checkpoints', `step-${String(step).padStart(8, '0')}`);

describe('ppoLoss / valueLoss inputs', () => {
  it('ppoLoss rejects non-finite advantages, reference log-probs and values instead of returning a NaN loss', () => {
    expect(Number.isFinite(ppoLoss(batch).loss)).toBe(true);
    expect(() => ppoLoss({ ...batch, advantages: [NaN, 1] })).toThrow(/advantages\[0\] = NaN is not finite/);
    expect(() => ppoLoss({ ...batch, refLogp: [-1, Infinity, -1] })).toThrow(/refLogp\[1\] = Infinity is not finite/);
    expect(() => ppoLoss({ ...batch, values: [NaN, 0] })).toThrow(/values\[0\] = NaN is not finite/);
    expect(() => ppoLoss({ ...batch, returns: [0, NaN] })).toThrow(/returns\[1\] = NaN is not finite/);
    // An entropy nobody weighs must not poison the loss either (0 · NaN is NaN).
    expect(Number.isFinite(ppoLoss({ ...batch, entropy: [NaN, 1, 1] }, { ...DEFAULT_PPO_LOSS, entropyCoef: 0 }).loss)).toBe(true);
    expect(() => ppoLoss({ ...batch, entropy: [NaN, 1, 1] }, { ...DEFAULT_PPO_LOSS, entropyCoef: 0.01 })).toThrow(/entropy\[0\] = NaN/);
  });

  it('ppoLoss rejects unknown estimator/aggregation names and NaN or negative coefficients', () => {
    expect(() => ppoLoss(batch, { ...DEFAULT_PPO_LOSS, klEstimator: 'k2' as KlEstimator })).toThrow(/klEstimator must be 'k1' or 'k3', got "k2"/);
    expect(() => ppoLoss(batch, { ...DEFAULT_PPO_LOSS, lossAggregation: 'sum' as LossAggregation })).toThrow(/lossAggregation must be/);
    expect(() => ppoLoss(batch, { ...DEFAULT_PPO_LOSS, valueCoef: NaN })).toThrow(/valueCoef must be a finite number >= 0/);
    expect(() => ppoLoss(batch, { ...DEFAULT_PPO_LOSS, valueCoef: -1 })).toThrow(/valueCoef must be a finite number >= 0/);
    expect(() => ppoLoss(batch, { ...DEFAULT_PPO_LOSS, klCoef: -0.1 })).toThrow(/klCoef must be a finite number >= 0/);
    expect(() => ppoLoss(batch, { ...DEFAULT_PPO_LOSS, entropyCoef: NaN })).toThrow(/entropyCoef must be a finite number/);
  });

  it('valueLoss rejects a non-positive valueClip, mismatched lengths and non-finite values', () => {
    expect(valueLoss({ values: [0.1], oldValues: [0], returns: [1] }, 0.5).loss).toBeCloseTo(0.405);
    expect(() => valueLoss({ values: [0.1], oldValues: [0], returns: [1] }, -1)).toThrow(/valueClip must be > 0 or null, got -1/);
    expect(() => valueLoss({ values: [0.1], oldValues: [0], returns: [1] }, NaN)).toThrow(/valueClip must be > 0/);
    expect(() => valueLoss({ values: [0.1, 0.2], returns: [1] }, null)).toThrow(/returns has 1 entries for 2 values/);
    expect(() => valueLoss({ values: [0.1, 0.2], oldValues: [0], returns: [1, 1] }, 0.5)).toThrow(/oldValues has 1 entries for 2 values/);
    expect(() => valueLoss({ values: [NaN], returns: [1] }, null)).toThrow(/values\[0\] = NaN is not finite/);
  });
});

describe('advantage estimators', () => {
  it('normalizeAdvantages rejects non-finite values and a NaN or negative eps instead of whitening to NaN', () => {
    expect(() => normalizeAdvantages([NaN, 1, 2])).toThrow(/non-finite value NaN at index 0/);
    expect(() => normalizeAdvantages([1, 2], NaN)).toThrow(/eps must be a finite number >= 0/);
    expect(() => normalizeAdvantages([1, 1], -1)).toThrow(/eps must be a finite number >= 0/);
    expect(() => normalizeAdvantages([1, 1], 0)).toThrow(/all equal and eps is 0/);
    const [lo, hi] = normalizeAdvantages([1, 3], 0);
    expect(lo).toBeCloseTo(-Math.SQRT1_2);
    expect(hi).toBeCloseTo(Math.SQRT1_2);
  });

  it('grpoAdvantages rejects an eps that divides by zero or is NaN', () => {
    expect(() => grpoAdvantages([0, 1], [0, 0], { eps: -Math.SQRT1_2 })).toThrow(/eps must be a finite number >= 0/);
    expect(() => grpoAdvantages([0, 1], [0, 0], { eps: NaN })).toThrow(/eps must be a finite number >= 0/);
  });

  it('klPenalizedRewards rejects a NaN or negative beta and non-finite KL values', () => {
    expect(() => klPenalizedRewards([1], [0.1], NaN)).toThrow(/beta must be a finite number >= 0/);
    expect(() => klPenalizedRewards([1], [0.1], -1)).toThrow(/beta must be a finite number >= 0/);
    expect(() => klPenalizedRewards([1], [NaN], 0.1)).toThrow(/non-finite value NaN/);
  });

  it('gaeSingleStep rejects a non-boolean normalize flag', () => {
    expect(() => gaeSingleStep([1, 2], [0, 0], 'no' as unknown as boolean)).toThrow(/normalize must be true or false/);
  });
});

describe('diverse ideas', () => {
  const euclid = (a: number, b: number) => Math.abs(a - b);
  it('farthestPointSampling and selectDiverse reject seeds that SeededRng would silently remap', () => {
    for (const seed of [NaN, -1, 1.5, 2 ** 32]) {
      expect(() => farthestPointSampling([1, 2, 3], 2, euclid, { seed })).toThrow(/seed must be an integer in \[0, 2\^32\)/);
    }
    const candidates = [
      { id: 'a', ideas: [0], text: 'gradient boosting' },
      { id: 'b', ideas: [1], text: 'dropout layers' },
    ];
    expect(() => selectDiverse(candidates, 1, -1)).toThrow(/seed must be an integer/);
  });

  it('farthestPointSampling rejects a distance that returns NaN or a negative number', () => {
    expect(() => farthestPointSampling([1, 2, 3], 3, () => NaN)).toThrow(/distance must return a number >= 0, got NaN/);
    expect(() => farthestPointSampling([1, 2, 3], 3, () => -1)).toThrow(/distance must return a number >= 0, got -1/);
  });
});

describe('states pool', () => {
  it('drawing from an empty pool throws instead of returning undefined', () => {
    const empty = new StatesPool([]);
    expect(() => empty.sampler({}).next()).toThrow(/the pool has no states/);
    expect(() => empty.sampler({ mode: 'by-task' }).next()).toThrow(/the pool has no states/);
  });

  it('take rejects a negative, NaN or fractional count, and sampler a missing cursor', () => {
    const pool = new StatesPool([state(1), state(2)]);
    const sampler = pool.sampler({ seed: 1 });
    for (const n of [-1, NaN, 1.5]) expect(() => sampler.take(n)).toThrow(/n must be a non-negative integer/);
    expect(sampler.take(0)).toEqual([]);
    expect(() => pool.sampler({ cursor: undefined as unknown as PoolCursor })).toThrow(/cursor must be a saved PoolCursor object, got undefined/);
  });
});

describe('checkpoints', () => {
  it('pruneCheckpoints rejects a keep of 0, NaN, negative or fractional instead of deleting every checkpoint', async () => {
    const run = tmp();
    for (const step of [1, 2, 3]) await saveCheckpoint(run, { step, files: { 'a.bin': 'x'.repeat(step) } });
    for (const keep of [0, NaN, -1, 1.5]) expect(() => pruneCheckpoints(run, keep)).toThrow(/keep must be an integer >= 1/);
    expect(readdirSync(join(run, 'checkpoints')).sort()).toEqual(['step-00000001', 'step-00000002', 'step-00000003']);
  });

  it('pruneCheckpoints does not keep a same-size corrupted newest checkpoint in place of the last good one', async () => {
    const run = tmp();
    for (const step of [1, 2]) await saveCheckpoint(run, { step, files: { 'a.bin': 'abc' } });
    writeFileSync(join(ckptDir(run, 2), 'a.bin'), 'xyz'); // bit rot: same size, other bytes
    pruneCheckpoints(run, 1);
    expect(latestCheckpoint(run)?.step).toBe(1);
    expect(readdirSync(join(run, 'checkpoints'))).toEqual(['step-00000001']);
  });

  it('a malformed manifest makes its checkpoint skipped, not latestCheckpoint throw', async () => {
    const run = tmp();
    for (const step of [1, 2]) await saveCheckpoint(run, { step, files: { 'a.bin': 'abc' } });
    const manifest = join(ckptDir(run, 2), 'checkpoint.json');
    const skipped: string[] = [];
    for (const files of [{ 'a.bin': null }, { '../a.bin': { bytes: 3, sha256: 'x' } }]) {
      writeFileSync(manifest, JSON.stringify({ version: 1, step: 2, savedAt: '', files }));
      expect(latestCheckpoint(run, { onSkip: (_dir, problem) => skipped.push(problem) })?.step).toBe(1);
    }
    // A directory whose manifest is for another step (copied by hand) is not resumed from under the wrong step.
    writeFileSync(manifest, JSON.stringify({ version: 1, step: 7, savedAt: '', files: {} }));
    expect(latestCheckpoint(run, { onSkip: (_dir, problem) => skipped.push(problem) })?.step).toBe(1);
    expect(skipped).toEqual([expect.stringMatching(/malformed entry for a.bin/), expect.stringMatching(/outside the checkpoint/), expect.stringMatching(/is for step 7, the directory for step 2/)]);
  });
});

describe('metrics and progress', () => {
  it('truncateMetricsAfter rejects a NaN step instead of emptying the metrics file', () => {
    const run = tmp();
    const log = new MetricsLogger(run, { tensorboard: false });
    log.log(1, { loss: 2 }, { time: 1 });
    log.log(2, { loss: 1 }, { time: 2 });
    log.close();
    const path = join(run, 'metrics.jsonl');
    const before = readFileSync(path, 'utf8');
    expect(() => truncateMetricsAfter(path, NaN)).toThrow(/step must be a non-negative integer, got NaN/);
    expect(() => truncateMetricsAfter(path, -1)).toThrow(/step must be a non-negative integer/);
    expect(readFileSync(path, 'utf8')).toBe(before);
  });

  it('MetricsLogger rejects a non-finite time and a log after close with a clear error', () => {
    const run = tmp();
    const log = new MetricsLogger(run, { tensorboard: false });
    expect(() => log.log(1, { loss: 1 }, { time: NaN })).toThrow(/time must be a finite number of seconds/);
    expect(() => log.log(1, JSON.parse('{"__proto__": 1}') as Record<string, number>)).toThrow(/'__proto__' cannot name a metric/);
    log.close();
    expect(() => log.log(2, { loss: 1 })).toThrow(/is closed/);
    expect(() => log.close()).not.toThrow();
  });

  it('ProgressMeter rejects an infinite or non-number total and a NaN or negative position; formatProgress does not crash', () => {
    const stream = { write: () => true, isTTY: false } as unknown as NodeJS.WritableStream;
    expect(() => new ProgressMeter({ total: Infinity, label: 'x', stream })).toThrow(/total must be ≥ 0/);
    expect(() => new ProgressMeter({ total: '10' as unknown as number, label: 'x', stream })).toThrow(/total must be ≥ 0/);
    const meter = new ProgressMeter({ total: 10, label: 'x', stream });
    expect(() => meter.update(NaN)).toThrow(/done must be a finite number ≥ 0/);
    expect(() => meter.update(-1)).toThrow(/done must be a finite number ≥ 0/);
    expect(formatProgress({ label: 'x', total: 10, done: -5, elapsedMs: 1000 })).toMatch(/^x \[-{20}\] -5\/10 0%/);
    expect(formatProgress({ label: 'x', total: 10, done: 5, elapsedMs: 1000, width: -1 })).toMatch(/^x \[\] 5\/10 50%/);
  });
});

describe('training config', () => {
  it('parseTrainConfig reports unknown sections and keys in overrides instead of dropping them', () => {
    expect(() => parseTrainConfig({}, { overrides: { ppoo: { clipRatio: 0.3 } } as unknown as TrainConfigInput })).toThrow(/overrides\.ppoo: unknown top-level key/);
    expect(() => parseTrainConfig({}, { overrides: { seeed: 3 } as unknown as TrainConfigInput })).toThrow(/overrides\.seeed: unknown top-level key/);
    expect(() => parseTrainConfig({}, { overrides: 5 as unknown as TrainConfigInput })).toThrow(/overrides: must be a mapping/);
    expect(parseTrainConfig({}, { overrides: { ppo: { clipRatio: 0.3 } } }).ppo.clipRatio).toBe(0.3);
  });

  it("parseTrainConfig rejects Object.prototype's names as fields", () => {
    for (const key of ['constructor', 'toString', 'hasOwnProperty']) {
      expect(() => parseTrainConfig({ ppo: { [key]: 1 } })).toThrow(new RegExp(`ppo\\.${key}: unknown field`));
    }
  });

  it('a __proto__ key inside a section, from JSON or YAML, is an unknown field, in the file and in overrides', () => {
    // JSON.parse and the YAML parser both make `__proto__` an own key; merging it with Object.assign set the
    // section's prototype instead, and the key was neither read nor reported.
    const fromJson = JSON.parse('{"preset":"tiny","ppo":{"__proto__":{"clipRatio":1}}}') as unknown;
    expect(() => parseTrainConfig(fromJson)).toThrow(/ppo\.__proto__: unknown field/);
    const dir = mkdtempSync(join(tmpdir(), 'proto-config-'));
    writeFileSync(join(dir, 'c.yaml'), 'preset: tiny\nsft:\n  __proto__:\n    epochs: 9\n');
    expect(() => loadTrainConfig(join(dir, 'c.yaml'))).toThrow(/sft\.__proto__: unknown field/);
    const overrides = JSON.parse('{"lora":{"__proto__":{"r":2}}}') as TrainConfigInput;
    expect(() => parseTrainConfig({}, { overrides })).toThrow(/lora\.__proto__: unknown field/);
  });

  it("a parsed config does not share lists with the preset, so editing one config leaves the next one's defaults alone", () => {
    const first = defaultTrainConfig('tiny');
    (first.collection.tasks as string[]).push('extra-task');
    expect(defaultTrainConfig('tiny').collection.tasks).not.toContain('extra-task');
  });
});

describe('exports', () => {
  it('toShareGpt rejects a trajectory with no steps with a clear error', () => {
    expect(() => toShareGpt([])).toThrow(/needs at least one step/);
  });
});
