import { existsSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Gpu } from '@mlagent/core-kernels';
import { Episode, listTasks, prepareTask, resolveTask, type EpisodeOptions, type PreparedTask } from '@mlagent/env';
import { Checkpoint, QwenModel, QwenTokenizer, initModel, loadAdapter, loadQwenConfig, nvidiaFreeBytes, makeDirs } from '@mlagent/policy';
import { collect } from '../collect/runner.js';
import { readCollection, stepsInOrder } from '../collect/records.js';
import { isPlainObject } from '../config/schema.js';
import { parseTrainConfig, type TrainConfig, type TrainConfigInput } from '../config/train-config.js';
import { ScriptedExpert } from '../experts/scripted.js';
import type { EvalAgent } from '../eval/agent.js';
import { evaluate, writeEvalResult } from '../eval/evaluate.js';
import { evalComplete } from '../eval/resume.js';
import { policyAgent } from '../eval/policy-agent.js';
import type { EvalResult } from '../eval/results.js';
import { formatPercent, mergeEvalResults, readEvalResult } from '../eval/table.js';
import { writeReport } from '../report/html-report.js';
import { probeFormat, spreadStates, type FormatProbeResult } from '../sft/format-probe.js';
import { evalBatchFor } from '../eval/memory-check.js';
import { checkPpoMemory } from '../ppo/memory-check.js';
import { checkSftMemory, planDevice } from '../sft/memory-check.js';
import { sft } from '../sft/sft.js';
import { syncFile, syncTree, writeFileAtomic } from '../checkpoint/atomic.js';
import { StateDraws } from '../pool/edit-share.js';
import { TrainInputError, TrainStoppedError } from './errors.js';
import { trainPpo, type TrainPpoResult } from './ppo-loop.js';
import { lockRunDir } from './lock.js';
import { sftChats } from './expert-chats.js';
import { policyMessages } from './prompt.js';
import type { RemoteEpisodes } from './remote.js';

/**
 * `mlagent train`: the whole method on one config. Stages, each in its own directory under `out` and each skipped
 * when already complete (so rerunning the command, or `--resume`, continues where it stopped):
 *   model/   a random `init-model` policy when the config names no model
 *   collect/ scripted-expert trajectories on the collection tasks (the states pool and the SFT data)
 *   sft/     LoRA SFT on every expert step
 *   ppo/     step-wise PPO from the pool, starting from the SFT adapter
 *   ppo/eval.json  SFT-only and SFT+RL policies on the evaluation tasks (the paper's Table 1), then report.html
 */

export interface TrainPipelineOptions {
  out: string;
  config?: TrainConfigInput;
  /** Continue a run in `out`: complete stages are reused, interrupted ones resume from their checkpoints. Without
   * it, a directory that already holds a run is refused. */
  resume?: boolean;
  /** Policy preset for the random model when the config names none. */
  modelPreset?: 'tiny' | 'mini' | 'small';
  log?: (line: string) => void;
  signal?: AbortSignal;
  progress?: boolean;
  /** Run every env step (collection, PPO, evaluation) on queue workers (same results); the caller closes it. */
  remote?: RemoteEpisodes;
  /** GPU bytes SFT's and PPO's memory plans must fit (--memory-budget; default nvidia-smi's free memory, where it answers). */
  memoryBudgetBytes?: number;
}

export interface TrainPipelineResult {
  modelDir: string;
  collection: string;
  sftAdapter: string;
  ppo: TrainPpoResult | null;
  eval: EvalResult | null;
  report: string | null;
  /** Wall seconds per stage (this invocation). */
  seconds: Record<string, number>;
  /** This process's peak resident memory at the end of each stage (a running maximum; this invocation). */
  peakRssBytes: Record<string, number>;
}

