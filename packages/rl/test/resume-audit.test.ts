// Crash consistency and resume of mlagent train: runs killed (a throw at a chosen write or callback), disks filling up
// mid-write, stale and contended locks, damaged checkpoints. Each test here failed before the fix it names.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as NodeFs from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { Gpu } from '@mlagent/core-kernels';
import { QwenModel, initModel } from '@mlagent/policy';
import { latestCheckpoint, saveCheckpoint } from '../src/checkpoint/checkpoint.js';
import { parseTrainConfig, type TrainConfigInput } from '../src/config/train-config.js';
import { readMetrics } from '../src/metrics/jsonl.js';
import { sft } from '../src/sft/sft.js';
import { lockRunDir } from '../src/train/lock.js';
import { trainPipeline } from '../src/train/pipeline.js';
import { trainPpo } from '../src/train/ppo-loop.js';
import { RolloutLog, readRollouts, type RolloutGroup } from '../src/train/rollouts.js';
import { LOOP_CONFIG, fakeCollection, fakeEnv } from './ppo-loop-fixture.js';

// Writes and reads pass through unless a test hooks one (a full disk mid-write, another run acting in between).
vi.mock('node:fs', async (importOriginal) => {
  const actual = await importOriginal<typeof NodeFs>();
  return {
    ...actual,
    writeFileSync: vi.fn(actual.writeFileSync),
    writeSync: vi.fn(actual.writeSync),
    readFileSync: vi.fn(actual.readFileSync),
    openSync: vi.fn(actual.openSync),
    fsyncSync: vi.fn(actual.fsyncSync),
    linkSync: vi.fn(actual.linkSync),
  };
});
const fs = await import('node:fs');
const actualFs = await vi.importActual<typeof NodeFs>('node:fs');
const restoreFs = () => {
  vi.mocked(fs.writeFileSync).mockImplementation(actualFs.writeFileSync);
  vi.mocked(fs.writeSync).mockImplementation(actualFs.writeSync);
  vi.mocked(fs.readFileSync).mockImplementation(actualFs.readFileSync);
  vi.mocked(fs.openSync).mockImplementation(actualFs.openSync);
  vi.mocked(fs.fsyncSync).mockImplementation(actualFs.fsyncSync);
  vi.mocked(fs.linkSync).mockImplementation(actualFs.linkSync);
};
afterEach(restoreFs);

