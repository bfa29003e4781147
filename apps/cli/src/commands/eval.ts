import { existsSync, statSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { listTasks, prepareTask, type PreparedTask } from '@mlagent/env';
import {
  PROMPT_FORMATS,
  EVAL_RUN_FILE,
  ScriptedExpert,
  defaultTrainConfig,
  endpointAgent,
  evalBatchFor,
  evalComplete,
  evalMarkdown,
  evaluate,
  expertAgent,
  loadTrainConfig,
  mergeEvalResults,
  planDevice,
  policyAgent,
  readEvalResult,
  writeEvalResult,
  type EvalAgent,
  type EvalResult,
  type PromptFormat,
  type TrainConfig,
} from '@mlagent/rl';
import { CommandFailedError, InterruptedError, UsageError, parse } from '../args.js';
import { checkEndpointFirst } from '../endpoint-check.js';
import { REDIS_OPTIONS, REDIS_USAGE, remoteFromArgs } from '../remote-episodes.js';
import type { LoraAdapter } from '@mlagent/policy';
import { MODEL_USAGE, checkModelArgs, describeAdapter, loadPolicy, numberArg, readAdapter, type LoadedPolicy } from '../policy-args.js';
import { policyVariants, type PolicyVariant } from './eval-variants.js';

export const evalUsage = `mlagent eval (--model DIR [--adapter DIR]... [--with-base] | --endpoint URL --endpoint-model NAME | --expert scripted)
          --tasks held-in|held-out|all|NAME[,NAME] [--trajectories N] [--max-steps S] [--time-budget SEC]
          [--out DIR] [--force | --resume] [--concurrency C] [--no-share] [--seed S] [--temperature T] [--max-new-tokens N]
          [--prompt-format messages|compact|prompt] [--max-prompt-tokens N] [--memory-budget GIB] [--name NAME]
          [--config FILE] [--compare FILE]... [--json]
          [--redis URL [--queue NAME]]
mlagent eval --compare FILE --compare FILE... [--out DIR] [--json]
  Runs full episodes per task with one agent and reports, per task, the average and best score over the
  trajectories, the relative gain over the baseline, the success rate (> 10% gain), the format-error rate of the
  actions and the mean steps: the paper's Table 1, as markdown (default) or JSON (--json). A trajectory's score is
  the best graded submission it made; one without any scores the baseline (no improvement).
  Agents: our policy (--model, with a PEFT --adapter; --temperature, --max-new-tokens, --prompt-format; one batched
  generation per round of --concurrency trajectories), an OpenAI-compatible endpoint (key from $OPENAI_API_KEY),
  or the scripted expert (seeded with idea plans as collection draws them; --ideas K, default 10).
  Several --adapter DIRs (and --with-base: the model without one) are evaluated one after another on one load of
  the model, each into a subdirectory of --out named for its path below the directory the adapters share
  (runs/train/sft/adapter and runs/train/ppo/adapter: sft-adapter and ppo-adapter; the base model: base). --out
  then also gets eval.json and eval.md with all of them side by side, as printed; --resume continues each
  evaluation and reuses the finished ones.
  Defaults come from the eval section of --config (else the built-in defaults): 8 trajectories, 10 steps, a
  3600 s time budget per trajectory, temperature 0.7; --seed defaults to the config's. For the policy, so does
  its ppo section: maxNewTokens (--max-new-tokens, default 1024), compactPrompts (--prompt-format compact; default
  messages), historyWindow and maxObservationChars, so --config RUN/train-config.json evaluates an adapter with
  the prompts mlagent train gave it. --concurrency defaults to
  every trajectory of every task at once for the policy (one batched generation a round, as mlagent train
  evaluates), and to 1 for an endpoint or the expert.
  The policy's prompts keep their last --max-prompt-tokens tokens (default: the config's ppo.maxPromptTokens, else
  the model's context less --max-new-tokens). Where the GPU's memory is known (--memory-budget GiB, else
  nvidia-smi's), each round's generation is split into the largest calls the memory plan fits, so a large
  --concurrency cannot run the device out of memory; a prompt that no call fits is refused before generating.
  Trajectories of a task that start in the same round and give the same responses share one episode: each such
  step runs once and they fork where their responses differ, after the run where only the wording of the action
  call differs (eval-steps.jsonl marks the shared steps). With a
  nondeterministic train.py this keeps each trajectory's odds but not their independence; --no-share (or the
  config's eval.shareIdenticalSteps: false) runs every trajectory in its own episode.
  Results go to --out (default runs/eval-<time>): eval.json (read by mlagent report), eval.md, eval-steps.jsonl
  (every response and observation) and snapshots/. Each trajectory's record is written as it finishes
  (eval-trajectories.jsonl), so --resume continues an evaluation that was interrupted or killed: the trajectories
  it finished without an error are kept, the others run again from their start (same agent, tasks and settings:
  one that changes --max-new-tokens, --prompt-format, --max-prompt-tokens, --dtype, --seed, --no-share, ... is
  refused). Ctrl-C starts no more trajectories (exit 130 if some were left). --compare adds earlier eval.json files to the printed table;
  with no agent, it only merges them (into --out when given).
${REDIS_USAGE}
${MODEL_USAGE}`;

const OPTIONS = {
  model: { type: 'string' },
  adapter: { type: 'string', multiple: true },
  'with-base': { type: 'boolean', default: false },
  dtype: { type: 'string', default: 'f32' },
  endpoint: { type: 'string' },
  'endpoint-model': { type: 'string' },
  expert: { type: 'string' },
  ideas: { type: 'string', default: '10' },
  tasks: { type: 'string' },
  trajectories: { type: 'string' },
  'max-steps': { type: 'string' },
  'time-budget': { type: 'string' },
  out: { type: 'string' },
  force: { type: 'boolean', default: false },
  resume: { type: 'boolean', default: false },
  concurrency: { type: 'string' },
  'no-share': { type: 'boolean', default: false },
  seed: { type: 'string' },
  temperature: { type: 'string' },
  'max-new-tokens': { type: 'string' },
  'prompt-format': { type: 'string' },
  'max-prompt-tokens': { type: 'string' },
  'memory-budget': { type: 'string' },
  name: { type: 'string' },
  config: { type: 'string' },
  compare: { type: 'string', multiple: true },
  json: { type: 'boolean', default: false },
  ...REDIS_OPTIONS,
} as const;

const GROUPS = ['held-in', 'held-out', 'all'];

/** Task names for groups (held-in, held-out, all) and names, in order, each once. */
function taskNames(specs: readonly string[]): { names: string[]; fromGroup: Set<string> } {
  const names: string[] = [];
  const fromGroup = new Set<string>();
  const add = (n: string) => names.includes(n) || names.push(n);
  for (const spec of specs) {
    if (GROUPS.includes(spec)) {
      const group = listTasks().tasks.filter((t) => spec === 'all' || t.spec.split === spec);
      if (group.length === 0) throw new UsageError(`eval: there are no ${spec} tasks`);
      for (const t of group) {
        add(t.spec.name);
        fromGroup.add(t.spec.name);
      }
    } else add(spec);
  }
  if (names.length === 0) throw new UsageError('eval: --tasks names no task');
  return { names, fromGroup };
}

async function loadTasks(specs: readonly string[], needIdeas: boolean): Promise<PreparedTask[]> {
  const { names, fromGroup } = taskNames(specs);
  const tasks: PreparedTask[] = [];
  for (const name of names) {
    let task: PreparedTask;
    try {
      task = await prepareTask(name, { onProgress: (line) => process.stderr.write(`${line}\n`) });
    } catch (e) {
      throw new UsageError(`eval: cannot load task '${name}': ${(e as Error).message}`);
    }
    if (needIdeas && task.ideas.length === 0) {
      if (!fromGroup.has(name)) throw new UsageError(`eval: the scripted expert needs ideas, and task '${name}' has no ideas.json`);
      process.stderr.write(`eval: skipping ${name} for the scripted expert: it has no ideas.json\n`);
      continue;
    }
    tasks.push(task);
  }
  if (tasks.length === 0) throw new UsageError('eval: none of the tasks can be evaluated');
  return tasks;
}

function readCompared(files: readonly string[]): EvalResult[] {
  return files.map((f) => {
    try {
      return readEvalResult(f);
    } catch (e) {
      throw new UsageError(`${(e as Error).message} (--compare)`);
    }
  });
}

function makeEndpointAgent(url: string, model: string, temperature: number, name: string | undefined): EvalAgent {
  try {
    return endpointAgent({
      url,
      model,
      apiKey: process.env.OPENAI_API_KEY,
      temperature,
      name,
      onRetry: ({ attempt, delayMs, error }) => process.stderr.write(`\neval: endpoint request failed (attempt ${attempt}: ${error.message}); retrying in ${delayMs} ms\n`),
    });
  } catch (e) {
    throw new UsageError(`eval: ${(e as Error).message}`);
  }
}

/**
 * The policy agent's batchFor: each round's prompts in the largest generate() calls the memory plan fits on the
 * device's budget, logged when the size changes. Undefined where the budget is unknown (one call a round). Refuses
 * (MemoryPlanError) before any task runs when one prompt of the longest kept length would not fit.
 */
function sizedCalls(policy: LoadedPolicy, dtype: 'f32' | 'f16', config: TrainConfig, maxNewTokens: number, maxContext: number, budgetGiB: number | undefined) {
  const device = planDevice(policy.gpu, budgetGiB === undefined ? undefined : budgetGiB * 1024 ** 3);
  const adapter = policy.model.adapter;
  const planned = { ...config, dtype, ppo: { ...config.ppo, maxNewTokens } };
  const fits = evalBatchFor(policy.model.config, planned, device, {
    lora: adapter ? { r: adapter.config.r, targets: adapter.config.targetModules } : null,
    shrink: `--max-prompt-tokens (prompts keep their end), --max-new-tokens (now ${maxNewTokens}), --dtype (now ${dtype})`,
    log: (line) => process.stderr.write(`\n${line}\n`),
  });
  if (fits === undefined) {
    process.stderr.write('eval: the device reports no memory size, so each round generates in one call (--memory-budget GiB sizes them)\n');
    return undefined;
  }
  fits([new Array<number>(maxContext - maxNewTokens).fill(0)]);
  return fits;
}

function print(result: EvalResult, json: boolean): void {
  console.log(json ? JSON.stringify(result, null, 2) : evalMarkdown(result));
}

function timestamp(): string {
  return new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
}

export async function evalCommand(argv: string[]): Promise<void> {
  const cmd = 'eval';
  const { values: v } = parse(cmd, argv, OPTIONS);
  const agents = [v.model !== undefined && '--model', v.endpoint !== undefined && '--endpoint', v.expert !== undefined && '--expert'].filter(Boolean);
  const compared = readCompared(v.compare ?? []);
  if (agents.length === 0) {
    if (compared.length === 0) throw new UsageError(`eval: give an agent (--model DIR, --endpoint URL or --expert scripted), or --compare FILEs to merge\n${evalUsage}`);
    const merged = mergeEvalResults(compared);
    if (v.out) writeEvalResult(v.out, merged);
    print(merged, v.json);
    return;
  }
  if (agents.length > 1) throw new UsageError(`eval: give one agent, not ${agents.join(' and ')}`);
  const adapters = v.adapter ?? [];
  if (adapters.length > 0 && v.model === undefined) throw new UsageError('eval: --adapter needs --model DIR (the base model)');
  if (v['with-base'] && (v.model === undefined || adapters.length === 0))
    throw new UsageError('eval: --with-base evaluates the base model beside --model DIR with --adapter DIRs (the base model alone is --model DIR without --adapter)');
  if (v['endpoint-model'] !== undefined && v.endpoint === undefined) throw new UsageError('eval: --endpoint-model goes with --endpoint URL');
  if (v.endpoint !== undefined && !v['endpoint-model']) throw new UsageError('eval: --endpoint URL needs --endpoint-model NAME (the model the server should run)');
  if (v.expert !== undefined && v.expert !== 'scripted') throw new UsageError(`eval: --expert must be 'scripted', got '${v.expert}' (an LLM expert is --endpoint URL)`);
  if (v.model !== undefined) for (const adapter of adapters.length > 0 ? adapters : [undefined]) checkModelArgs(cmd, { model: v.model, adapter, dtype: v.dtype }, evalUsage);
  // Several policies on one model load; a single one keeps the plain layout (its results in --out itself).
  const variants = adapters.length > 1 || v['with-base'] ? policyVariants(adapters, v['with-base']) : undefined;
  if (variants && v.name !== undefined) throw new UsageError(`eval: --name names one agent; with several adapters each is named policy:MODEL+LABEL (${variants.map((x) => x.label).join(', ')})`);
  const remote = remoteFromArgs(cmd, v.redis, v.queue);

  let config: TrainConfig;
  try {
    config = v.config ? loadTrainConfig(v.config) : defaultTrainConfig();
  } catch (e) {
    throw new UsageError(`eval: --config: ${(e as Error).message}`);
  }
  const number = (name: string, raw: string | undefined, fallback: number, { min = 0, integer = true } = {}) => {
    if (raw === undefined) return fallback;
    const n = Number(raw);
    const ok = raw.trim() !== '' && Number.isFinite(n) && (integer ? Number.isInteger(n) && n >= min : n > min);
    if (!ok) throw new UsageError(`eval: --${name} must be ${integer ? `an integer >= ${min}` : `a number > ${min}`}, got '${raw}'`);
    return n;
  };
  const trajectories = number('trajectories', v.trajectories, config.eval.trajectories, { min: 1 });
  const maxSteps = number('max-steps', v['max-steps'], config.eval.maxSteps, { min: 1 });
  const concurrencyArg = v.concurrency === undefined ? undefined : number('concurrency', v.concurrency, 1, { min: 1 });
  const seed = number('seed', v.seed, config.seed);
  const ideas = number('ideas', v.ideas, 10, { min: 1 });
  const maxNewTokens = number('max-new-tokens', v['max-new-tokens'], config.ppo.maxNewTokens, { min: 1 });
  const maxPromptTokens = v['max-prompt-tokens'] === undefined ? config.ppo.maxPromptTokens : number('max-prompt-tokens', v['max-prompt-tokens'], 0, { min: 1 });
  const budgetGiB = numberArg(cmd, 'memory-budget', v['memory-budget'], { min: 0.000001 });
  const timeBudgetSec = number('time-budget', v['time-budget'], config.eval.timeBudget, { integer: false });
  const temperature = v.temperature === undefined ? config.eval.temperature : Number(v.temperature);
  if (!(temperature >= 0) || !Number.isFinite(temperature) || v.temperature?.trim() === '')
    throw new UsageError(`eval: --temperature must be a number >= 0 (0: greedy), got '${v.temperature}'`);
  const promptFormat = (v['prompt-format'] ?? (config.ppo.compactPrompts ? 'compact' : 'messages')) as PromptFormat;
  if (!PROMPT_FORMATS.includes(promptFormat)) throw new UsageError(`eval: --prompt-format must be one of ${PROMPT_FORMATS.join(', ')}, got '${v['prompt-format']}'`);
  // The policy sees the past as it did in training (mlagent train's evaluation does the same).
  const prompts = v.model === undefined ? undefined : { historyWindow: config.ppo.historyWindow, maxObservationChars: config.ppo.maxObservationChars };
  const taskSpecs = v.tasks !== undefined ? v.tasks.split(',').map((s) => s.trim()).filter((s) => s !== '') : typeof config.eval.tasks === 'string' ? [config.eval.tasks] : config.eval.tasks;
  if (v.tasks !== undefined && taskSpecs.length === 0) throw new UsageError('eval: --tasks names no task');
  const out = resolve(v.out ?? join('runs', `eval-${timestamp()}`));
  if (v.force && v.resume) throw new UsageError('eval: --force starts over and --resume continues; give one');
  if (v.resume && v.out === undefined) throw new UsageError('eval: --resume needs the --out DIR of the evaluation to continue');
  // Before the tasks are prepared and the model loaded.
  if (existsSync(out) && !statSync(out).isDirectory()) throw new UsageError(`eval: --out ${out} is a file, not a directory`);
  if (variants && existsSync(join(out, EVAL_RUN_FILE))) throw new UsageError(`eval: ${out} holds the evaluation of one agent; give several adapters another --out`);
  const outs = variants ? variants.map((x) => join(out, x.dir)) : [out];
  for (const dir of outs) {
    if (existsSync(dir) && !statSync(dir).isDirectory()) throw new UsageError(`eval: ${dir} is a file, not a directory`);
    if (v.force || v.resume) continue;
    if (existsSync(join(dir, EVAL_RUN_FILE)) && !evalComplete(dir)) throw new UsageError(`eval: ${dir} holds an unfinished evaluation; --resume continues it, --force starts over`);
    if (existsSync(join(dir, 'eval.json'))) throw new UsageError(`eval: ${join(dir, 'eval.json')} already exists; use another --out (or --force to replace it)`);
  }
  if (variants && !v.force && !v.resume && existsSync(join(out, 'eval.json'))) throw new UsageError(`eval: ${join(out, 'eval.json')} already exists; use another --out (or --force to replace it)`);

  // Agents without a model are checked before the tasks are prepared; the policy is loaded last.
  const fixedAgent = v.expert !== undefined ? expertAgent(new ScriptedExpert(), { ideas, seed, name: v.name }) : v.endpoint !== undefined ? makeEndpointAgent(v.endpoint, v['endpoint-model']!, temperature, v.name) : undefined;
  if (v.endpoint !== undefined) await checkEndpointFirst(cmd, v.endpoint, v['endpoint-model']!);
  const tasks = await loadTasks(taskSpecs, v.expert !== undefined);
  const concurrency = concurrencyArg ?? (v.model !== undefined ? tasks.length * trajectories : 1);
  let policy: LoadedPolicy | undefined;
  const loaded: LoraAdapter[] = [];
  const release = () => {
    for (const adapter of loaded) adapter.dispose();
    policy?.close();
  };
  let runs: EvalRun[];
  if (fixedAgent) runs = [{ agent: fixedAgent, out, label: undefined }];
  else {
    policy = await loadPolicy(cmd, { model: v.model, adapter: variants ? undefined : adapters[0], dtype: v.dtype });
    try {
      runs = policyRuns(policy, variants ?? [{ adapter: adapters[0], label: '', dir: '' }], outs, {
        model: v.model!,
        name: variants ? undefined : v.name,
        loaded,
        dtype: v.dtype as 'f32' | 'f16',
        config,
        temperature,
        maxNewTokens,
        maxPromptTokens,
        promptFormat,
        budgetGiB,
      });
    } catch (e) {
      release();
      throw e;
    }
  }

  // Ctrl-C: no new trajectory starts and the results so far are written; a second Ctrl-C exits at once.
  const total = tasks.length * trajectories;
  const abort = new AbortController();
  const onSigint = () => {
    if (abort.signal.aborted) process.exit(130);
    // With every trajectory running from the start (the policy's default), finishing them finishes the evaluation.
    const running = concurrency >= total && runs.length === 1 ? 'every trajectory is running, so this finishes the evaluation' : 'finishing the running trajectories';
    process.stderr.write(`\neval: ${running} (Ctrl-C again to quit now; --resume then runs the unfinished ones again)\n`);
    abort.abort();
  };
  process.on('SIGINT', onSigint);
  const results: EvalResult[] = [];
  try {
    for (const run of runs) {
      if (abort.signal.aborted) break;
      if (run.label !== undefined) process.stderr.write(`eval: ${run.label} (${results.length + 1} of ${runs.length}) into ${run.out}\n`);
      if (policy) policy.model.adapter = run.adapter ?? null;
      results.push(
        await evaluate({ tasks, agent: run.agent, trajectories, maxSteps, timeBudgetSec, concurrency, shareIdenticalSteps: config.eval.shareIdenticalSteps && !v['no-share'], seed, prompts, out: run.out, overwrite: v.force, resume: v.resume, whenFinished: runs.length > 1 ? 'reuse' : 'refuse', signal: abort.signal, startEpisode: remote && ((task, o) => remote.start(task, o)) }),
      );
      process.stderr.write(`eval: wrote ${join(run.out, 'eval.json')} and ${join(run.out, 'eval.md')}\n`);
    }
  } catch (e) {
    if (/^eval: /.test((e as Error).message)) throw new UsageError((e as Error).message);
    throw e;
  } finally {
    process.off('SIGINT', onSigint);
    release();
    await remote?.close();
  }
  const together = results.length > 1 ? mergeEvalResults(results) : results[0];
  // As a single evaluation's eval.json, written with what there is after a Ctrl-C (a --resume rewrites it).
  if (variants && results.length > 0) {
    writeEvalResult(out, together);
    process.stderr.write(`eval: wrote ${join(out, 'eval.json')} and ${join(out, 'eval.md')} (${results.length} of ${runs.length} policies side by side)\n`);
  }
  const shown = compared.length > 0 ? mergeEvalResults([together, ...compared]) : together;
  if (compared.length > 0) writeFileSync(join(out, 'eval-compare.md'), evalMarkdown(shown));
  print(shown, v.json);
  const done = results.reduce((n, r) => n + r.trajectories.length, 0);
  const failed = results.flatMap((r) => r.trajectories.filter((t) => t.error !== null));
  // A Ctrl-C after the last trajectory started changed nothing: the evaluation is whole.
  if (abort.signal.aborted && done < total * runs.length) {
    const failures = failed.length > 0 ? ` (${failed.length} of them failed)` : '';
    throw new InterruptedError(`eval: interrupted after ${done} of ${total * runs.length} trajectories${failures}; --resume --out ${out} continues`);
  }
  if (failed.length > 0) throw new CommandFailedError(`eval: ${failed.length} trajectories failed (${failed[0].task}/${failed[0].index}: ${failed[0].error}); they count as no improvement; --resume --out ${out} runs them again`);
}

/** One evaluation of the command: an agent and where its results go (label: one of several policies). */
interface EvalRun {
  agent: EvalAgent;
  out: string;
  label: string | undefined;
  adapter?: LoraAdapter;
}

interface PolicyRunOptions {
  model: string;
  /** --name, for a single policy. */
  name: string | undefined;
  /** Receives each adapter loaded here, for the caller to free. */
  loaded: LoraAdapter[];
  dtype: 'f32' | 'f16';
  config: TrainConfig;
  temperature: number;
  maxNewTokens: number;
  maxPromptTokens: number | null;
  promptFormat: PromptFormat;
  budgetGiB: number | undefined;
}

/**
 * An agent per policy on the loaded model: a single one uses the adapter loadPolicy attached; several load their
 * adapters here (all before any task runs, so a bad one fails first) and are run with `model.adapter` set to theirs.
 */
function policyRuns(policy: LoadedPolicy, variants: readonly PolicyVariant[], outs: readonly string[], o: PolicyRunOptions): EvalRun[] {
  const model = policy.model;
  const several = variants.length > 1;
  const context = model.config.maxPositionEmbeddings;
  const maxContext = o.maxPromptTokens === null ? context : Math.min(o.maxPromptTokens + o.maxNewTokens, context);
  if (!(maxContext > o.maxNewTokens)) throw new UsageError(`eval: --max-new-tokens ${o.maxNewTokens} leaves no room for a prompt in the model's ${context}-token context`);
  const runs: EvalRun[] = [];
  for (const [i, variant] of variants.entries()) {
    let adapter = model.adapter ?? undefined;
    if (several) {
      adapter = variant.adapter === undefined ? undefined : readAdapter('eval', model, variant.adapter);
      if (adapter) {
        o.loaded.push(adapter);
        process.stderr.write(`eval: ${variant.label}: ${describeAdapter(adapter, variant.adapter!)}\n`);
      }
      model.adapter = adapter ?? null;
    }
    const dirs = [o.model, variant.adapter].filter((d): d is string => d !== undefined);
    const name = o.name ?? `policy:${basename(resolve(o.model))}${variant.adapter === undefined ? '' : `+${several ? variant.label : basename(resolve(variant.adapter))}`}`;
    const agent = policyAgent({
      model,
      tokenizer: policy.tokenizer,
      name,
      // Absolute, so a --resume given the same directories another way still matches the run.
      detail: dirs.map((d) => resolve(d)).join(' + '),
      temperature: o.temperature,
      maxNewTokens: o.maxNewTokens,
      promptFormat: o.promptFormat,
      maxContext,
      // Sized for this policy's adapter (its rank and targets), before any task runs.
      batchFor: sizedCalls(policy, o.dtype, o.config, o.maxNewTokens, maxContext, o.budgetGiB),
    });
    runs.push({ agent, out: outs[i], label: several ? variant.label : undefined, adapter });
  }
  return runs;
}
