// Files users hand to rl (SFT data, collections, configs, eval and metrics files), read in their malformed or
// unusual forms: each test here failed before the fix it names.
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as NodeFs from 'node:fs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { readSftData, toChat } from '../src/sft/data.js';
import { epochBatches, trainEvalSplit } from '../src/sft/batches.js';
import { readCollection, rewriteCollection } from '../src/collect/records.js';
import { exportShareGPT, exportSftSteps } from '../src/collect/export.js';
import { StatesPool } from '../src/pool/states-pool.js';
import { loadTrainConfig, parseTrainConfig, type TrainConfigInput } from '../src/config/train-config.js';
import { checkSameRun, evalComplete, readFinished, type EvalRunIdentity } from '../src/eval/resume.js';
import { MetricsLogger, readMetrics, truncateMetricsAfter } from '../src/metrics/jsonl.js';
import { problemsOf } from './config-fixture.js';

// Writes pass through unless a test makes one fail (a full disk or a kill in the middle of a write).
vi.mock('node:fs', async (importOriginal) => {
  const actual = await importOriginal<typeof NodeFs>();
  return { ...actual, writeFileSync: vi.fn(actual.writeFileSync) };
});
const fs = await import('node:fs');
const actualFs = await vi.importActual<typeof NodeFs>('node:fs');
afterEach(() => {
  vi.mocked(fs.writeFileSync).mockImplementation(actualFs.writeFileSync);
});

const tmp = () => mkdtempSync(join(tmpdir(), 'rl-data-audit-'));


/** A minimal complete trajectory of `n` steps, as the collection writes it. */
function trajectory(id: string, n: number): object[] {
  const task = id.split('/')[0];
  const steps = Array.from({ length: n }, (_, i) => ({
    type: 'step',
    trajectory: id,
    task,
    step: i + 1,
    expert: 'scripted',
    seedIdeas: [],
    messages: [
      { role: 'system', content: 'sys' },
      { role: 'user', content: `task ${task}` },
    ],
    prompt: `prompt ${i}`,
    response: `response ${i}`,
    action: 'List Files',
    actionInput: {},
    observation: 'obs',
    outcome: 'ok',
    metric: null,
    metricBefore: 0.5,
    stateBefore: `${id}-s${i}`,
    stateAfter: `${id}-s${i + 1}`,
    feedback: {},
    durationSec: 1,
    done: i === n - 1,
  }));
  const end = { type: 'end', trajectory: id, task, expert: 'scripted', steps: n, seedIdeas: [], seedCandidates: [], ideaIndices: [], finalMetric: null, bestMetric: null, finalAnswer: true };
  return [...steps, end];
}
const jsonl = (records: object[]) => records.map((r) => `${JSON.stringify(r)}\n`).join('');

describe('SFT data files', () => {
  it('a ShareGPT turn from "constructor", "toString" or "__proto__" is refused, not given a function as its role', () => {
    for (const from of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) {
      const example = JSON.parse(`{"conversations":[{"from":${JSON.stringify(from)},"value":"x"},{"from":"gpt","value":"y"}]}`) as unknown;
      expect(() => toChat(example, 'data.jsonl:3')).toThrow(/data\.jsonl:3: conversations\[0\] needs from human\|gpt\|system/);
    }
  });

  it('reads a file with a BOM and CRLF line ends (a Windows editor), and a .JSON list by its extension in any case', () => {
    const dir = tmp();
    const file = join(dir, 'data.jsonl');
    writeFileSync(file, '\uFEFF{"prompt":"a","response":"b"}\r\n{"prompt":"c","response":"d"}\r\n');
    expect(readSftData(file)).toEqual([
      [
        { role: 'user', content: 'a' },
        { role: 'assistant', content: 'b' },
      ],
      [
        { role: 'user', content: 'c' },
        { role: 'assistant', content: 'd' },
      ],
    ]);
    const list = join(dir, 'DATA.JSON');
    writeFileSync(list, '[\n{"prompt":"a","response":"b"},\n{"prompt":"c","response":"d"}\n]\n');
    expect(readSftData(list)).toHaveLength(2);
  });

  it('bytes that are not UTF-8 are an error naming their line, not U+FFFD characters trained on', () => {
    const file = join(tmp(), 'data.jsonl');
    const good = Buffer.from('{"prompt":"a","response":"b"}\n');
    writeFileSync(file, Buffer.concat([good, Buffer.from('{"prompt":"caf'), Buffer.from([0xe9]), Buffer.from('","response":"b"}\n'), good]));
    expect(() => readSftData(file)).toThrow(`${file}:2: not valid UTF-8 text`);
  });
});