const root = mkdtempSync(join(tmpdir(), 'rl-resume-audit-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let dirs = 0;
const newDir = () => {
  const d = join(root, `d${dirs++}`);
  mkdirSync(d);
  return d;
};

/** writeFileSync of a path matching `re` writes half its bytes, then fails as a full disk does. */
function tearWrites(re: RegExp): void {
  vi.mocked(fs.writeFileSync).mockImplementation((file, data, options) => {
    if (!re.test(String(file))) return actualFs.writeFileSync(file, data, options);
    const bytes = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data as Uint8Array);
    actualFs.writeFileSync(file, bytes.subarray(0, bytes.length >> 1));
    throw Object.assign(new Error(`ENOSPC: no space left on device, write '${String(file)}'`), { code: 'ENOSPC' });
  });
}

/** Runs `fn` (once) just before the next writeFileSync or writeSync. */
function beforeNextWrite(fn: () => void): void {
  let pending: (() => void) | null = fn;
  const fire = () => {
    const f = pending;
    pending = null;
    f?.();
  };
  vi.mocked(fs.writeFileSync).mockImplementation((...args: Parameters<typeof actualFs.writeFileSync>) => (fire(), actualFs.writeFileSync(...args)));
  vi.mocked(fs.writeSync).mockImplementation(((...args: Parameters<typeof actualFs.writeSync>) => (fire(), (actualFs.writeSync as (...a: unknown[]) => number)(...args))) as typeof actualFs.writeSync);
}

/** Runs `fn` (once) right after the next read of a file named `name`. */
function afterNextRead(name: string, fn: () => void): void {
  let pending: (() => void) | null = fn;
  vi.mocked(fs.readFileSync).mockImplementation(((path: NodeFs.PathOrFileDescriptor, options?: unknown) => {
    const out = (actualFs.readFileSync as (p: unknown, o?: unknown) => string | Buffer)(path, options);
    if (pending && String(path).endsWith(`/${name}`)) {
      const f = pending;
      pending = null;
      f();
    }
    return out;
  }) as typeof actualFs.readFileSync);
}

/** From now on, the path of every file fsynced, in order (what a power cut cannot take back). */
function recordSyncs(): string[] {
  const synced: string[] = [];
  const paths = new Map<number, string>();
  vi.mocked(fs.openSync).mockImplementation(((path: NodeFs.PathLike, flags?: NodeFs.OpenMode, mode?: NodeFs.Mode) => {
    const fd = actualFs.openSync(path, flags ?? 'r', mode);
    paths.set(fd, String(path));
    return fd;
  }) as typeof actualFs.openSync);
  vi.mocked(fs.fsyncSync).mockImplementation((fd) => {
    actualFs.fsyncSync(fd);
    synced.push(paths.get(fd) ?? `fd ${fd}`);
  });
  return synced;
}

/** Where the first fsync of a path matching `re` came, failing when none did. */
function syncedAt(synced: string[], re: RegExp): number {
  const i = synced.findIndex((p) => re.test(p));
  if (i < 0) throw new Error(`no file matching ${re} was fsynced`);
  return i;
}

/** Whether `fn` threw; its error kept. */
function attempt(fn: () => () => void): { ok: boolean; error?: Error } {
  try {
    fn();
    return { ok: true };
  } catch (e) {
    return { ok: false, error: e as Error };
  }
}

describe('run directory lock', () => {
  it('a lock still being written is not taken for a dead run\'s: of two runs starting at once, one gets it', () => {
    const dir = newDir();
    let second: { ok: boolean; error?: Error } | undefined;
    // The second run looks while the first is writing its lock: it used to read an empty file (pid 0, "dead"),
    // delete the first run's lock and take its own, and both ran.
    beforeNextWrite(() => (second = attempt(() => lockRunDir(dir, 'second'))));
    const first = attempt(() => lockRunDir(dir, 'first'));
    restoreFs();
    expect(second).toBeDefined();
    expect([first.ok, second!.ok].filter(Boolean)).toHaveLength(1);
    expect((first.error ?? second!.error)!.message).toMatch(/another run \(pid \d+\) is writing/);
  });

  it('of two runs taking over a dead run\'s lock at once, only one gets it', () => {
    const dir = newDir();
    writeFileSync(join(dir, '.lock'), '99999999'); // above any pid_max: dead
    let second: { ok: boolean; error?: Error } | undefined;
    // The second run takes the stale lock over between the first's look at it and its removal: the first removed
    // the second's fresh lock by name and took its own.
    afterNextRead('.lock', () => (second = attempt(() => lockRunDir(dir, 'second'))));
    const first = attempt(() => lockRunDir(dir, 'first'));
    restoreFs();
    expect(second).toBeDefined();
    expect([first.ok, second!.ok].filter(Boolean)).toHaveLength(1);
  });

  it('takes over a lock whose pid now belongs to another process (the killed writer\'s pid reused)', async () => {
    const dir = newDir();
    lockRunDir(dir, 'killed run'); // never released: the run was killed
    writeFileSync(join(dir, '.lock.99999999.0badc0de'), ''); // what a run killed while taking the lock leaves
    const other = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      await new Promise((r) => other.once('spawn', r));
      const file = join(dir, '.lock');
      // The same lock, as if the dead writer's pid had been given to this other (live, unrelated) process.
      writeFileSync(file, readFileSync(file, 'utf8').replace(new RegExp(`\\b${process.pid}\\b`), String(other.pid)));
      const release = lockRunDir(dir, 'resumed run');
      expect(readFileSync(file, 'utf8')).toContain(String(process.pid));
      release();
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      other.kill('SIGKILL');
    }
  });
  it('still locks on a file system without hard links (created exclusively instead)', () => {
    const dir = newDir();
    vi.mocked(fs.linkSync).mockImplementation(() => {
      throw Object.assign(new Error('EPERM: operation not permitted, link'), { code: 'EPERM' });
    });
    const release = lockRunDir(dir, 'first');
    expect(() => lockRunDir(dir, 'second')).toThrow(/^second: another run \(pid \d+\) is writing to/);
    release();
    expect(readdirSync(dir)).toEqual([]);
  });
});

// A run as small as one can be (as train-pipeline.test.ts's), for the checks before any stage runs.
const SMALL: TrainConfigInput = {
  preset: 'tiny',
  sft: { epochs: 1, probeStates: 0, batchSize: 2 },
  ppo: { editStateShare: null, iterations: 1, statesPerIteration: 1, samplesPerState: 2, generationBatch: 2, minibatchSize: 2, ptxBatchSize: 1, maxNewTokens: 8, episodeMaxSteps: 2 },
  collection: { tasks: ['house-prices'], trajectories: 1, ideas: 1, candidateIdeas: 2, maxSteps: 2, concurrency: 1 },
  eval: { tasks: ['house-prices'], trajectories: 1, maxSteps: 1 },
};

