// Live workspaces of episodes (filled by the task loader's createWorkspace) and what their sandbox hides.
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeDirs } from '../fs/make-dirs.js';
import { inside } from '../sandbox/isolation.js';
import type { PreparedTask } from '../tasks/types.js';
import { taskSandboxPaths } from '../tasks/workspace.js';

export function defaultWorkRoot(): string {
  return path.join(os.tmpdir(), 'mlagent-ws');
}

/** Makes an empty workspace directory under `workRoot`, named after the task. */
export async function makeWorkspaceDir(workRoot: string, taskName: string): Promise<string> {
  // The caller's workRoot: a bad one must fail, not hang as Node's recursive mkdir can (see makeDirs).
  await makeDirs(workRoot);
  const safe = taskName.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 60) || 'task';
  return fs.mkdtemp(path.join(workRoot, `${safe}-`));
}

/**
 * Paths the agent's code must not see: the task loader's (task sources, private answers) plus the snapshot
 * store, unless the store holds the workspace or the data (then hiding it would hide them too).
 */
export async function hiddenPathsFor(task: PreparedTask, workspace: string, storeDir: string): Promise<string[]> {
  const real = (p: string) => fs.realpath(p).catch(() => path.resolve(p));
  const { hiddenPaths } = taskSandboxPaths(task);
  const hidden = await Promise.all(hiddenPaths.map(real));
  const store = await real(storeDir);
  const keep = [await real(workspace), await real(task.publicDir)];
  const storeIsSafe = !keep.some((k) => inside(k, store)) && !hidden.some((h) => inside(store, h));
  return storeIsSafe ? [...hidden.filter((h) => !inside(h, store)), store] : hidden;
}
