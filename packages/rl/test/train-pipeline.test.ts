// mlagent train's pipeline refuses what cannot work before the work it would waste: unknown tasks before anything
// is written, a resume with another config than its run's, a ppo.editStateShare the collection cannot meet before
// SFT; and a stopped run ends with TrainStoppedError.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseTrainConfig, type TrainConfigInput } from '../src/config/train-config.js';
import { TrainInputError, TrainStoppedError } from '../src/train/errors.js';
import { trainPipeline } from '../src/train/pipeline.js';

const root = mkdtempSync(join(tmpdir(), 'rl-train-pipeline-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let runs = 0;
const newOut = () => join(root, `run-${runs++}`);

// A run as small as one can be: one two-step expert trajectory, one PPO iteration, one evaluation step.
const SMALL: TrainConfigInput = {
  preset: 'tiny',
  sft: { epochs: 1, probeStates: 0, batchSize: 2 },
  ppo: { editStateShare: null, iterations: 1, statesPerIteration: 1, samplesPerState: 2, generationBatch: 2, minibatchSize: 2, ptxBatchSize: 1, maxNewTokens: 8, episodeMaxSteps: 2 },
  collection: { tasks: ['house-prices'], trajectories: 1, ideas: 1, candidateIdeas: 2, maxSteps: 2, concurrency: 1 },
  eval: { tasks: ['house-prices'], trajectories: 1, maxSteps: 1 },
};
const run = (out: string, config: TrainConfigInput, more: { resume?: boolean; signal?: AbortSignal; modelPreset?: 'tiny' | 'mini' } = {}) =>
  trainPipeline({ out, config, log: () => {}, progress: false, ...more });

/** The error a run ends with (it must end with one). */
async function failure(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('the run did not fail');
}

describe('mlagent train checks its input first', () => {
  it('names an unknown task of collection.tasks or eval.tasks before writing anything', async () => {
    const cases: [string, TrainConfigInput][] = [
      ['eval.tasks', { ...SMALL, eval: { ...SMALL.eval, tasks: ['house-prices', 'nosuchtask'] } }],
      ['collection.tasks', { ...SMALL, collection: { ...SMALL.collection, tasks: ['nosuchtask'] } }],
    ];
    for (const [field, config] of cases) {
      const out = newOut();
      const e = await failure(run(out, config));
      expect(e).toBeInstanceOf(TrainInputError);
      expect(e.message).toMatch(new RegExp(`^train: ${field.replace('.', '\\.')}: unknown task 'nosuchtask' \\(known: [^)]*house-prices`));
      expect(e.message).not.toContain('\n');
      expect(existsSync(out)).toBe(false);
    }
  });

  it('refuses to resume a run with another config, naming the fields, and keeps its train-config.json', async () => {
    const out = newOut();
    mkdirSync(out);
    const file = join(out, 'train-config.json');
    // As the run wrote it; eval.tasks unknown, so a resume that passes the config check stops at the task check.
    const started = { ...SMALL, eval: { ...SMALL.eval, tasks: ['nosuchtask'] } };
    const saved = JSON.stringify(parseTrainConfig(started), null, 2) + '\n';
    writeFileSync(file, saved);

    const other = await failure(run(out, { ...started, lora: { rank: 8, alpha: 16 } }, { resume: true }));
    expect(other).toBeInstanceOf(TrainInputError);
    expect(other.message).toBe(
      `train: ${out} holds a run made with another config (lora.rank: 64 in the run, 8 now; lora.alpha: 128 in the run, 16 now); ` +
        `resume it with the config it started with (--config ${file}), or start a new run with another --out`,
    );
    // --model-preset is part of the config it records.
    expect((await failure(run(out, started, { resume: true, modelPreset: 'tiny' }))).message).toMatch(/another config \(init\.size: "mini" in the run, "tiny" now\)/);
    expect(readFileSync(file, 'utf8')).toBe(saved);

    // The same config passes (to the task check); so does a file from before a field existed (it takes its default).
    const old = JSON.parse(saved);
    delete old.ppo.poolSampling;
    writeFileSync(file, JSON.stringify(old));
    for (const config of [started, parseTrainConfig(JSON.parse(saved))]) {
      expect((await failure(run(out, config, { resume: true }))).message).toMatch(/^train: eval\.tasks: unknown task 'nosuchtask'/);
    }
  });

  it('resumes with another ppo.microBatchSize or sft.activationCheckpointing (how the work is split), recording it', async () => {
    const out = newOut();
    mkdirSync(out);
    const file = join(out, 'train-config.json');
    writeFileSync(file, JSON.stringify(parseTrainConfig(SMALL), null, 2) + '\n');
    const lines: string[] = [];
    const retuned: TrainConfigInput = { ...SMALL, sft: { ...SMALL.sft, activationCheckpointing: true }, ppo: { ...SMALL.ppo, microBatchSize: 1 } };
    // Stopped at once: it gets past the checks to the collection.
    const e = await failure(trainPipeline({ out, config: retuned, resume: true, signal: AbortSignal.abort(), log: (l) => lines.push(l), progress: false }));
    expect(e).toBeInstanceOf(TrainStoppedError);
    expect(lines[0]).toBe('train: resuming with another sft.activationCheckpointing: false in the run, true now; ppo.microBatchSize: null in the run, 1 now: these change how the work is split or saved, not its results');
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual(parseTrainConfig(retuned));
  }, 60_000);

  it('finds a ppo.editStateShare its collection cannot meet right after the collection, before SFT', async () => {
    const out = newOut();
    // The scripted expert's first two steps read files: no state where it edited one.
    const e = await failure(run(out, { ...SMALL, ppo: { ...SMALL.ppo, editStateShare: 0.5 } }));
    expect(e).toBeInstanceOf(TrainInputError);
    expect(e.message).toBe(`train: ppo.editStateShare is 0.5, but the collection at ${join(out, 'collect')} has no state where the expert edited a file; set it to null or 0 in the config of a new run (another --out)`);
    expect(existsSync(join(out, 'collect', 'steps.jsonl'))).toBe(true);
    expect(existsSync(join(out, 'sft'))).toBe(false);
  }, 60_000);

  it('ends a stopped run with TrainStoppedError', async () => {
    const e = await failure(run(newOut(), SMALL, { signal: AbortSignal.abort() }));
    expect(e).toBeInstanceOf(TrainStoppedError);
    expect(e.message).toBe('train: stopped during the collection; run again with --resume to continue');
  }, 60_000);
});