export async function trainPipeline(options: TrainPipelineOptions): Promise<TrainPipelineResult> {
  // The model preset goes into the config, so that train-config.json says what model/ holds and a resume is held to it.
  const config = parseTrainConfig(options.config ?? {}, { source: '(train options)', overrides: options.modelPreset ? { init: { size: options.modelPreset } } : undefined });
  const log = options.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const out = options.out;
  const configFile = join(out, 'train-config.json');
  const resuming = existsSync(configFile);
  if (resuming && !options.resume) {
    throw new TrainInputError(`train: ${out} already holds a run; pass --resume to continue it, or choose another output directory`);
  }
  const retuned = resuming ? checkSameConfig(out, configFile, config) : [];
  if (retuned.length > 0) log(`train: resuming with another ${retuned.join('; ')}: these change how the work is split or saved, not its results`);
  // Everything the stages will need from the config, checked before any work: a typo in the last stage's task list
  // would otherwise cost the collection, SFT and PPO before it fails.
  const collectNames = checkedTaskNames('collection.tasks', config.collection.tasks);
  const evalNames = checkedTaskNames('eval.tasks', config.eval.tasks);
  if (config.collection.expert !== 'scripted') throw new TrainInputError(`train: collection.expert '${config.collection.expert}': the pipeline runs the scripted expert; collect with an endpoint through mlagent collect, then mlagent train on its directory`);
  // A named model is checked now (config, tokenizer, checkpoint headers), before the run directory exists and long
  // before the collection ends.
  if (config.model) {
    const modelConfig = loadQwenConfig(config.model);
    QwenTokenizer.fromDir(config.model);
    Checkpoint.open(config.model).close();
    // Where the budget is known, SFT micro-batches of maxSeqLen tokens that cannot fit are refused now, not after
    // the collection.
    const free = options.memoryBudgetBytes ?? nvidiaFreeBytes();
    if (free !== undefined) {
      const device = { software: false, maxBinding: 2 ** 31 - 4, budgetBytes: free };
      const shape = { batch: config.sft.batchSize, seqLen: config.sft.maxSeqLen };
      log(checkSftMemory(modelConfig, config, shape, device).line);
      // PPO's states are the collection's, whose prompts SFT cut at maxSeqLen: a minibatch of such prompts (or of
      // maxPromptTokens, where shorter) with maxNewTokens-long responses (PPO-ptx's expert steps as SFT's examples).
      const c = config.ppo;
      const ppoShape = {
        samples: Array.from({ length: c.minibatchSize }, () => ({ prompt: Math.min(config.sft.maxSeqLen, c.maxPromptTokens ?? Infinity), response: c.maxNewTokens })),
        ptx: [{ tokens: config.sft.maxSeqLen, targets: Math.min(config.sft.maxSeqLen - 1, c.maxNewTokens) }],
      };
      const bound = c.maxPromptTokens !== null && c.maxPromptTokens < config.sft.maxSeqLen ? `ppo.maxPromptTokens (${c.maxPromptTokens})` : `sft.maxSeqLen (${config.sft.maxSeqLen})`;
      log(checkPpoMemory(modelConfig, config, ppoShape, device, { reference: c.reference === 'initial', where: `ppo, at prompts of ${bound} tokens` }).line);
    }
  }
  // One run at a time in `out`: two `train --resume` at once wrote the same SFT checkpoints and metrics. (Collection
  // and PPO lock their own directories too.)
  makeDirs(out);
  const unlock = lockRunDir(out, 'train');
  try {
    // A resumed run keeps the record of its config (checked equal above, but for RESUMABLE_FIELDS, which it updates).
    // Replaced atomically: torn in place by a kill or a full disk, it left a run that no resume could read.
    if (!resuming || retuned.length > 0) writeFileAtomic(configFile, JSON.stringify(config, null, 2) + '\n');
    return await runStages();
  } finally {
    unlock();
  }

  async function runStages(): Promise<TrainPipelineResult> {
    const seconds: Record<string, number> = {};
    const peakRssBytes: Record<string, number> = {};
    const timed = async <T>(stage: string, fn: () => Promise<T>): Promise<T> => {
      const t0 = Date.now();
      log(`train: ${stage}`);
      try {
        return await fn();
      } finally {
        seconds[stage] = (Date.now() - t0) / 1000;
        // The process's high-water mark so far (the tasks' Python runs are other processes); on a software adapter
        // it includes the "GPU" memory.
        peakRssBytes[stage] = process.resourceUsage().maxRSS * 1024;
        log(`train: ${stage} took ${seconds[stage].toFixed(0)} s (peak RSS so far ${(peakRssBytes[stage] / 2 ** 30).toFixed(2)} GiB)`);
      }
    };
    const c = config.ppo;
    const episodeOptions = { historyWindow: c.historyWindow, maxObservationChars: c.maxObservationChars };

    // 1. The policy.
    const modelDir = config.model ?? join(out, 'model');
    if (!config.model && !existsSync(join(modelDir, 'config.json'))) {
      const i = config.init;
      // Made in a staging directory, made durable, then renamed into place: written in place, a kill left model/
      // with a config.json (what marks it made) but torn or missing files, and every resume kept it.
      for (const f of readdirSync(out)) if (f.startsWith('model.tmp-')) rmSync(join(out, f), { recursive: true, force: true });
      const staging = `${modelDir}.tmp-${process.pid}`;
      await timed('init-model', async () =>
        initModel({
          arch: i.arch,
          preset: i.size,
          outDir: staging,
          seed: config.seed,
          ...(i.vocabMerges > 0 ? { vocabMerges: i.vocabMerges } : {}),
          headInitStd: i.headInitStd,
        }),
      );
      syncTree(staging);
      rmSync(modelDir, { recursive: true, force: true });
      renameSync(staging, modelDir);
      syncFile(out);
    }

    // 2. Expert collection (collect() itself resumes: finished trajectories are kept).
    const collection = join(out, 'collect');
    const collectTasks = await prepareAll(collectNames);
    await timed('collect', () =>
      collect({
        tasks: collectTasks,
        expert: new ScriptedExpert(),
        trajectories: config.collection.trajectories,
        ideas: config.collection.ideas,
        candidates: config.collection.candidateIdeas,
        maxSteps: config.collection.maxSteps,
        concurrency: config.collection.concurrency,
        out: collection,
        seed: config.seed,
        progress: options.progress,
        signal: options.signal,
        startEpisode: episodeStarter(options.remote, episodeOptions),
      }),
    );
    stopIfAborted(options.signal, 'the collection');
    checkEditStates(collection, config);

    // 3. SFT on every expert step, in the chat form RL and evaluation prompt with.
    const sftDir = join(out, 'sft');
    const sftAdapter = join(sftDir, 'adapter');
    if (!existsSync(join(sftDir, 'sft-summary.json'))) {
      const chats = sftChats(join(collection, 'steps.jsonl'), c.compactPrompts);
      await timed('sft', async () => {
        const r = await sft({ modelDir, data: chats, out: sftDir, config, resume: existsSync(join(sftDir, 'checkpoints')), signal: options.signal, progress: options.progress, log, memoryBudgetBytes: options.memoryBudgetBytes });
        if (r.stopped) throw new TrainStoppedError('train: stopped during SFT; run again with --resume to continue');
      });
    }

    // 3b. What SFT changed in the sampled actions: the format-error rate at collected states, before and after.
    const probeFile = join(sftDir, 'format-probe.json');
    if (config.sft.probeStates > 0 && !existsSync(probeFile)) {
      const probe = await timed('format-probe', () => probeBeforeAfter(config, modelDir, sftAdapter, join(collection, 'steps.jsonl')));
      writeFileAtomic(probeFile, JSON.stringify(probe, null, 2) + '\n');
      log(`train: format-error rate of sampled actions at ${probe.states} collected states: ${formatPercent(probe.before.formatErrorRate)} before SFT, ${formatPercent(probe.after.formatErrorRate)} after`);
    }

    // 4. Step-wise PPO from the SFT adapter.
    const ppoDir = join(out, 'ppo');
    let ppo: TrainPpoResult | null = null;
    if (existsSync(join(ppoDir, 'ppo-summary.json'))) {
      ppo = readPpoSummary(join(ppoDir, 'ppo-summary.json'));
    } else {
      ppo = await timed('ppo', () => trainPpo({ modelDir, adapter: sftAdapter, collection, out: ppoDir, config, resume: existsSync(ppoDir), signal: options.signal, progress: options.progress, log, remote: options.remote, memoryBudgetBytes: options.memoryBudgetBytes }));
      if (ppo.stopped) throw new TrainStoppedError('train: stopped during PPO; run again with --resume to continue');
    }

    // 5. Evaluation of SFT-only against SFT+RL on the held-in and held-out tasks, then the report.
    const evalTasks = await prepareAll(evalNames);
    const evalResult = await timed('eval', () =>
      evaluateAdapters(config, modelDir, evalTasks, [
        { name: 'sft', adapter: sftAdapter, dir: join(out, 'eval-sft') },
        { name: 'sft+rl', adapter: ppo!.adapterDir!, dir: join(out, 'eval-sft-rl') },
      ], { ...options, episodeOptions }),
    );
    writeEvalResult(ppoDir, evalResult);
    const report = writeReport(ppoDir, join(out, 'report.html'), { title: `mlagent train (${config.preset} preset)`, sftDir });
    writeFileAtomic(join(out, 'train-summary.json'), JSON.stringify({ seconds, peakRssBytes, ppoRewards: ppo.rewards }, null, 2) + '\n');
    return { modelDir, collection, sftAdapter, ppo, eval: evalResult, report, seconds, peakRssBytes };
  }
}

