import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_DISK_MB, importTask, listTasks, loadIdeas, prepareTask, resolveTask, runBaseline, type BaselineReport, type TaskEntry } from '@mlagent/env';
import { UsageError, suggestOption } from '../args.js';

export const tasksUsage = `mlagent tasks list [--json] | show NAME | import PATH [options] | baseline NAME [--json]
  list                 the built-in tasks and those in $MLAGENT_HOME/tasks (name, split, modality, metric, baseline, best)
  show NAME            a task's metadata, research problem, data description and ideas
  import PATH          convert an MLAgentBench task or an MLE-bench competition into $MLAGENT_HOME/tasks/NAME
      --name NAME  --metric NAME  --direction max|min  [--modality M] [--split held-in|held-out] [--force]
  baseline NAME        prepare the task, run env/train.py in the sandbox and grade submission.csv`;

type Values = Record<string, string | boolean | undefined>;

function parse(argv: string[], options: NonNullable<Parameters<typeof parseArgs>[0]>['options']) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: true });
  } catch (e) {
    throw new UsageError(`tasks: ${(e as Error).message}${suggestOption(e, Object.keys(options ?? {}))}`);
  }
}

/** Runs `fn`, reporting a thrown Error as a usage error of `tasks <sub>` (bad names, paths and task files). */
async function asUsage<T>(sub: string, fn: () => Promise<T> | T): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof UsageError) throw e;
    // The library's messages may start with the same word ("import: ...").
    throw new UsageError(`tasks ${sub}: ${(e as Error).message.replace(new RegExp(`^${sub}: `), '')}`);
  }
}

function one(sub: string, positionals: string[], what: string): string {
  if (positionals.length !== 1) throw new UsageError(`tasks ${sub}: expected exactly one ${what}, got ${positionals.length ? positionals.join(' ') : 'none'}`);
  return positionals[0];
}

const fmt = (v: number | null) => (v === null ? '-' : String(v));

function list(values: Values): void {
  const { tasks, invalid } = listTasks();
  for (const i of invalid) console.error(`warning: skipped ${i.dir}: ${i.error.replace(/\n\s*/g, ' ')}`);
  const rows = tasks.map(({ spec, origin }) => ({
    name: spec.name,
    split: spec.split,
    modality: spec.modality,
    metric: spec.metric.name,
    direction: spec.metric.direction,
    baseline: spec.baseline,
    best: spec.best,
    origin,
  }));
  if (values.json) {
    console.log(JSON.stringify(rows, null, 2));
    return;
  }
  const header = ['name', 'split', 'modality', 'metric', 'direction', 'baseline', 'best', 'origin'];
  const table = [header, ...rows.map((r) => [r.name, r.split, r.modality, r.metric, r.direction, fmt(r.baseline), fmt(r.best), r.origin])];
  const widths = header.map((_, i) => Math.max(...table.map((row) => row[i].length)));
  for (const row of table) console.log(row.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd());
}

async function show(name: string): Promise<void> {
  const entry: TaskEntry = await asUsage('show', () => resolveTask(name));
  const { spec } = entry;
  const ideas = await asUsage('show', () => loadIdeas(entry.dir));
  const b = spec.budgets;
  console.log(
    [
      `${spec.name}: ${spec.title}`,
      `  dir        ${entry.dir} (${entry.origin})`,
      `  split      ${spec.split}    modality ${spec.modality}`,
      `  metric     ${spec.metric.name} (${spec.metric.direction})    baseline ${fmt(spec.baseline)}    best ${fmt(spec.best)}`,
      ...(spec.paperAnalogue ? [`  analogue   ${spec.paperAnalogue}`] : []),
      `  budgets    ${b.timeoutSec} s wall, ${b.memoryMb} MiB, ${b.cpuSec} CPU-s, ${b.maxProcs} processes, ${b.diskMb ?? DEFAULT_DISK_MB} MiB of workspace disk    seed ${spec.seed}`,
      '',
      'Research problem:',
      readFileSync(path.join(entry.dir, 'research_problem.md'), 'utf8').trimEnd(),
      '',
      'Data description:',
      readFileSync(path.join(entry.dir, 'data_description.md'), 'utf8').trimEnd(),
      '',
      `Ideas (${ideas.length}):`,
      ...ideas.map((i, k) => `  ${k + 1}. ${i.idea}`),
    ].join('\n'),
  );
}

