import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchCase } from './types.js';

export interface TorchTimings {
  device: string;
  ms: Map<string, number>;
  errors: Map<string, string>;
}

/** The first Python that can `import torch`: $MLAGENT_PYTHON, Debian's /usr/bin/python3, then python3 on PATH. */
export function findTorchPython(): string | undefined {
  const candidates = [process.env.MLAGENT_PYTHON, '/usr/bin/python3', 'python3'].filter((p): p is string => !!p);
  for (const py of candidates) {
    const r = spawnSync(py, ['-c', 'import torch'], { stdio: 'ignore', timeout: 60_000 });
    if (r.status === 0) return py;
  }
  return undefined;
}

/** Where torch_bench.py is: beside the sources, the build, or a bundled mlagent.mjs (tools/device). */
export function torchScriptPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const rel of ['../bench/torch_bench.py', '../../bench/torch_bench.py', './torch_bench.py']) {
    const p = join(here, rel);
    if (existsSync(p)) return p;
  }
  throw new Error(`torch_bench.py not found near ${here}`);
}

/** Times the cases' torch snippets in one Python process. Returns undefined when no Python has torch. */
export function torchTimings(cases: BenchCase[], python = findTorchPython()): TorchTimings | undefined {
  if (!python) return undefined;
  const input = cases.filter((c) => c.torch).map((c) => ({ name: c.name, setup: c.torch!.setup, run: c.torch!.run }));
  if (input.length === 0) return { device: 'none', ms: new Map(), errors: new Map() };
  const r = spawnSync(python, [torchScriptPath()], {
    input: JSON.stringify(input),
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    timeout: 30 * 60_000,
  });
  if (r.status !== 0) throw new Error(`torch benchmark failed (${python}): ${r.stderr.slice(-2000)}`);
  const parsed = JSON.parse(r.stdout) as { device: string; results: Array<{ name: string; ms?: number; error?: string }> };
  const ms = new Map<string, number>();
  const errors = new Map<string, string>();
  for (const x of parsed.results) {
    if (x.ms !== undefined) ms.set(x.name, x.ms);
    else errors.set(x.name, x.error ?? 'unknown error');
  }
  return { device: parsed.device, ms, errors };
}