/** A finished PPO stage's summary; a damaged one is refused naming the file (JSON.parse's bare SyntaxError did not). */
function readPpoSummary(file: string): TrainPpoResult {
  let summary: Partial<TrainPpoResult>;
  try {
    summary = JSON.parse(readFileSync(file, 'utf8')) as Partial<TrainPpoResult>;
  } catch (e) {
    throw new TrainInputError(`train: cannot read ${file} (${(e as Error).message}); delete it and run again with --resume to rebuild it from PPO's last checkpoint`);
  }
  if (!isPlainObject(summary) || typeof summary.adapterDir !== 'string' || !Array.isArray(summary.rewards)) {
    throw new TrainInputError(`train: ${file} is not a PPO summary; delete it and run again with --resume to rebuild it from PPO's last checkpoint`);
  }
  return summary as TrainPpoResult;
}

/** Task names from the config's list or group ('held-in', 'held-out', 'all'). */
export function taskNames(spec: string[] | string): string[] {
  const entries = listTasks().tasks;
  const expand = (name: string): string[] => {
    if (name === 'all') return entries.map((e) => e.spec.name);
    if (name === 'held-in' || name === 'held-out') return entries.filter((e) => e.spec.split === name).map((e) => e.spec.name);
    return [name];
  };
  return [...new Set((Array.isArray(spec) ? spec : [spec]).flatMap(expand))];
}

