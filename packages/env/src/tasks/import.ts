import { cpSync, existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, realpathSync, renameSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { makeDirsSync } from '../fs/make-dirs.js';
import { inside } from '../sandbox/isolation.js';
import { pidAlive } from '../sandbox/pid-alive.js';
import {
  MLAGENTBENCH_GRADE,
  MLAGENTBENCH_PREPARE,
  MLEBENCH_GRADE,
  MLEBENCH_PREPARE,
  MLEBENCH_SHIM,
  MLEBENCH_TRAIN,
} from './import-templates.js';
import { builtinTasksDir, userTasksDir } from './paths.js';
import { removeTree } from './prepare.js';
import { CONTROL_CHARS, loadTaskSpec, MODALITIES, TASK_NAME_PATTERN, validateTaskSpec } from './spec.js';
import type { Modality, TaskEntry, TaskSpec, TaskSplit } from './types.js';

export type ImportFormat = 'mlagentbench' | 'mlebench';

export interface ImportOptions {
  /** Task name (default: the source directory's name, lowercased). */
  name?: string;
  /** Metric name and direction; required when the source does not state them (MLAgentBench, MLE-bench). */
  metric?: string;
  direction?: 'maximize' | 'minimize';
  /** Default: guessed from the metric (classification metrics → tabular-classification, else tabular-regression). */
  modality?: Modality;
  /** Default 'held-out'. */
  split?: TaskSplit;
  /** Default { timeoutSec: 600, memoryMb: 4096, cpuSec: 1200, maxProcs: 64 }. */
  budgets?: TaskSpec['budgets'];
  /** `$MLAGENT_HOME` override. */
  home?: string;
  /** Replace an existing user task of the same name. */
  force?: boolean;
}

const CLASSIFICATION_METRICS = new Set(['accuracy', 'auc', 'logloss', 'qwk', 'map@5', 'f1']);
const DEFAULT_BUDGETS = { timeoutSec: 600, memoryMb: 4096, cpuSec: 1200, maxProcs: 64 };
const CODE_FILE = /\.(py|sh|ipynb|md)$/;

/** Which importer a source directory needs, or an Error saying what was expected. */
export function detectImportFormat(src: string): ImportFormat {
  if (!existsSync(src) || !statSync(src).isDirectory()) throw new Error(`import: ${src} is not a directory`);
  if (existsSync(path.join(src, 'env')) && existsSync(path.join(src, 'scripts'))) return 'mlagentbench';
  if (existsSync(path.join(src, 'description.md'))) return 'mlebench';
  throw new Error(
    `import: ${src} is neither an MLAgentBench task (env/ and scripts/) nor an MLE-bench competition (description.md, ` +
      `public/ and private/ or prepared/public and prepared/private, and grade.py)`,
  );
}

/**
 * Converts an MLAgentBench task or an MLE-bench competition into the native layout under
 * `$MLAGENT_HOME/tasks/<name>` (written to a temp dir, then renamed into place) and returns the loaded task.
 */
export function importTask(src: string, opts: ImportOptions = {}): TaskEntry & { format: ImportFormat } {
  const source = path.resolve(src);
  const format = detectImportFormat(source);
  const name = opts.name ?? path.basename(source).toLowerCase().replace(/[^a-z0-9._-]+/g, '-');
  // RegExp.test turns a number into its digits, so name: 5 passed the pattern and crashed in path.join.
  if (typeof name !== 'string' || !TASK_NAME_PATTERN.test(name)) {
    throw new Error(`import: invalid task name '${String(name)}' (use lowercase letters, digits, '.', '_', '-')${opts.name === undefined ? '; pass --name' : ''}`);
  }
  // A user task cannot shadow a built-in one: the registry would skip it at every listing.
  if (existsSync(path.join(builtinTasksDir(), name))) throw new Error(`import: '${name}' is the name of a built-in task; pass another --name`);
  if (!opts.metric || !opts.direction) {
    throw new Error(`import: ${format === 'mlagentbench' ? 'MLAgentBench tasks' : 'MLE-bench competitions'} do not state their metric; pass --metric NAME --direction max|min`);
  }
  const store = userTasksDir(opts.home);
  const dest = path.join(store, name);
  if (existsSync(dest) && !opts.force) throw new Error(`import: task '${name}' already exists at ${dest} (pass --name or --force)`);
  // Under $MLAGENT_HOME, the user's path: a bad one must fail, not hang as Node's recursive mkdir can (see makeDirs).
  makeDirsSync(store);
  removeStaleImports(store);
  const tmp = path.join(store, `.import-${name}-${process.pid}`);
  removeTree(tmp);
  makeDirsSync(path.join(tmp, 'env'));
  try {
    const title = format === 'mlagentbench' ? buildMlAgentBench(source, tmp) : buildMleBench(source, tmp);
    const spec: TaskSpec = {
      name,
      title: oneLine(title),
      modality: opts.modality ?? (CLASSIFICATION_METRICS.has(opts.metric) ? 'tabular-classification' : 'tabular-regression'),
      split: opts.split ?? 'held-out',
      paperAnalogue: oneLine(`imported ${format === 'mlagentbench' ? 'MLAgentBench task' : 'MLE-bench competition'} from ${source}`),
      metric: { name: opts.metric, direction: opts.direction },
      baseline: null,
      best: null,
      budgets: opts.budgets ?? DEFAULT_BUDGETS,
      seed: 0,
    };
    if (opts.modality && !MODALITIES.includes(opts.modality)) throw new Error(`import: unknown modality '${opts.modality}' (one of ${MODALITIES.join(', ')})`);
    validateTaskSpec(spec, 'import');
    writeFileSync(path.join(tmp, 'task.json'), JSON.stringify(spec, null, 2) + '\n');
    if (existsSync(dest)) {
      // Checked again: another process may have imported the same name while this one copied.
      if (!opts.force) throw new Error(`import: task '${name}' already exists at ${dest} (pass --name or --force)`);
      removeTree(dest);
    }
    renameSync(tmp, dest);
  } catch (e) {
    removeTree(tmp);
    throw e;
  }
  return { spec: loadTaskSpec(dest), dir: dest, origin: 'user', format };
}

/**
 * Temp dirs of imports whose process died (killed midway): a competition's whole data, hidden in the store for ever.
 */
function removeStaleImports(store: string): void {
  for (const n of readdirSync(store)) {
    const m = /^\.import-.+-(\d+)$/.exec(n);
    if (m && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]))) removeTree(path.join(store, n));
  }
}