describe('mlagent train pipeline', () => {
  it('a disk that fills up while a resume records its retuned config keeps the run\'s train-config.json whole', async () => {
    const out = newDir();
    const file = join(out, 'train-config.json');
    const saved = JSON.stringify(parseTrainConfig(SMALL), null, 2) + '\n';
    writeFileSync(file, saved);
    tearWrites(/train-config\.json/);
    // ppo.checkpointEvery may change on resume: the record is rewritten, and was torn in place.
    const retuned = { ...SMALL, ppo: { ...SMALL.ppo, checkpointEvery: 2 } };
    await expect(trainPipeline({ out, config: retuned, resume: true, signal: AbortSignal.abort(), log: () => {}, progress: false })).rejects.toThrow(/ENOSPC/);
    restoreFs();
    expect(readFileSync(file, 'utf8')).toBe(saved);
    expect(readdirSync(out).filter((f) => f.startsWith('train-config.json.'))).toEqual([]);
  }, 60_000);

  it('killed while it writes the random policy (model/), a resume makes it again rather than keep a torn one', async () => {
    const out = newDir();
    // The kill comes as model/config.json is half written: it is what marked the policy as made.
    tearWrites(/\/model[^/]*\/config\.json$/);
    await expect(trainPipeline({ out, config: SMALL, signal: AbortSignal.abort(), log: () => {}, progress: false })).rejects.toThrow(/ENOSPC/);
    restoreFs();
    // Stopped at once: the resume ends at the collection, past the policy.
    await expect(trainPipeline({ out, config: SMALL, resume: true, signal: AbortSignal.abort(), log: () => {}, progress: false })).rejects.toThrow(/stopped during the collection/);
    expect(JSON.parse(readFileSync(join(out, 'model', 'config.json'), 'utf8'))).toMatchObject({ model_type: expect.any(String) });
    expect(readdirSync(join(out, 'model'))).toContain('generation_config.json');
    expect(readdirSync(out).filter((f) => f.startsWith('model.'))).toEqual([]);
  }, 120_000);

  it('names a damaged ppo/ppo-summary.json (a finished PPO stage) instead of failing with a bare SyntaxError', async () => {
    const out = newDir();
    // SFT and PPO finished (their markers), the PPO summary damaged.
    mkdirSync(join(out, 'sft'));
    writeFileSync(join(out, 'sft', 'sft-summary.json'), '{}\n');
    mkdirSync(join(out, 'ppo'));
    const summary = join(out, 'ppo', 'ppo-summary.json');
    writeFileSync(summary, '{"adapterDir": "/x", "rewa');
    await expect(trainPipeline({ out, config: SMALL, log: () => {}, progress: false })).rejects.toThrow(
      new RegExp(`^train: cannot read ${summary} \\(.*\\); delete it and run again with --resume to rebuild it from PPO's last checkpoint$`),
    );
  }, 120_000);

  it('refuses to resume a run another process is still running, before writing anything', async () => {
    const out = newDir();
    const file = join(out, 'train-config.json');
    const saved = JSON.stringify(parseTrainConfig(SMALL), null, 2) + '\n';
    writeFileSync(file, saved);
    writeFileSync(join(out, '.lock'), String(process.pid)); // a live run
    // Stopped at once, so a run that gets past the lock ends at the collection with TrainStoppedError.
    await expect(trainPipeline({ out, config: SMALL, resume: true, signal: AbortSignal.abort(), log: () => {}, progress: false })).rejects.toThrow(/^train: another run \(pid \d+\) is writing to/);
    expect(readdirSync(out).sort()).toEqual(['.lock', 'train-config.json']);
  }, 120_000);
});