/** The tasks of a config field, each found (by name or directory) now; `field` names the field in the error. */
function checkedTaskNames(field: string, spec: string[] | string): string[] {
  const names = taskNames(spec);
  if (names.length === 0) throw new TrainInputError(`train: ${field}: ${JSON.stringify(spec)} names no task`);
  for (const name of names) {
    try {
      resolveTask(name);
    } catch (e) {
      throw new TrainInputError(`train: ${field}: ${(e as Error).message}`);
    }
  }
  return names;
}

/**
 * The fields a resumed run may change: how much runs at once, how memory is saved and how often checkpoints are
 * written. The stages' own resume checks allow them too, and the memory plans' refusals suggest changing them.
 */
const RESUMABLE_FIELDS = new Set([
  'collection.concurrency',
  'sft.activationCheckpointing',
  'sft.checkpointEvery',
  'sft.keepCheckpoints',
  'ppo.generationBatch',
  'ppo.microBatchSize',
  'ppo.activationCheckpointing',
  'ppo.envConcurrency',
  'ppo.checkpointEvery',
  'ppo.keepCheckpoints',
]);

/**
 * Refuses to resume the run whose config is `file` with another config: its finished stages were made with that
 * one, and train-config.json must stay their record. Only RESUMABLE_FIELDS may change (they are returned, as
 * `field: old in the run, new now`): a run with any other setting changed is a new run, in another directory.
 */