describe('SFT batching ranges', () => {
  it('epochBatches refuses a batch size that is NaN, 0 or negative (0 never advanced: a hang)', () => {
    const o = { seed: 0, epoch: 0, bucketing: false };
    // NaN first: before the fix it returned [] (no batches), where 0 would have hung this test.
    for (const batchSize of [NaN, 1.5, 0, -2]) expect(() => epochBatches([0, 1, 2, 3], () => 1, { ...o, batchSize })).toThrow(/batchSize must be an integer >= 1/);
    expect(epochBatches([0, 1, 2], () => 1, { ...o, batchSize: 2 }).flat().sort()).toEqual([0, 1, 2]);
  });

  it('trainEvalSplit refuses a negative or NaN eval fraction instead of holding out most of the data', () => {
    for (const f of [-0.2, NaN, 1]) expect(() => trainEvalSplit(10, f, 0)).toThrow(/evalFraction must be a number in \[0, 1\)/);
    expect(() => trainEvalSplit(-1, 0.1, 0)).toThrow(/n must be a non-negative integer/);
    expect(trainEvalSplit(10, 0, 0).eval).toEqual([]);
  });
});

describe('training config files', () => {
  it('an unknown key names the known one it is a typo or another case of', () => {
    expect(problemsOf(() => parseTrainConfig({ ppo: { actorLR: 1e-6, klcoef: 0.1, clipRatoi: 0.2 } }))).toEqual([
      expect.stringMatching(/^ppo\.actorLR: unknown field, did you mean 'actorLr'\? \(known: iterations, /),
      expect.stringMatching(/^ppo\.klcoef: unknown field, did you mean 'klCoef'\? \(known: /),
      expect.stringMatching(/^ppo\.clipRatoi: unknown field, did you mean 'clipRatio'\? \(known: /),
    ]);
    expect(problemsOf(() => parseTrainConfig({ PPO: {} }))).toEqual([expect.stringMatching(/^PPO: unknown top-level key, did you mean 'ppo'\? \(known: /)]);
    expect(problemsOf(() => parseTrainConfig({}, { overrides: { seeed: 1 } as unknown as TrainConfigInput }))).toEqual([expect.stringMatching(/^overrides\.seeed: unknown top-level key, did you mean 'seed'\?/)]);
    // Nothing near: no guess.
    expect(problemsOf(() => parseTrainConfig({ sft: { zzz: 1 } }))).toEqual([expect.stringMatching(/^sft\.zzz: unknown field \(known: /)]);
  });

  it('a seed of 2^32 or more is refused: the generators keep its low 32 bits, so it repeated seed 0', () => {
    expect(problemsOf(() => parseTrainConfig({ seed: 2 ** 32 }))).toEqual(['seed: must be an integer in [0, 4294967295], got 4294967296']);
    expect(problemsOf(() => parseTrainConfig({}, { overrides: { seed: 1e20 } }))).toEqual([expect.stringMatching(/^seed: must be an integer in \[0, 4294967295\]/)]);
    expect(parseTrainConfig({ seed: 2 ** 32 - 1 }).seed).toBe(2 ** 32 - 1);
  });

  it('loads a JSON config with a BOM (Notepad writes one)', () => {
    const json = join(tmp(), 'run.json');
    writeFileSync(json, '\uFEFF{"seed": 3, "ppo": {"iterations": 2}}\n');
    expect(loadTrainConfig(json).ppo.iterations).toBe(2);
  });

  it('a JSON config that repeats a key is refused, naming the line, instead of keeping only the last', () => {
    const json = join(tmp(), 'run.json');
    writeFileSync(json, '{\n  "ppo": {"actorLr": 1e-5},\n  "seed": 1,\n  "ppo": {"iterations": 2}\n}\n');
    expect(() => loadTrainConfig(json)).toThrow(/cannot parse: a key is repeated, and JSON would keep only the last: at line 4, column 3/);
    writeFileSync(json, '{"ppo": {"iterations": 2, "iterations": 3}}');
    expect(() => loadTrainConfig(json)).toThrow(/a key is repeated.*line 1, column 27/);
    writeFileSync(json, '{"ppo": {"iterations": 2}, "sft": {"epochs": 2}}');
    expect(loadTrainConfig(json).ppo.iterations).toBe(2);
  });

  it("reads YAML merge keys instead of refusing a field named '<<'", () => {
    const yaml = join(tmp(), 'run.yaml');
    writeFileSync(yaml, 'collection:\n  tasks: &tasks [house-prices]\n  maxSteps: &steps 6\neval:\n  <<: { maxSteps: *steps, tasks: *tasks }\n  trajectories: 2\n');
    const c = loadTrainConfig(yaml);
    expect(c.eval).toMatchObject({ maxSteps: 6, tasks: ['house-prices'], trajectories: 2 });
  });
});

describe('parse errors and empty files', () => {
  it('a .json data or config file that does not parse is named with the line and column of the fault', () => {
    const dir = tmp();
    const data = join(dir, 'data.json');
    writeFileSync(data, '[\n {"prompt": "a", "response": "b"},\n {"prompt": "c" "response": "d"}\n]\n');
    expect(() => readSftData(data)).toThrow(/data\.json: not valid JSON \(.*at position \d+ \(line 3, column 17\)\)/);
    const config = join(dir, 'run.json');
    writeFileSync(config, '{\n  "seed": 1,\n  "ppo": {"iterations": 2,}\n}\n');
    expect(() => loadTrainConfig(config)).toThrow(/cannot parse: .* \(line 3, column 27\)/);
  });

  it('an empty or comment-only config file is refused instead of running with every default', () => {
    const dir = tmp();
    for (const text of ['', '\n', '# ppo:\n#   iterations: 2\n']) {
      writeFileSync(join(dir, 'run.yaml'), text);
      expect(() => loadTrainConfig(join(dir, 'run.yaml'))).toThrow(/run\.yaml:\n {2}the file holds no settings; write \{\} to mean every default/);
    }
    writeFileSync(join(dir, 'run.yaml'), '{}\n');
    expect(loadTrainConfig(join(dir, 'run.yaml')).preset).toBe('default');
  });

  it('a YAML config of several documents says so', () => {
    const file = join(tmp(), 'run.yaml');
    writeFileSync(file, 'preset: tiny\n---\nseed: 2\n');
    expect(() => loadTrainConfig(file)).toThrow(/the file holds 2 YAML documents \(separated by '---' lines\); a config is one/);
    writeFileSync(file, '---\npreset: tiny\n...\n');
    expect(loadTrainConfig(file).preset).toBe('tiny');
    writeFileSync(file, 'ppo: [unclosed');
    expect(() => loadTrainConfig(file)).toThrow(/cannot parse: .*line 1/s);
  });
});

describe('collection files', () => {
  it('keeps a whole last record that lacks its newline, and a resume rewrite then ends it, instead of dropping the trajectory', () => {
    const file = join(tmp(), 'steps.jsonl');
    writeFileSync(file, jsonl(trajectory('a/0000', 2)).replace(/\n$/, ''));
    const read = readCollection(file);
    expect(read.records).toHaveLength(3);
    expect(read.complete).toEqual(new Set(['a/0000']));
    expect(read.clean).toBe(false); // the runner rewrites it, so the next append starts a line of its own
    rewriteCollection(file, read.records);
    expect(readFileSync(file, 'utf8').endsWith('}\n')).toBe(true);
    expect(readCollection(file)).toMatchObject({ dropped: 0, clean: true });
    // A line really cut off by a kill is still dropped.
    writeFileSync(file, jsonl(trajectory('a/0000', 2)) + '{"type":"step","traj');
    expect(readCollection(file)).toMatchObject({ dropped: 1, clean: false });
  });

  it('reads the first record after a BOM', () => {
    const file = join(tmp(), 'steps.jsonl');
    writeFileSync(file, '\uFEFF' + jsonl(trajectory('a/0000', 1)));
    expect(readCollection(file)).toMatchObject({ dropped: 0, clean: true });
    expect(readCollection(file).complete.has('a/0000')).toBe(true);
  });

  it('drops a trajectory whose step lacks the chat or texts, instead of the export failing on it as a TypeError', () => {
    const dir = tmp();
    const file = join(dir, 'steps.jsonl');
    const bad = trajectory('b/0000', 2);
    delete (bad[1] as Record<string, unknown>).messages;
    const worse = trajectory('c/0000', 1);
    (worse[0] as Record<string, unknown>).stateBefore = null;
    writeFileSync(file, jsonl([...trajectory('a/0000', 2), ...bad, ...worse, null as unknown as object]));
    const read = readCollection(file);
    expect([...read.complete]).toEqual(['a/0000']);
    expect(read.dropped).toBe(3 + 2 + 1);
    expect(exportShareGPT(file, join(dir, 'sharegpt.jsonl'))).toBe(1);
    expect(StatesPool.fromCollection(dir).states.map((s) => s.snapshotId)).toEqual(['a/0000-s0', 'a/0000-s1']);
  });

  it('a steps file that is a directory is an error naming it', () => {
    const dir = tmp();
    mkdirSync(join(dir, 'steps.jsonl'));
    expect(() => readCollection(join(dir, 'steps.jsonl'))).toThrow(`cannot read the collection ${join(dir, 'steps.jsonl')}: EISDIR`);
  });
});

describe('collection exports', () => {
  it('refuses to export a collection onto its own steps file, directly or through a link, leaving it whole', () => {
    const dir = tmp();
    const file = join(dir, 'steps.jsonl');
    const text = jsonl(trajectory('a/0000', 2));
    writeFileSync(file, text);
    expect(() => exportSftSteps(file, file)).toThrow(/onto itself/);
    expect(() => exportShareGPT(file, file)).toThrow(/onto itself/);
    symlinkSync(file, join(dir, 'link.jsonl'));
    expect(() => exportSftSteps(file, join(dir, 'link.jsonl'))).toThrow(/onto itself/);
    expect(readFileSync(file, 'utf8')).toBe(text);
    expect(exportSftSteps(file, join(dir, 'sft.jsonl'))).toBe(2);
  });

  it("a dataset_info.json write cut short (disk full) leaves the user's other datasets in place", () => {
    const dir = tmp();
    const steps = join(dir, 'steps.jsonl');
    writeFileSync(steps, jsonl(trajectory('a/0000', 1)));
    const info = join(dir, 'dataset_info.json');
    const before = `${JSON.stringify({ mine: { file_name: 'mine.json' } }, null, 2)}\n`;
    writeFileSync(info, before);
    vi.mocked(fs.writeFileSync).mockImplementation((file, data, options) => {
      // The dataset index's content, whatever file it goes to first: half of it lands, then the write fails.
      if (typeof data === 'string' && data.includes('"formatting"')) {
        actualFs.writeFileSync(file, data.slice(0, data.length / 2));
        throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
      }
      actualFs.writeFileSync(file, data, options);
    });
    expect(() => exportShareGPT(steps, join(dir, 'sharegpt.json'))).toThrow(/ENOSPC/);
    expect(readFileSync(info, 'utf8')).toBe(before);
    vi.mocked(fs.writeFileSync).mockImplementation(actualFs.writeFileSync);
    expect(exportShareGPT(steps, join(dir, 'sharegpt.json'))).toBe(1);
    expect(Object.keys(JSON.parse(readFileSync(info, 'utf8')) as object)).toEqual(['mine', 'sharegpt']);
  });

  it('a dataset_info.json holding a list or null is refused, not silently written back without the entry', () => {
    const dir = tmp();
    const steps = join(dir, 'steps.jsonl');
    writeFileSync(steps, jsonl(trajectory('a/0000', 1)));
    for (const text of ['[]', 'null']) {
      writeFileSync(join(dir, 'dataset_info.json'), text);
      expect(() => exportShareGPT(steps, join(dir, 'sharegpt.jsonl'))).toThrow(/dataset_info\.json: it must hold a JSON object/);
      expect(readFileSync(join(dir, 'dataset_info.json'), 'utf8')).toBe(text);
    }
  });
});

describe('states pool manifest', () => {
  it('a damaged collection.json is an error naming it, and a maxSteps of another type is refused', () => {
    const dir = tmp();
    writeFileSync(join(dir, 'steps.jsonl'), jsonl(trajectory('a/0000', 1)));
    const manifest = join(dir, 'collection.json');
    writeFileSync(manifest, '{"format": 1, "maxSt');
    expect(() => StatesPool.fromCollection(dir)).toThrow(`StatesPool: cannot read ${manifest}`);
    for (const maxSteps of ['"8"', '0', '2.5']) {
      writeFileSync(manifest, `{"format": 1, "maxSteps": ${maxSteps}}`);
      expect(() => StatesPool.fromCollection(dir)).toThrow(/collection\.json: maxSteps must be an integer >= 1/);
    }
    writeFileSync(manifest, '{"format": 1, "maxSteps": 8}');
    expect(StatesPool.fromCollection(dir).maxSteps).toBe(8);
  });
});

describe('eval resume files', () => {
  const identity: EvalRunIdentity = { agent: 'a', kind: 'scripted', detail: '', temperature: null, tasks: ['t'], trajectories: 2, maxSteps: 3, timeBudgetSec: 60, seed: 0, shareIdenticalSteps: true, settings: {} };

  it('evalComplete and checkSameRun name a damaged eval-run.json instead of failing with a bare SyntaxError or TypeError', () => {
    const dir = tmp();
    writeFileSync(join(dir, 'eval.json'), '{}');
    const runFile = join(dir, 'eval-run.json');
    writeFileSync(runFile, '{"agent": "a", "tas');
    expect(() => evalComplete(dir)).toThrow(`eval: cannot read ${runFile}`);
    writeFileSync(runFile, 'null');
    expect(() => evalComplete(dir)).toThrow(`eval: ${runFile} does not hold a JSON object`);
    expect(() => checkSameRun(dir, identity)).toThrow(`eval: ${runFile} does not hold a JSON object`);
    writeFileSync(runFile, '{"agent": "a"}');
    expect(() => evalComplete(dir)).toThrow(`eval: ${runFile} lacks its tasks or trajectories`);
    writeFileSync(runFile, JSON.stringify(identity));
    expect(evalComplete(dir)).toBe(false);
  });

  it('readFinished names a line that is JSON but no trajectory record', () => {
    const dir = tmp();
    const file = join(dir, 'eval-trajectories.jsonl');
    const record = { agent: 'a', task: 't', index: 0, steps: 1, score: 1, bestMetric: null, finalMetric: null, submitted: false, gain: 0, success: false, formatErrors: 0, timedOut: false, finalAnswer: true, durationSec: 1, error: null };
    writeFileSync(file, `${JSON.stringify(record)}\nnull\n`);
    expect(() => readFinished(dir)).toThrow(`eval: ${file} line 2: not a trajectory record`);
    writeFileSync(file, `${JSON.stringify(record)}\n{"task":"t","ind`);
    expect(readFinished(dir)).toHaveLength(1); // a cut-off last line still is left out
  });

  it('a trajectory recorded twice is refused, not counted twice toward a finished evaluation', () => {
    const dir = tmp();
    writeFileSync(join(dir, 'eval.json'), '{}');
    writeFileSync(join(dir, 'eval-run.json'), JSON.stringify(identity)); // 2 trajectories of task t
    const file = join(dir, 'eval-trajectories.jsonl');
    const record = { agent: 'a', task: 't', index: 0, steps: 1, score: 1, error: null };
    writeFileSync(file, `${JSON.stringify(record)}\n${JSON.stringify(record)}\n`);
    expect(() => evalComplete(dir)).toThrow(`eval: ${file} line 2: trajectory 0 of t is recorded already on line 1`);
    writeFileSync(file, `${JSON.stringify(record)}\n${JSON.stringify({ ...record, index: 1 })}\n`);
    expect(evalComplete(dir)).toBe(true);
  });
});

describe('metrics files', () => {
  it('readMetrics and truncateMetricsAfter read the first line after a BOM (truncate used to delete it)', () => {
    const dir = tmp();
    const file = join(dir, 'metrics.jsonl');
    writeFileSync(file, '\uFEFF{"step":1,"time":1,"loss":3}\n{"step":2,"time":2,"loss":2}\n');
    expect(readMetrics(file).map((r) => r.step)).toEqual([1, 2]);
    truncateMetricsAfter(file, 1);
    expect(readMetrics(file).map((r) => r.step)).toEqual([1]);
  });

  it('reopening the log keeps a whole last line that lacks its newline, and still cuts a torn one', () => {
    const dir = tmp();
    const file = join(dir, 'metrics.jsonl');
    writeFileSync(file, '{"step":1,"time":1,"loss":3}\n{"step":2,"time":2,"loss":2}');
    const log = new MetricsLogger(dir, { tensorboard: false });
    log.log(3, { loss: 1 }, { time: 3 });
    log.close();
    expect(readMetrics(file).map((r) => r.step)).toEqual([1, 2, 3]);
    appendFileSync(file, '{"step":4,"ti');
    new MetricsLogger(dir, { tensorboard: false }).close();
    expect(readFileSync(file, 'utf8').endsWith('"loss":1}\n')).toBe(true);
  });
});
