import path from 'node:path';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { listTasks, prepareTask, type PreparedTask } from '@mlagent/env';
import { EndpointExpert, ScriptedExpert, collect, exportSftSteps, exportShareGPT, type Expert } from '@mlagent/rl';
import { CommandFailedError, InterruptedError, UsageError, checkOutputFile, parse } from '../args.js';
import { helperFromArgs } from '../helper-args.js';
import { checkEndpointFirst } from '../endpoint-check.js';
import { REDIS_OPTIONS, REDIS_USAGE, remoteFromArgs } from '../remote-episodes.js';

export const collectUsage = `mlagent collect --tasks held-in|held-out|NAME[,NAME] --expert scripted|URL --trajectories N --ideas K --out DIR
          [--candidates M] [--max-steps S] [--concurrency C] [--seed S] [--sharegpt FILE] [--sft-steps FILE]
          [--expert-model NAME] [--helper-url URL --helper-model NAME] [--redis URL [--queue NAME]]
  Runs full expert episodes seeded with the K most diverse idea plans per task, saving every step to
  DIR/steps.jsonl and every state to DIR/snapshots. Rerun the same command to resume an interrupted run.
  --expert URL: an OpenAI-compatible server (key from $OPENAI_API_KEY, model from --expert-model).
  --sharegpt FILE / --sft-steps FILE: also export the collection (LLaMA-Factory ShareGPT / per-step SFT JSONL).
  --candidates: plans generated per task before the K most diverse are kept (default 100).
  --max-steps defaults to 15, --concurrency to 1, --seed to 0.
${REDIS_USAGE}`;

const OPTIONS = {
  tasks: { type: 'string' },
  expert: { type: 'string' },
  'expert-model': { type: 'string' },
  trajectories: { type: 'string' },
  ideas: { type: 'string' },
  candidates: { type: 'string', default: '100' },
  out: { type: 'string' },
  'max-steps': { type: 'string', default: '15' },
  concurrency: { type: 'string', default: '1' },
  seed: { type: 'string', default: '0' },
  sharegpt: { type: 'string' },
  'sft-steps': { type: 'string' },
  'helper-url': { type: 'string' },
  'helper-model': { type: 'string' },
  ...REDIS_OPTIONS,
} as const;

function count(name: string, raw: string | undefined, min: number): number {
  if (raw === undefined) throw new UsageError(`collect: --${name} is required\n${collectUsage}`);
  // Number('') is 0: an empty --seed would pass as seed 0.
  const n = raw.trim() === '' ? NaN : Number(raw);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`collect: --${name} must be an integer >= ${min}, got '${raw}'`);
  return n;
}

/** The task names a --tasks value stands for: a split (only tasks that have ideas) or a comma-separated list. */
function taskNames(spec: string): string[] {
  if (spec === 'held-in' || spec === 'held-out') {
    const all = listTasks().tasks.filter((t) => t.spec.split === spec);
    if (all.length === 0) throw new UsageError(`collect: there are no ${spec} tasks`);
    return all.map((t) => t.spec.name);
  }
  const names = spec.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (names.length === 0) throw new UsageError('collect: --tasks names no task');
  return names;
}

async function loadTasks(spec: string): Promise<PreparedTask[]> {
  const split = spec === 'held-in' || spec === 'held-out';
  const tasks: PreparedTask[] = [];
  for (const name of taskNames(spec)) {
    let task: PreparedTask;
    try {
      task = await prepareTask(name, { onProgress: (line) => process.stderr.write(`${line}\n`) });
    } catch (e) {
      throw new UsageError(`collect: cannot load task '${name}': ${(e as Error).message}`);
    }
    if (task.ideas.length === 0) {
      if (!split) throw new UsageError(`collect: task '${name}' has no ideas.json to seed trajectories with`);
      process.stderr.write(`collect: skipping ${name}: it has no ideas.json\n`);
      continue;
    }
    tasks.push(task);
  }
  if (tasks.length === 0) throw new UsageError(`collect: none of the ${spec} tasks has ideas`);
  return tasks;
}

/**
 * --out must be a collection's directory, a new or empty one, or what a run killed before writing its manifest
 * left: collect reads DIR/steps.jsonl as its own (rewriting it) and deletes DIR/work, which in another directory
 * would be the user's files.
 */
function checkCollectionDir(out: string): void {
  if (!existsSync(out) || !statSync(out).isDirectory() || existsSync(path.join(out, 'collection.json'))) return;
  const other = readdirSync(out).filter((f) => f !== 'ideas' && f !== '.lock');
  if (other.length > 0) {
    throw new UsageError(`collect: --out ${out} is not empty (${other.slice(0, 3).join(', ')}${other.length > 3 ? ', ...' : ''}) and holds no collection (collection.json); choose a new directory`);
  }
}