describe('SFT', () => {
  let gpu: Gpu;
  let model: QwenModel;
  let modelDir: string;
  let dataPath: string;
  const config: TrainConfigInput = {
    preset: 'tiny',
    seed: 3,
    lora: { rank: 4, alpha: 8, dropout: 0.1, targets: ['q_proj', 'v_proj'] },
    sft: { epochs: 1, batchSize: 3, gradAccum: 1, evalFraction: 0.15, lr: 1e-2, warmupRatio: 0, maxSeqLen: 64 },
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
  afterAll(() => model?.dispose());

  it('killed (a full disk) writing sft-summary.json, it leaves no torn summary, and the resume reports the same losses; what each marker vouches for is fsynced first', async () => {
    const out = newDir();
    tearWrites(/sft-summary\.json/);
    let synced = recordSyncs();
    await expect(sft({ modelDir, data: dataPath, out, config, gpu, model, progress: false, log: () => {} })).rejects.toThrow(/ENOSPC/);
    restoreFs();
    // The metrics lines up to the checkpoint reach the disk before it does (after a power cut the resume would not
    // log them again).
    expect(syncedAt(synced, /\/metrics\.jsonl$/)).toBeLessThan(syncedAt(synced, /\/\.tmp-step-\d+-[^/]*\/checkpoint\.json$/));
    // The pipeline skips SFT once the file exists: a torn one would pass for a finished stage.
    expect(readdirSync(out).filter((f) => f.startsWith('sft-summary.json'))).toEqual([]);
    const last = latestCheckpoint(out)!;
    synced = recordSyncs();
    const resumed = await sft({ modelDir, data: dataPath, out, config, gpu, model, progress: false, resume: true, log: () => {} });
    restoreFs();
    // The adapter is durable before the summary that makes the pipeline skip SFT from then on.
    expect(syncedAt(synced, /\/adapter\/adapter_model\.safetensors$/)).toBeLessThan(syncedAt(synced, /sft-summary\.json\.tmp-/));
    expect(resumed.resumedFrom).toBe(last.step);
    expect(resumed.steps).toBe(resumed.totalSteps);
    // Resumed from the last checkpoint, it reported the untrained model's held-out loss as the final one.
    const metrics = readMetrics(join(out, 'metrics.jsonl'));
    const final = metrics[metrics.length - 1];
    expect(final.step).toBe(resumed.steps);
    expect(resumed.evalLoss).toBe(final.values.evalLoss);
    expect(resumed.evalLoss).not.toBe(resumed.initialEvalLoss);
    expect(resumed.trainLoss).toBe(final.values.loss);
    expect(JSON.parse(readFileSync(join(out, 'sft-summary.json'), 'utf8'))).toMatchObject({ evalLoss: resumed.evalLoss, trainLoss: resumed.trainLoss });
  }, 300_000);

  it('refuses to resume when every checkpoint is damaged, naming the file, rather than start over', async () => {
    const out = newDir();
    await saveCheckpoint(out, { step: 1, extra: { fingerprint: 'x' }, files: { 'optimizer.safetensors': 'optimizer state' } });
    const optimizer = join(latestCheckpoint(out)!.dir, 'optimizer.safetensors');
    writeFileSync(optimizer, 'optimizer STATE'); // same size, other bytes
    // Stopped at once: a run that starts over anyway ends after one step.
    const e = await sft({ modelDir, data: dataPath, out, config, gpu, model, progress: false, resume: true, signal: AbortSignal.abort(), log: () => {} }).then(
      () => null,
      (err: Error) => err,
    );
    expect(e?.message).toMatch(/^sft: cannot resume .*no checkpoint verifies \(.*step-00000001: optimizer\.safetensors does not match its SHA-256\)/);
    // The damaged checkpoint is still there to be repaired (a new run's first save pruned it).
    expect(readdirSync(join(out, 'checkpoints'))).toEqual(['step-00000001']);
  }, 300_000);

  it('refuses to write where another run is writing', async () => {
    const out = newDir();
    writeFileSync(join(out, '.lock'), String(process.pid)); // a live run
    await expect(sft({ modelDir, data: dataPath, out, config, gpu, model, progress: false, signal: AbortSignal.abort(), log: () => {} })).rejects.toThrow(/^sft: another run \(pid \d+\) is writing to/);
    expect(readdirSync(out)).toEqual(['.lock']);
  }, 300_000);
});

describe('PPO', () => {
  let gpu: Gpu;
  let model: QwenModel;
  let modelDir: string;
  let collection: string;
  // Two iterations, one checkpoint at the end.
  const config: TrainConfigInput = { ...LOOP_CONFIG, ppo: { ...LOOP_CONFIG.ppo, iterations: 2, checkpointEvery: 2 } };

  beforeAll(async () => {
    modelDir = newDir();
    initModel({ arch: 'qwen2', preset: 'tiny', outDir: modelDir, seed: 0 });
    collection = join(root, 'collect');
    await fakeCollection(collection);
    gpu = await Gpu.create();
    model = await QwenModel.load(gpu, modelDir, { packWeights: true });
  }, 120_000);
  afterAll(() => model?.dispose());

  it('killed before its first checkpoint, then at ppo-summary.json: metrics hold each iteration once and are fsynced before each checkpoint, no torn summary, the final adapter fsynced before it, damaged checkpoints refused', async () => {
    const out = newDir();
    const run = (more: Partial<Parameters<typeof trainPpo>[0]>) => trainPpo({ modelDir, collection, out, config, env: fakeEnv(), gpu, model, progress: false, log: () => {}, ...more });
    // Killed after iteration 1 was logged, before any checkpoint.
    await expect(
      run({
        onIteration: (i) => {
          if (i.iteration === 1) throw new Error('killed');
        },
      }),
    ).rejects.toThrow('killed');
    expect(latestCheckpoint(out)).toBeNull();

    // Resumed (from the saved rollouts), and the disk fills up as it writes its summary.
    tearWrites(/ppo-summary\.json/);
    let synced = recordSyncs();
    await expect(run({ resume: true })).rejects.toThrow(/ENOSPC/);
    restoreFs();
    expect(syncedAt(synced, /\/metrics\.jsonl$/)).toBeLessThan(syncedAt(synced, /\/\.tmp-step-00000002-[^/]*\/checkpoint\.json$/));
    // The pipeline reads the file once it exists: torn, the run could never get past PPO.
    expect(readdirSync(out).filter((f) => f.startsWith('ppo-summary.json'))).toEqual([]);
    // Iteration 1 was redone: its lines used to stay in front of the redone ones.
    const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as { step: number; task?: string });
    const keys = lines.map((l) => `${l.step}/${l.task ?? ''}`);
    expect(keys.filter((k) => k === '1/')).toHaveLength(1);
    expect(new Set(keys).size).toBe(keys.length);

    // Resumed again: from the final checkpoint, the summary is written.
    synced = recordSyncs();
    const done = await run({ resume: true });
    restoreFs();
    const summaryAt = syncedAt(synced, /ppo-summary\.json\.tmp-/);
    expect(syncedAt(synced, new RegExp(`^${out}/adapter/adapter_model\\.safetensors$`))).toBeLessThan(summaryAt);
    expect(syncedAt(synced, new RegExp(`^${out}/critic/`))).toBeLessThan(summaryAt);
    expect(done).toMatchObject({ iterations: 2, stopped: false, resumedFrom: 2 });
    expect(done.rewards).toHaveLength(2);
    expect(JSON.parse(readFileSync(join(out, 'ppo-summary.json'), 'utf8'))).toEqual(JSON.parse(JSON.stringify(done)));

    // Every checkpoint damaged: refused, naming the file, rather than a silent restart from the SFT adapter.
    const adapter = join(latestCheckpoint(out)!.dir, 'adapter', 'adapter_model.safetensors');
    const bytes = readFileSync(adapter);
    bytes[bytes.length - 1] ^= 0xff;
    writeFileSync(adapter, bytes);
    const e = await run({ resume: true, signal: AbortSignal.abort() }).then(
      () => null,
      (err: Error) => err,
    );
    expect(e?.message).toMatch(/^ppo: cannot resume .*no checkpoint verifies \(.*step-00000002: adapter\/adapter_model\.safetensors does not match its SHA-256\)/);
  }, 600_000);
});