function checkSameConfig(out: string, file: string, config: TrainConfig): string[] {
  let saved: unknown;
  try {
    saved = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new TrainInputError(`train: cannot read ${file}: ${(e as Error).message}`);
  }
  // Parsed again, so that a field added to the config since the run started compares at its default.
  try {
    saved = parseTrainConfig(saved, { source: file });
  } catch {
    // Compared as written: the fields this version no longer knows show as differences.
  }
  const differ = configDifferences(saved, config, '');
  const refused = differ.filter(([field]) => !RESUMABLE_FIELDS.has(field)).map(([, line]) => line);
  if (refused.length > 0) {
    throw new TrainInputError(`train: ${out} holds a run made with another config (${refused.join('; ')}); resume it with the config it started with (--config ${file}), or start a new run with another --out`);
  }
  return differ.map(([, line]) => line);
}

/** [field, `field: old in the run, new now`] for each leaf where two configs differ; lists compare whole. */
function configDifferences(was: unknown, is: unknown, at: string): [string, string][] {
  if (isPlainObject(was) && isPlainObject(is)) {
    const keys = [...new Set([...Object.keys(was), ...Object.keys(is)])];
    return keys.flatMap((k) => configDifferences(was[k], is[k], at === '' ? k : `${at}.${k}`));
  }
  const [w, i] = [JSON.stringify(was), JSON.stringify(is)];
  return w === i ? [] : [[at, `${at || 'the config'}: ${w ?? 'absent'} in the run, ${i ?? 'absent'} now`]];
}

/**
 * ppo.editStateShare draws from the collection's states where the expert edited a file and from the others: a
 * collection without one kind is found here, before SFT, not when PPO starts.
 */
function checkEditStates(collection: string, config: TrainConfig): void {
  const c = config.ppo;
  if (c.editStateShare === null) return;
  try {
    StateDraws.create(collection, { perIteration: c.statesPerIteration, editShare: c.editStateShare, mode: c.poolSampling, seed: config.seed });
  } catch (e) {
    const message = (e as Error).message;
    // The run's config stays as it started (see checkSameConfig), so the fix is a new run.
    if (message.startsWith('ppo.editStateShare ')) throw new TrainInputError(`train: ${message} in the config of a new run (another --out)`);
    throw e;
  }
}

async function prepareAll(names: string[]): Promise<PreparedTask[]> {
  const out: PreparedTask[] = [];
  for (const n of names) out.push(await prepareTask(n));
  return out;
}

export interface FormatProbeReport {
  states: number;
  before: FormatProbeResult;
  after: FormatProbeResult;
}

/** The format probe at evenly spread collected states, for the untrained model (no adapter) and the SFT adapter. */
async function probeBeforeAfter(config: TrainConfig, modelDir: string, adapterDir: string, stepsFile: string): Promise<FormatProbeReport> {
  const steps = stepsInOrder(readCollection(stepsFile).records);
  const states = spreadStates(steps, config.sft.probeStates).map((s) => ({ task: s.task, messages: s.messages }));
  const gpu = await Gpu.create();
  try {
    const model = await QwenModel.load(gpu, modelDir, { dtype: config.dtype });
    try {
      const tokenizer = QwenTokenizer.fromDir(modelDir);
      const c = config.ppo;
      const run = () => probeFormat({ model, tokenizer, states, compactPrompts: c.compactPrompts, samplesPerState: config.sft.probeSamples, maxNewTokens: c.maxNewTokens, temperature: c.temperature, topP: c.topP, seed: config.seed });
      const before = await run();
      const adapter = loadAdapter(model, adapterDir);
      model.adapter = adapter;
      try {
        return { states: states.length, before, after: await run() };
      } finally {
        model.adapter = null;
        adapter.dispose();
      }
    } finally {
      model.dispose();
    }
  } finally {
    gpu.destroy();
  }
}

interface AdapterUnderTest {
  name: string;
  adapter: string;
  dir: string;
}

