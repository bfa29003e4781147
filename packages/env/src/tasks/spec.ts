import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { MetricName, Modality, TaskIdea, TaskSpec, TaskSplit } from './types.js';

export const MODALITIES: readonly Modality[] = [
  'image-classification',
  'image-denoising',
  'tabular-regression',
  'tabular-classification',
  'text-classification',
  'text-regression',
  'graph-node-classification',
];
export const SPLITS: readonly TaskSplit[] = ['held-in', 'held-out'];
export const METRIC_NAMES: readonly MetricName[] = ['accuracy', 'auc', 'logloss', 'mae', 'rmse', 'rmsle', 'mcrmse', 'qwk', 'map@5', 'pcc'];
export const TASK_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]*$/;

const SPEC_KEYS = ['name', 'title', 'modality', 'split', 'paperAnalogue', 'metric', 'baseline', 'best', 'budgets', 'seed'];
const BUDGET_KEYS = ['timeoutSec', 'memoryMb', 'cpuSec', 'maxProcs'] as const;
const OPTIONAL_BUDGET_KEYS = ['diskMb'] as const;
/** The workspace's disk limit where a task.json names none: room for models and outputs, not for a full disk. */
export const DEFAULT_DISK_MB = 2048;

/** A task directory or its files are malformed; the message lists every problem found. */
export class TaskFormatError extends Error {
  constructor(
    readonly where: string,
    readonly problems: string[],
  ) {
    super(`${where}: ${problems.length === 1 ? problems[0] : '\n  - ' + problems.join('\n  - ')}`);
    this.name = 'TaskFormatError';
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// JSON.stringify writes NaN and ±Infinity as null, so "'baseline' must be a finite number or null, got null" blamed
// the one value that is allowed; a spec built in code (importTask's budgets) can hold them.
const show = (v: unknown) => (v === undefined ? 'nothing' : typeof v === 'number' && !Number.isFinite(v) ? String(v) : (JSON.stringify(v) ?? String(v)));

/** Checks a parsed task.json and returns it typed; throws TaskFormatError listing every bad field. */
export function validateTaskSpec(json: unknown, where = 'task.json'): TaskSpec {
  const problems: string[] = [];
  if (!isObject(json)) throw new TaskFormatError(where, [`must be a JSON object, got ${show(json)}`]);
  for (const k of Object.keys(json)) if (!SPEC_KEYS.includes(k)) problems.push(`unknown field '${k}' (known: ${SPEC_KEYS.join(', ')})`);
  const str = (k: string, optional = false) => {
    const v = json[k];
    if (optional && v === undefined) return;
    if (typeof v !== 'string' || v.trim() === '') problems.push(`'${k}' must be a non-empty string, got ${show(v)}`);
  };
  str('name');
  if (typeof json.name === 'string' && json.name && !TASK_NAME_PATTERN.test(json.name)) {
    problems.push(`'name' must be lowercase letters, digits, '.', '_' or '-' (starting with a letter or digit), got ${show(json.name)}`);
  }
  str('title');
  str('paperAnalogue', true);
  if (!MODALITIES.includes(json.modality as Modality)) problems.push(`'modality' must be one of ${MODALITIES.join(', ')}; got ${show(json.modality)}`);
  if (!SPLITS.includes(json.split as TaskSplit)) problems.push(`'split' must be 'held-in' or 'held-out', got ${show(json.split)}`);
  const metric = json.metric;
  if (!isObject(metric)) problems.push(`'metric' must be an object {"name", "direction"}, got ${show(metric)}`);
  else {
    if (typeof metric.name !== 'string' || !/^[A-Za-z0-9@_.-]+$/.test(metric.name)) {
      problems.push(`'metric.name' must be a metric name such as ${METRIC_NAMES.join(', ')}; got ${show(metric.name)}`);
    }
    if (metric.direction !== 'maximize' && metric.direction !== 'minimize') {
      problems.push(`'metric.direction' must be 'maximize' or 'minimize', got ${show(metric.direction)}`);
    }
    for (const k of Object.keys(metric)) if (k !== 'name' && k !== 'direction') problems.push(`unknown field 'metric.${k}'`);
  }
  for (const k of ['baseline', 'best']) {
    const v = json[k];
    if (v !== null && !(typeof v === 'number' && Number.isFinite(v))) problems.push(`'${k}' must be a finite number or null, got ${show(v)}`);
  }
  if (typeof json.baseline === 'number' && json.baseline === json.best) {
    problems.push(`'best' equals 'baseline' (${json.baseline}): the reward scale 100/|best - baseline| would be infinite`);
  }
  const budgets = json.budgets;
  if (!isObject(budgets)) problems.push(`'budgets' must be an object {${BUDGET_KEYS.join(', ')}}, got ${show(budgets)}`);
  else {
    for (const k of [...BUDGET_KEYS, ...OPTIONAL_BUDGET_KEYS]) {
      const v = budgets[k];
      if (v === undefined && (OPTIONAL_BUDGET_KEYS as readonly string[]).includes(k)) continue;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) problems.push(`'budgets.${k}' must be a positive integer, got ${show(v)}`);
    }
    const known: readonly string[] = [...BUDGET_KEYS, ...OPTIONAL_BUDGET_KEYS];
    for (const k of Object.keys(budgets)) if (!known.includes(k)) problems.push(`unknown field 'budgets.${k}'`);
  }
  if (typeof json.seed !== 'number' || !Number.isInteger(json.seed) || json.seed < 0) {
    problems.push(`'seed' must be a non-negative integer, got ${show(json.seed)}`);
  }
  if (problems.length) throw new TaskFormatError(where, problems);
  return json as unknown as TaskSpec;
}

/** Checks a parsed ideas.json; with `trainPy`, also that every `find` occurs exactly once in it. */
export function validateIdeas(json: unknown, where = 'ideas.json', trainPy?: string): TaskIdea[] {
  if (!Array.isArray(json)) throw new TaskFormatError(where, [`must be a JSON array of {"idea", "edits"}, got ${show(json)}`]);
  const problems: string[] = [];
  json.forEach((idea: unknown, i) => {
    if (!isObject(idea)) return problems.push(`[${i}] must be an object {"idea", "edits"}`);
    if (typeof idea.idea !== 'string' || !idea.idea.trim()) problems.push(`[${i}].idea must be a non-empty string`);
    if (!Array.isArray(idea.edits) || idea.edits.length === 0) return problems.push(`[${i}].edits must be a non-empty array`);
    idea.edits.forEach((e: unknown, j) => {
      if (!isObject(e) || typeof e.find !== 'string' || !e.find || typeof e.replace !== 'string') {
        return problems.push(`[${i}].edits[${j}] must be {"find": non-empty string, "replace": string}`);
      }
      if (trainPy !== undefined) {
        const n = trainPy.split(e.find).length - 1;
        if (n !== 1) problems.push(`[${i}].edits[${j}].find occurs ${n} times in env/train.py (must be exactly once): ${show(e.find.slice(0, 80))}`);
      }
    });
  });
  if (problems.length) throw new TaskFormatError(where, problems);
  return json as TaskIdea[];
}

/** Applies an idea's edits to a source text; throws when a `find` does not occur exactly once. */
export function applyIdea(source: string, idea: TaskIdea): string {
  let out = source;
  for (const e of idea.edits) {
    const n = out.split(e.find).length - 1;
    if (n !== 1) throw new Error(`idea "${idea.idea}": edit target occurs ${n} times (must be exactly once): ${show(e.find.slice(0, 80))}`);
    out = out.replace(e.find, () => e.replace);
  }
  return out;
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new TaskFormatError(file, [`is not valid JSON: ${(e as Error).message}`]);
  }
}

/** The files every task directory must have (ideas.json is optional). */
export const REQUIRED_TASK_FILES = ['task.json', 'research_problem.md', 'data_description.md', 'prepare.py', 'grade.py', 'env/train.py'];

/** Reads and checks a task directory's task.json (and that the required files exist). */
export function loadTaskSpec(dir: string): TaskSpec {
  const missing = REQUIRED_TASK_FILES.filter((f) => !existsSync(path.join(dir, f)));
  if (missing.length) throw new TaskFormatError(dir, missing.map((f) => `missing ${f}`));
  const spec = validateTaskSpec(readJson(path.join(dir, 'task.json')), path.join(dir, 'task.json'));
  if (spec.name !== path.basename(dir)) {
    throw new TaskFormatError(path.join(dir, 'task.json'), [`'name' is ${show(spec.name)} but the directory is named ${show(path.basename(dir))}`]);
  }
  return spec;
}

/** Reads and checks a task directory's ideas.json ([] when absent). */
export function loadIdeas(dir: string): TaskIdea[] {
  const file = path.join(dir, 'ideas.json');
  if (!existsSync(file)) return [];
  return validateIdeas(readJson(file), file, readFileSync(path.join(dir, 'env', 'train.py'), 'utf8'));
}