describe('rollouts.jsonl', () => {
  it('a short write (a disk nearly full) does not tear a saved rollout group', () => {
    const dir = newDir();
    const group = (g: number): RolloutGroup => ({ iteration: 0, group: g, task: 't', state: `s${g}`, metricBefore: null, prompts: [[1, 2]], samples: [], generateSeconds: 0.5 });
    const log = new RolloutLog(dir);
    // The first write takes half the bytes it is given and returns their count, as write(2) does when the disk
    // has room for only part of them.
    let short = true;
    vi.mocked(fs.writeSync).mockImplementation(((fd: number, data: string | Uint8Array, offset?: number, length?: number) => {
      const bytes = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      const from = typeof data === 'string' ? 0 : (offset ?? 0);
      const end = typeof data === 'string' ? bytes.length : from + (length ?? bytes.length - from);
      const take = short ? (end - from) >> 1 : end - from;
      short = false;
      return actualFs.writeSync(fd, bytes, from, take);
    }) as typeof actualFs.writeSync);
    log.append(group(0));
    log.append(group(1));
    restoreFs();
    log.close();
    const saved = readRollouts(dir).get(0);
    expect([...(saved?.keys() ?? [])]).toEqual([0, 1]);
    expect(saved!.get(0)).toEqual(group(0));
  });
});