/**
 * Checks the parts of a source directory that an import reads or copies (`parts`, relative to `src`; missing ones
 * are skipped), before anything is read: a FIFO blocks its reader for ever, and a link is copied as what it points
 * to, so a link out of the source (to `~/.ssh/id_rsa`, or `/dev/zero`, which prepare.py would copy until the disk
 * is full) would put a host file into the agent's data. Links that stay inside are followed, loops refused.
 */
function checkSource(src: string, parts: string[]): void {
  const root = realpathSync(src);
  const fail = (rel: string, why: string): never => {
    throw new Error(`import: ${rel} ${why}; the import copies only regular files and directories of ${src}`);
  };
  const visit = (abs: string, rel: string, stack: string[]) => {
    let st = lstatSync(abs);
    let real = abs;
    // Directories too: a part reached through a link above it (prepared -> /elsewhere) is outside as well.
    if (st.isSymbolicLink() || st.isDirectory()) {
      const link = st.isSymbolicLink() ? readlinkSync(abs) : undefined;
      try {
        real = realpathSync(abs);
      } catch {
        return fail(rel, `is a link to ${link}, which does not exist`);
      }
      if (!inside(real, root)) fail(rel, link === undefined ? `lies outside the source (${real}, through a link)` : `is a link to ${link}, outside the source`);
      st = statSync(real);
    }
    if (st.isDirectory()) {
      if (stack.includes(real)) fail(rel, 'is a link to a directory above it (a loop)');
      for (const b of readdirSync(real, { encoding: 'buffer' })) {
        const n = b.toString('utf8');
        // Decoded, such a name cannot be found again (Node reads it as U+FFFD): the copy failed with ENOENT.
        if (!Buffer.from(n).equals(b)) fail(`${rel}/${b.toString('latin1')}`, 'has a name that is not UTF-8');
        visit(path.join(real, n), `${rel}/${n}`, [...stack, real]);
      }
    } else if (!st.isFile()) {
      fail(rel, `is not a regular file or a directory (${st.isFIFO() ? 'a FIFO' : st.isSocket() ? 'a socket' : 'a device'})`);
    }
  };
  for (const rel of parts) {
    const abs = path.join(src, rel);
    try {
      lstatSync(abs);
    } catch {
      continue;
    }
    visit(abs, rel, [root]);
  }
}