function makeExpert(spec: string, model: string | undefined): Expert {
  if (spec === 'scripted') return new ScriptedExpert();
  if (!/^https?:\/\//.test(spec)) throw new UsageError(`collect: --expert must be 'scripted' or an http(s) URL, got '${spec}'`);
  if (!model) throw new UsageError('collect: --expert URL needs --expert-model NAME');
  return new EndpointExpert({ url: spec, model, apiKey: process.env.OPENAI_API_KEY, onRetry: ({ attempt, delayMs, error }) =>
    process.stderr.write(`\ncollect: expert request failed (attempt ${attempt}: ${error.message}); retrying in ${delayMs} ms\n`) });
}

export async function collectCommand(argv: string[]): Promise<void> {
  const { values: v } = parse('collect', argv, OPTIONS);
  if (!v.tasks) throw new UsageError(`collect: --tasks is required\n${collectUsage}`);
  if (!v.expert) throw new UsageError(`collect: --expert is required\n${collectUsage}`);
  if (!v.out) throw new UsageError(`collect: --out DIR is required\n${collectUsage}`);
  const trajectories = count('trajectories', v.trajectories, 1);
  const ideas = count('ideas', v.ideas, 1);
  const candidates = count('candidates', v.candidates, 1);
  const maxSteps = count('max-steps', v['max-steps'], 1);
  const concurrency = count('concurrency', v.concurrency, 1);
  const seed = count('seed', v.seed, 0);
  if (ideas > candidates) throw new UsageError(`collect: --ideas ${ideas} keeps more ideas than the --candidates ${candidates} it picks them from`);
  if (v.expert === 'scripted' && v['expert-model']) throw new UsageError('collect: --expert-model names an endpoint\'s model; the scripted expert takes none');
  const helperLlm = helperFromArgs('collect', v['helper-url'], v['helper-model']);
  for (const flag of ['sharegpt', 'sft-steps'] as const) if (v[flag]) checkOutputFile('collect', flag, v[flag]);
  const expert = makeExpert(v.expert, v['expert-model']);
  if (v.expert !== 'scripted') await checkEndpointFirst('collect', v.expert, v['expert-model']!);
  const remote = remoteFromArgs('collect', v.redis, v.queue);
  checkCollectionDir(v.out);
  const tasks = await loadTasks(v.tasks);

  // Stop starting trajectories on Ctrl-C; a second Ctrl-C exits at once (the next run redoes the unfinished ones).
  const abort = new AbortController();
  const onSigint = () => {
    if (abort.signal.aborted) process.exit(130);
    process.stderr.write('\ncollect: stopping after the running trajectories (Ctrl-C again to quit now)\n');
    abort.abort();
  };
  process.on('SIGINT', onSigint);
  let summary;
  try {
    summary = await collect({ tasks, expert, trajectories, ideas, candidates, maxSteps, out: v.out, concurrency, seed, helperLlm, signal: abort.signal, startEpisode: remote && ((task, o) => remote.start(task, o)) });
  } catch (e) {
    if (/^collect: /.test((e as Error).message)) throw new UsageError((e as Error).message);
    throw e;
  } finally {
    process.off('SIGINT', onSigint);
    await remote?.close();
  }
  const resumed = summary.alreadyDone > 0 ? ` (${summary.alreadyDone} already there)` : '';
  console.log(`collected ${summary.completed} trajectories${resumed}, ${summary.alreadyDone + summary.completed}/${summary.total} done: ${summary.stepsFile}`);
  if (summary.droppedLines > 0) console.log(`dropped ${summary.droppedLines} lines of incomplete trajectories from an earlier run`);
  if (v.sharegpt) console.log(`wrote ${exportShareGPT(summary.stepsFile, path.resolve(v.sharegpt))} ShareGPT conversations to ${v.sharegpt}`);
  if (v['sft-steps']) console.log(`wrote ${exportSftSteps(summary.stepsFile, path.resolve(v['sft-steps']))} SFT steps to ${v['sft-steps']}`);
  if (summary.failed.length > 0)
    throw new CommandFailedError(`collect: ${summary.failed.length} trajectories failed (${summary.failed[0].trajectory}: ${summary.failed[0].error}); rerun the same command to retry them`);
  // A Ctrl-C that came after the last trajectory started stopped nothing.
  if (abort.signal.aborted && summary.alreadyDone + summary.completed < summary.total) throw new InterruptedError('collect: interrupted; rerun the same command to finish');
}
