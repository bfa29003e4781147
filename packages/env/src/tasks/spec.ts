import { closeSync, fstatSync, openSync, readFileSync, statSync, constants as fsc } from 'node:fs';
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
/**
 * The longest task name: the cache entry `<name>-<16 hex>` and its temp dir `.tmp-<entry>-<pid>-<8 hex>` must stay
 * under the 255-byte file name limit (a 240-character name failed in mkdir with ENAMETOOLONG).
 */
export const MAX_TASK_NAME_LENGTH = 100;
/** The largest seed: numpy's and scikit-learn's `random_state` take 0 .. 2^32 - 1. */
export const MAX_TASK_SEED = 2 ** 32 - 1;

const SPEC_KEYS = ['name', 'title', 'modality', 'split', 'paperAnalogue', 'metric', 'baseline', 'best', 'budgets', 'seed'];
const BUDGET_KEYS = ['timeoutSec', 'memoryMb', 'cpuSec', 'maxProcs'] as const;
const OPTIONAL_BUDGET_KEYS = ['diskMb'] as const;
/**
 * Upper bounds the sandbox can apply: timeoutSec * 1000 must fit setTimeout (2^31 - 1 ms; past it the timer fires
 * after 1 ms and every run "times out"), and byte counts must stay exact integers (1e15 MiB was written as
 * "1.048576e+21" to prlimit and memory.max). pid_max is at most 2^22.
 */
const BUDGET_MAX: Record<string, number> = {
  timeoutSec: Math.floor((2 ** 31 - 1) / 1000),
  memoryMb: 2 ** 32,
  cpuSec: 2 ** 32,
  maxProcs: 2 ** 22,
  diskMb: 2 ** 32,
};
/** The workspace's disk limit where a task.json names none: room for models and outputs, not for a full disk. */
export const DEFAULT_DISK_MB = 2048;

const MAX_SHOWN_PROBLEMS = 20;