/** How collection and evaluation start episodes: locally, or on the queue workers. */
function episodeStarter(remote: RemoteEpisodes | undefined, extra: { historyWindow: number; maxObservationChars: number }) {
  return (task: PreparedTask, o: EpisodeOptions) =>
    remote ? remote.start(task, { ...o, ...extra }) : Episode.start(task, { ...o, ...extra });
}

/** One evaluation per adapter on one loaded model (each kept in its directory), merged into one table. */
async function evaluateAdapters(
  config: TrainConfig,
  modelDir: string,
  tasks: PreparedTask[],
  adapters: AdapterUnderTest[],
  options: TrainPipelineOptions & { episodeOptions: { historyWindow: number; maxObservationChars: number } },
): Promise<EvalResult> {
  const results: EvalResult[] = [];
  const pending = adapters.filter((a) => !evalComplete(a.dir));
  const gpu = pending.length > 0 ? await Gpu.create() : null;
  const model = gpu ? await QwenModel.load(gpu, modelDir, { dtype: config.dtype }) : null;
  try {
    for (const a of adapters) {
      if (evalComplete(a.dir)) {
        results.push(readEvalResult(join(a.dir, 'eval.json')));
        continue;
      }
      stopIfAborted(options.signal, 'the evaluation');
      const adapter = loadAdapter(model!, a.adapter);
      model!.adapter = adapter;
      try {
        // Prompts cut as RL cuts them; generate() calls as large as the memory plan fits, where the budget is known.
        const maxPrompt = config.ppo.maxPromptTokens;
        const inner = policyAgent({
          model: model!,
          tokenizer: QwenTokenizer.fromDir(modelDir),
          name: `policy:${a.name}`,
          detail: `${modelDir} + ${a.adapter}`,
          maxNewTokens: config.ppo.maxNewTokens,
          temperature: config.eval.temperature,
          maxContext: maxPrompt === null ? undefined : Math.min(maxPrompt + config.ppo.maxNewTokens, model!.config.maxPositionEmbeddings),
          batchFor: evalBatchFor(model!.config, config, planDevice(gpu!, options.memoryBudgetBytes), { log: options.log ?? ((line) => process.stderr.write(`\n${line}\n`)) }),
        });
        results.push(
          await evaluate({
            tasks,
            agent: config.ppo.compactPrompts ? compactAgent(inner) : inner,
            trajectories: config.eval.trajectories,
            maxSteps: config.eval.maxSteps,
            timeBudgetSec: config.eval.timeBudget,
            concurrency: tasks.length * config.eval.trajectories,
            shareIdenticalSteps: config.eval.shareIdenticalSteps,
            seed: config.seed,
            out: a.dir,
            // A run killed during evaluation keeps the trajectories it finished.
            resume: true,
            progress: options.progress,
            signal: options.signal,
            startEpisode: episodeStarter(options.remote, options.episodeOptions),
          }),
        );
      } finally {
        model!.adapter = null;
        adapter.dispose();
      }
      // An evaluation that ended with every trajectory (all were running when the stop came) is whole.
      if (!evalComplete(a.dir)) stopIfAborted(options.signal, 'the evaluation');
    }
  } finally {
    model?.dispose();
    gpu?.destroy();
  }
  return mergeEvalResults(results);
}

/** The policy agent, prompted without the env's system message (as SFT and RL were). */
function compactAgent(inner: EvalAgent): EvalAgent {
  return {
    name: inner.name,
    kind: inner.kind,
    detail: inner.detail,
    temperature: inner.temperature,
    settings: { ...inner.settings, compactPrompts: true },
    prepare: inner.prepare?.bind(inner),
    begin: inner.begin?.bind(inner),
    end: inner.end?.bind(inner),
    summary: inner.summary?.bind(inner),
    respond: (requests, round) => inner.respond(requests.map((r) => ({ ...r, turn: { ...r.turn, messages: policyMessages(r.turn.messages, true) } })), round),
  };
}

function stopIfAborted(signal: AbortSignal | undefined, stage: string): void {
  if (signal?.aborted) throw new TrainStoppedError(`train: stopped during ${stage}; run again with --resume to continue`);
}