/** Text from the source (a heading, its path) made one printable line: task.json's title refuses control characters. */
function oneLine(text: string): string {
  return text.replace(new RegExp(CONTROL_CHARS.source, 'g'), ' ').trim();
}

function need(file: string, what: string): string {
  if (!existsSync(file)) throw new Error(`import: missing ${what} (${file})`);
  return file;
}

/** MLAgentBench: env/ = the agent's files, scripts/ = research_problem.txt, eval.py, read_only_files.txt, prepare.py. */
function buildMlAgentBench(src: string, out: string): string {
  checkSource(src, ['env', 'scripts']);
  for (const d of ['env', 'scripts']) if (!statSync(path.join(src, d)).isDirectory()) throw new Error(`import: ${path.join(src, d)} must be a directory`);
  const scripts = path.join(src, 'scripts');
  const problem = readFileSync(need(path.join(scripts, 'research_problem.txt'), 'scripts/research_problem.txt'), 'utf8');
  const evalPy = readFileSync(need(path.join(scripts, 'eval.py'), 'scripts/eval.py'), 'utf8');
  // Else the error blamed a field the user never wrote: "'title' must be a non-empty string, got \"\"".
  if (!problem.trim()) throw new Error(`import: ${path.join(scripts, 'research_problem.txt')} is empty: it is the task the agent is given`);
  if (!/def\s+get_score\s*\(/.test(evalPy)) throw new Error('import: scripts/eval.py does not define get_score(submission_folder)');
  need(path.join(src, 'env', 'train.py'), 'env/train.py');
  const readOnly = existsSync(path.join(scripts, 'read_only_files.txt'))
    ? readFileSync(path.join(scripts, 'read_only_files.txt'), 'utf8').split('\n').map((l) => l.trim()).filter(Boolean)
    : [];
  // Code = top-level scripts/docs of env/ not declared read-only; everything else is data, served from data/.
  const isReadOnly = (n: string) => readOnly.some((p) => p === n || p.split('/')[0] === n || globMatch(p, n));
  const codeFiles: string[] = [];
  for (const n of readdirSync(path.join(src, 'env')).sort()) {
    if (n === 'data_description.txt') continue;
    const full = path.join(src, 'env', n);
    if (statSync(full).isFile() && CODE_FILE.test(n) && !isReadOnly(n)) {
      codeFiles.push(n);
      cpSync(full, path.join(out, 'env', n), { dereference: true });
    } else if (n !== 'data') symlinkSync(`data/${n}`, path.join(out, 'env', n)); // train.py reads ./train.csv
  }
  for (const p of readOnly) {
    const top = p.split('/')[0];
    if (top && top !== 'data' && !/[*?[]/.test(top) && !linkOrFileExists(path.join(out, 'env', top)) && !codeFiles.includes(top)) {
      symlinkSync(`data/${top}`, path.join(out, 'env', top)); // written by their prepare.py
    }
  }
  // Links are copied as what they point to (checkSource: inside the source): the task must not depend on the clone.
  cpSync(path.join(src, 'env'), path.join(out, 'source', 'env'), { recursive: true, dereference: true });
  cpSync(scripts, path.join(out, 'source', 'scripts'), { recursive: true, dereference: true });
  writeFileSync(path.join(out, 'import.json'), JSON.stringify({ format: 'mlagentbench', source: src, codeFiles }, null, 2) + '\n');
  writeFileSync(path.join(out, 'research_problem.md'), problem.trim() + '\n');
  const desc = path.join(src, 'env', 'data_description.txt');
  writeFileSync(path.join(out, 'data_description.md'), existsSync(desc) ? readFileSync(desc, 'utf8') : `The task's data files are in data/ (and linked into the workspace root).\n`);
  writeFileSync(path.join(out, 'prepare.py'), MLAGENTBENCH_PREPARE);
  writeFileSync(path.join(out, 'grade.py'), MLAGENTBENCH_GRADE);
  return problem.trim().split('\n')[0].slice(0, 100);
}

/** existsSync that also sees dangling symlinks (links into data/ dangle until a workspace mounts data/). */
function linkOrFileExists(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/** Simple glob: `*` and `?` within one path component. */
function globMatch(pattern: string, name: string): boolean {
  if (!/[*?]/.test(pattern) || pattern.includes('/')) return false;
  const re = new RegExp('^' + pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$');
  return re.test(name);
}

/**
 * MLE-bench: description.md; prepared data in public/ and private/ (or prepared/public, prepared/private);
 * a grader grade.py (or the single .py defining grade(submission, answers)); optional prepare.py with
 * prepare(raw, public, private) plus raw/.
 */
function buildMleBench(src: string, out: string): string {
  const base0 = existsSync(path.join(src, 'prepared', 'public')) ? 'prepared' : '.';
  const rawUsed = existsSync(path.join(src, 'prepare.py')) && existsSync(path.join(src, 'raw'));
  checkSource(src, [
    'description.md',
    ...readdirSync(src).filter((n) => n.endsWith('.py')),
    path.join(base0, 'public'),
    path.join(base0, 'private'),
    ...(rawUsed ? ['raw'] : []),
  ]);
  const description = readFileSync(path.join(src, 'description.md'), 'utf8');
  if (!description.trim()) throw new Error(`import: ${path.join(src, 'description.md')} is empty: it is the task the agent is given`);
  const base = existsSync(path.join(src, 'prepared', 'public')) ? path.join(src, 'prepared') : src;
  const pub = need(path.join(base, 'public'), 'public/ (the prepared public data)');
  const priv = need(path.join(base, 'private'), 'private/ (the prepared answers)');
  const grader = findGrader(src);
  const csvs = readdirSync(priv).filter((n) => n.endsWith('.csv'));
  const answersFile = csvs.includes('answers.csv') ? 'answers.csv' : csvs.length === 1 ? csvs[0] : undefined;
  if (!answersFile) throw new Error(`import: private/ must hold answers.csv or exactly one .csv file, found ${csvs.length ? csvs.join(', ') : 'none'}`);
  const sample = readdirSync(pub).find((n) => /^sample_submission.*\.csv$/i.test(n));
  // cpSync made relative links absolute links into the source clone: copy what they point to (checkSource).
  cpSync(pub, path.join(out, 'source', 'public'), { recursive: true, dereference: true });
  cpSync(priv, path.join(out, 'source', 'private'), { recursive: true, dereference: true });
  cpSync(grader, path.join(out, 'source', 'their_grade.py'), { dereference: true });
  if (rawUsed) {
    cpSync(path.join(src, 'prepare.py'), path.join(out, 'source', 'their_prepare.py'), { dereference: true });
    cpSync(path.join(src, 'raw'), path.join(out, 'source', 'raw'), { recursive: true, dereference: true });
  }
  makeDirsSync(path.join(out, 'source', 'shims', 'mlebench'));
  writeFileSync(path.join(out, 'source', 'shims', 'mlebench', '__init__.py'), '');
  writeFileSync(path.join(out, 'source', 'shims', 'mlebench', 'grade_helpers.py'), MLEBENCH_SHIM);
  writeFileSync(path.join(out, 'import.json'), JSON.stringify({ format: 'mlebench', source: src, answersFile }, null, 2) + '\n');
  writeFileSync(
    path.join(out, 'research_problem.md'),
    `${description.trim()}\n\nThe data is in data/. Write your predictions to submission.csv in the workspace root` +
      (sample ? `, in the format of data/${sample}.\n` : '.\n'),
  );
  const files = readdirSync(pub).sort();
  writeFileSync(path.join(out, 'data_description.md'), `Files in data/ (see the description for their columns):\n${files.map((f) => `- ${f}`).join('\n')}\n`);
  writeFileSync(path.join(out, 'prepare.py'), MLEBENCH_PREPARE);
  writeFileSync(path.join(out, 'grade.py'), MLEBENCH_GRADE);
  writeFileSync(path.join(out, 'env', 'train.py'), MLEBENCH_TRAIN(sample));
  const heading = /^#\s+(.+)$/m.exec(description);
  return (heading ? heading[1] : path.basename(src)).trim().slice(0, 100);
}

function findGrader(src: string): string {
  const own = path.join(src, 'grade.py');
  if (existsSync(own)) {
    if (!/def\s+grade\s*\(/.test(readFileSync(own, 'utf8'))) throw new Error(`import: ${own} does not define grade(submission, answers)`);
    return own;
  }
  const candidates = readdirSync(src).filter((n) => n.endsWith('.py') && /def\s+grade\s*\(/.test(readFileSync(path.join(src, n), 'utf8')));
  if (candidates.length !== 1) {
    throw new Error(`import: expected grade.py or exactly one .py file defining grade(submission, answers) in ${src}, found ${candidates.length ? candidates.join(', ') : 'none'}`);
  }
  return path.join(src, candidates[0]);
}