async function importCommand(src: string, values: Values): Promise<void> {
  const dir = values.direction as string | undefined;
  const direction = dir === undefined ? undefined : dir === 'max' || dir === 'maximize' ? 'maximize' : dir === 'min' || dir === 'minimize' ? 'minimize' : null;
  if (direction === null) throw new UsageError(`tasks import: --direction must be max or min, got '${dir}'`);
  const split = values.split as string | undefined;
  if (split !== undefined && split !== 'held-in' && split !== 'held-out') throw new UsageError(`tasks import: --split must be held-in or held-out, got '${split}'`);
  const entry = await asUsage('import', () =>
    importTask(src, {
      name: values.name as string | undefined,
      metric: values.metric as string | undefined,
      direction,
      modality: values.modality as never,
      split: split as 'held-in' | 'held-out' | undefined,
      force: Boolean(values.force),
    }),
  );
  console.log(`imported ${entry.format} task '${entry.spec.name}' into ${entry.dir}`);
  console.log(`next: mlagent tasks baseline ${entry.spec.name}, then record its score as "baseline" (and a "best") in task.json`);
}

async function baseline(name: string, values: Values): Promise<void> {
  await asUsage('baseline', () => resolveTask(name));
  // Number('') is 0: an empty --seed would pass as seed 0.
  const seed = values.seed === undefined ? undefined : String(values.seed).trim() === '' ? NaN : Number(values.seed);
  // numpy and scikit-learn take seeds below 2^32.
  if (seed !== undefined && (!Number.isInteger(seed) || seed < 0 || seed > 2 ** 32 - 1)) throw new UsageError(`tasks baseline: --seed must be an integer in [0, 4294967295], got '${values.seed}'`);
  const quiet = Boolean(values.json);
  await asUsage('baseline', () => prepareTask(name, { seed, onProgress: quiet ? undefined : (l) => console.error(l) }));
  const r = await runBaseline(name, { seed });
  const report: BaselineReport = { task: r.task, metric: r.metric, direction: r.direction, score: r.score, outcome: r.outcome, seconds: r.seconds, error: r.error };
  if (quiet) console.log(JSON.stringify(report));
  else {
    console.log(`${r.task}: ${r.outcome}, ${r.metric} = ${r.score ?? '-'} (${r.direction}) in ${r.seconds} s`);
    if (r.error) console.log(`  ${r.error.replace(/\n/g, '\n  ')}`);
  }
  if (r.outcome !== 'ok') process.exitCode = 1;
}

export async function tasks(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'list': {
      const { values, positionals } = parse(rest, { json: { type: 'boolean', default: false } });
      if (positionals.length) throw new UsageError(`tasks list: unexpected argument '${positionals[0]}'`);
      return list(values);
    }
    case 'show': {
      const { positionals } = parse(rest, {});
      return show(one('show', positionals, 'task name'));
    }
    case 'import': {
      const { values, positionals } = parse(rest, {
        name: { type: 'string' },
        metric: { type: 'string' },
        direction: { type: 'string' },
        modality: { type: 'string' },
        split: { type: 'string' },
        force: { type: 'boolean', default: false },
      });
      return importCommand(one('import', positionals, 'source path'), values);
    }
    case 'baseline': {
      const { values, positionals } = parse(rest, { json: { type: 'boolean', default: false }, seed: { type: 'string' } });
      return baseline(one('baseline', positionals, 'task name'), values);
    }
    default:
      throw new UsageError(`tasks: ${sub ? `unknown subcommand '${sub}'` : 'missing subcommand'} (list, show, import, baseline)`);
  }
}
