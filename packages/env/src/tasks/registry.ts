import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { builtinTasksDir, userTasksDir } from './paths.js';
import { loadTaskSpec } from './spec.js';
import type { TaskEntry, TaskOrigin } from './types.js';

export interface RegistryOptions {
  /** `$MLAGENT_HOME` override (default: the environment variable, else ~/.mlagent). */
  home?: string;
}

export interface TaskList {
  tasks: TaskEntry[];
  /** Task directories that could not be loaded, with the reason (they are left out of `tasks`). */
  invalid: { dir: string; error: string }[];
}

/**
 * The task directories under `root`. One entry that cannot be stat'ed (a dangling link to a moved task, no
 * permission) or a root that is not a directory goes into `invalid`: it must not make the whole listing throw.
 */
function subdirs(root: string, invalid: TaskList['invalid']): string[] {
  let names: string[];
  try {
    names = readdirSync(root);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') invalid.push({ dir: root, error: `cannot list the tasks: ${(e as Error).message}` });
    return [];
  }
  const dirs: string[] = [];
  for (const n of names.filter((n) => !n.startsWith('.')).sort()) {
    const dir = path.join(root, n);
    try {
      if (statSync(dir).isDirectory()) dirs.push(dir);
    } catch (e) {
      invalid.push({ dir, error: `cannot read the task directory: ${(e as Error).message}` });
    }
  }
  return dirs;
}

/** Every built-in task (packages/env/tasks/*) and every user task ($MLAGENT_HOME/tasks/*), built-in first. */
export function listTasks(opts: RegistryOptions = {}): TaskList {
  const out: TaskList = { tasks: [], invalid: [] };
  const seen = new Map<string, string>();
  const roots: [string, TaskOrigin][] = [
    [builtinTasksDir(), 'built-in'],
    [userTasksDir(opts.home), 'user'],
  ];
  for (const [root, origin] of roots) {
    for (const dir of subdirs(root, out.invalid)) {
      try {
        const spec = loadTaskSpec(dir);
        const other = seen.get(spec.name);
        if (other) {
          out.invalid.push({ dir, error: `task name '${spec.name}' is already taken by ${other}` });
          continue;
        }
        seen.set(spec.name, dir);
        out.tasks.push({ spec, dir, origin });
      } catch (e) {
        out.invalid.push({ dir, error: (e as Error).message });
      }
    }
  }
  return out;
}

function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Finds a task by name (built-in first, then the user's store) or by directory path (anything containing a
 * path separator, or an existing directory). Throws an Error naming the known tasks when there is none.
 */
export function resolveTask(nameOrDir: string, opts: RegistryOptions = {}): TaskEntry {
  // Else a missing name (e.g. prepareTask(undefined)) crashes below as "Cannot read properties of undefined".
  if (typeof nameOrDir !== 'string' || nameOrDir === '') {
    throw new TypeError(`resolveTask: the task must be a task name or a task directory, got ${JSON.stringify(nameOrDir) ?? String(nameOrDir)}`);
  }
  if (nameOrDir.includes('/') || nameOrDir.startsWith('.')) {
    const dir = path.resolve(nameOrDir);
    if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`no task directory at ${dir}`);
    const builtin = path.resolve(builtinTasksDir());
    const origin: TaskOrigin = path.dirname(dir) === builtin ? 'built-in' : 'user';
    return { spec: loadTaskSpec(dir), dir, origin };
  }
  for (const [root, origin] of [
    [builtinTasksDir(), 'built-in'],
    [userTasksDir(opts.home), 'user'],
  ] as const) {
    const dir = path.join(root, nameOrDir);
    if (existsSync(path.join(dir, 'task.json'))) return { spec: loadTaskSpec(dir), dir, origin };
    // A half-copied or half-written task directory: say what it lacks rather than "unknown task".
    if (origin === 'user' && isDirectory(dir)) return { spec: loadTaskSpec(dir), dir, origin };
  }
  const known = listTasks(opts).tasks.map((t) => t.spec.name);
  throw new Error(`unknown task '${nameOrDir}' (known: ${known.length ? known.join(', ') : 'none'})`);
}
