// The policies one `mlagent eval --model DIR --adapter A --adapter B [--with-base]` evaluates on a single model
// load, each with a short label and a subdirectory of --out for its results.
import { sep, resolve } from 'node:path';
import { UsageError } from '../args.js';

export interface PolicyVariant {
  /** The adapter directory as given, or undefined for the base model. */
  adapter: string | undefined;
  /** 'base', or the adapter's path below the directory the adapters share ('sft/adapter', 'ppo/adapter'). */
  label: string;
  /** Its subdirectory of --out: the label with '/' as '-' ('base', 'sft-adapter'). */
  dir: string;
}

export function policyVariants(adapters: readonly string[], withBase: boolean): PolicyVariant[] {
  const paths = adapters.map((a) => resolve(a));
  const twice = paths.findIndex((p, i) => paths.indexOf(p) !== i);
  if (twice >= 0) throw new UsageError(`eval: --adapter ${adapters[twice]} is given twice`);
  // Training runs keep every adapter in a directory named 'adapter', so the basename alone would not tell them
  // apart: the label keeps what follows the common directory (at least the last component of each).
  const parts = paths.map((p) => p.split(sep).filter((s) => s !== ''));
  let common = 0;
  const shortest = Math.min(...parts.map((p) => p.length));
  while (common < shortest - 1 && parts.every((p) => p[common] === parts[0][common])) common++;
  const variants: PolicyVariant[] = [];
  const dirs = new Set<string>();
  const add = (adapter: string | undefined, label: string) => {
    const base = label.replaceAll('/', '-');
    let dir = base;
    for (let k = 2; dirs.has(dir); k++) dir = `${base}-${k}`;
    dirs.add(dir);
    variants.push({ adapter, label, dir });
  };
  if (withBase) add(undefined, 'base');
  adapters.forEach((a, i) => add(a, parts[i].slice(common).join('/')));
  return variants;
}