/** A task directory or its files are malformed; the message lists every problem found. */
export class TaskFormatError extends Error {
  constructor(
    readonly where: string,
    readonly problems: string[],
  ) {
    // A hostile task.json with 100k unknown keys made a message of megabytes (listTasks keeps one per task): the
    // message shows the first problems, each cut short; `problems` keeps them all.
    const shown = problems.slice(0, MAX_SHOWN_PROBLEMS).map((p) => (p.length > 300 ? `${p.slice(0, 300)}...` : p));
    if (problems.length > shown.length) shown.push(`... and ${problems.length - shown.length} more problems`);
    super(`${where}: ${shown.length === 1 ? shown[0] : '\n  - ' + shown.join('\n  - ')}`);
    this.name = 'TaskFormatError';
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// JSON.stringify writes NaN and ±Infinity as null, so "'baseline' must be a finite number or null, got null" blamed
// the one value that is allowed; a spec built in code (importTask's budgets) can hold them. A value nested 100k deep
// overflowed JSON.stringify's stack (a bare RangeError), and a 1 MB one was copied whole into the message.
const show = (v: unknown) => {
  if (v === undefined) return 'nothing';
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
  let text: string;
  try {
    text = JSON.stringify(v) ?? String(v);
  } catch {
    text = Array.isArray(v) ? 'an array nested too deep to show' : 'an object nested too deep to show';
  }
  return text.length > 80 ? `${text.slice(0, 60)}... (${text.length} characters)` : text;
};

/** C0 and C1 control characters (newlines and terminal escapes among them). */
// eslint-disable-next-line no-control-regex
export const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f]/;

/** A field name for a message: a hostile one may be a megabyte long. */
const key = (k: string) => (k.length > 60 ? `${k.slice(0, 60)}... (${k.length} characters)` : k);

/** Checks a parsed task.json and returns it typed; throws TaskFormatError listing every bad field. */
export function validateTaskSpec(json: unknown, where = 'task.json'): TaskSpec {
  const problems: string[] = [];
  if (!isObject(json)) throw new TaskFormatError(where, [`must be a JSON object, got ${show(json)}`]);
  for (const k of Object.keys(json)) if (!SPEC_KEYS.includes(k)) problems.push(`unknown field '${key(k)}' (known: ${SPEC_KEYS.join(', ')})`);
  const str = (k: string, optional = false) => {
    const v = json[k];
    if (optional && v === undefined) return;
    if (typeof v !== 'string' || v.trim() === '') problems.push(`'${k}' must be a non-empty string, got ${show(v)}`);
  };
  str('name');
  if (typeof json.name === 'string' && json.name && !TASK_NAME_PATTERN.test(json.name)) {
    problems.push(`'name' must be lowercase letters, digits, '.', '_' or '-' (starting with a letter or digit), got ${show(json.name)}`);
  }
  if (typeof json.name === 'string' && json.name.length > MAX_TASK_NAME_LENGTH) {
    problems.push(`'name' must be at most ${MAX_TASK_NAME_LENGTH} characters, got ${json.name.length}`);
  }
  str('title');
  str('paperAnalogue', true);
  // Printed by `mlagent tasks list`: an escape sequence in an imported task's title would drive the user's terminal.
  for (const k of ['title', 'paperAnalogue']) {
    if (typeof json[k] === 'string' && CONTROL_CHARS.test(json[k])) problems.push(`'${k}' must be one line without control characters, got ${show(json[k])}`);
  }
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
    for (const k of Object.keys(metric)) if (k !== 'name' && k !== 'direction') problems.push(`unknown field 'metric.${key(k)}'`);
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
      else if (v > BUDGET_MAX[k]) problems.push(`'budgets.${k}' must be a positive integer at most ${BUDGET_MAX[k]}, got ${show(v)}`);
    }
    const known: readonly string[] = [...BUDGET_KEYS, ...OPTIONAL_BUDGET_KEYS];
    for (const k of Object.keys(budgets)) if (!known.includes(k)) problems.push(`unknown field 'budgets.${key(k)}'`);
  }
  // String(1e21) is "1e+21", which prepare.py's int argument refuses; numpy's seeds stop at 2^32 - 1.
  if (typeof json.seed !== 'number' || !Number.isInteger(json.seed) || json.seed < 0 || json.seed > MAX_TASK_SEED) {
    problems.push(`'seed' must be a non-negative integer at most ${MAX_TASK_SEED}, got ${show(json.seed)}`);
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

/** Whether `file` is a regular file (following links), or why not; undefined when it does not exist. */
function fileProblem(file: string): string | undefined {
  try {
    return statSync(file).isFile() ? '' : 'is not a regular file';
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT' ? undefined : `cannot be read: ${(e as Error).message}`;
  }
}

function readJson(file: string): unknown {
  let text: string;
  try {
    // O_NONBLOCK: opening a FIFO for reading would block until a writer came (listTasks hung on one).
    const fd = openSync(file, fsc.O_RDONLY | fsc.O_NONBLOCK);
    try {
      if (!fstatSync(fd).isFile()) throw new TaskFormatError(file, ['is not a regular file']);
      text = readFileSync(fd, 'utf8');
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    if (e instanceof TaskFormatError) throw e;
    throw new TaskFormatError(file, [`cannot be read: ${(e as Error).message}`]);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new TaskFormatError(file, [`is not valid JSON: ${(e as Error).message}`]);
  }
}

/** The files every task directory must have (ideas.json is optional). */
export const REQUIRED_TASK_FILES = ['task.json', 'research_problem.md', 'data_description.md', 'prepare.py', 'grade.py', 'env/train.py'];

/** Reads and checks a task directory's task.json (and that the required files exist). */
export function loadTaskSpec(dir: string): TaskSpec {
  // A FIFO (or a directory) where a file belongs would block or fail every later read of it.
  const problems = REQUIRED_TASK_FILES.flatMap((f) => {
    const why = fileProblem(path.join(dir, f));
    return why === undefined ? [`missing ${f}`] : why ? [`${f} ${why}`] : [];
  });
  if (problems.length) throw new TaskFormatError(dir, problems);
  const spec = validateTaskSpec(readJson(path.join(dir, 'task.json')), path.join(dir, 'task.json'));
  if (spec.name !== path.basename(dir)) {
    throw new TaskFormatError(path.join(dir, 'task.json'), [`'name' is ${show(spec.name)} but the directory is named ${show(path.basename(dir))}`]);
  }
  return spec;
}

/** Reads and checks a task directory's ideas.json ([] when absent). */
export function loadIdeas(dir: string): TaskIdea[] {
  const file = path.join(dir, 'ideas.json');
  if (fileProblem(file) === undefined) return [];
  return validateIdeas(readJson(file), file, readFileSync(path.join(dir, 'env', 'train.py'), 'utf8'));
}
