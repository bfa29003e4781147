import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runSandboxed } from './run.js';
import { CPU_KERNEL_PIN_VARS, taskSandboxEnv } from '../tasks/workspace.js';
import { pythonPrefixPaths } from '../tasks/python.js';
import type { IsolationLevel, LimitMechanisms, SandboxOutcome } from './types.js';

/** The Python modules the built-in tasks' code imports. */
const TASK_MODULES = ['numpy', 'pandas', 'sklearn', 'torch', 'xgboost'];

export interface SandboxCheck {
  python: string;
  isolation: IsolationLevel;
  limits: LimitMechanisms;
  outcome: SandboxOutcome;
  /** Version of each task module, or null where it cannot be imported in the sandbox. */
  modules: Record<string, string | null>;
  /** The math libraries' kernel pins (cpuKernelPins) as the sandboxed script saw them; empty where none are set. */
  kernelPins: Record<string, string>;
  /** Why the run could not go as planned (missing isolation, a directory the run's uid cannot pass, ...). */
  warnings: string[];
  error?: string;
}

/**
 * Runs one short script the way agent code runs (sandboxed, with `dataDir` read-only as task data is): which
 * isolation and limits it got, what went wrong, and which task modules import. For `mlagent doctor`.
 */
export async function checkSandbox(python: string, dataDir?: string): Promise<SandboxCheck> {
  const ws = mkdtempSync(path.join(tmpdir(), 'mlagent-doctor-'));
  try {
    const script = [
      'import importlib, json, os',
      'out = {}',
      `for m in ${JSON.stringify(TASK_MODULES)}:`,
      '    try: out[m] = getattr(importlib.import_module(m), "__version__", "?")',
      '    except Exception: out[m] = None',
      ...(dataDir ? [`os.listdir(${JSON.stringify(dataDir)})`] : []),
      `pins = {k: os.environ[k] for k in ${JSON.stringify(CPU_KERNEL_PIN_VARS)} if k in os.environ}`,
      'print(json.dumps({"modules": out, "pins": pins}))',
    ].join('\n');
    const r = await runSandboxed({
      command: [python, '-c', script],
      workspace: ws,
      timeoutMs: 60_000,
      memoryBytes: 4 * 2 ** 30,
      readOnlyPaths: [...(dataDir && existsSync(dataDir) ? [dataDir] : []), ...pythonPrefixPaths(python)],
      env: taskSandboxEnv(1),
    });
    let modules: Record<string, string | null> = Object.fromEntries(TASK_MODULES.map((m) => [m, null]));
    let kernelPins: Record<string, string> = {};
    try {
      if (r.outcome === 'ok') {
        const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { modules: Record<string, string | null>; pins: Record<string, string> };
        [modules, kernelPins] = [out.modules, out.pins];
      }
    } catch {
      /* leave them all null: the run printed something else */
    }
    return { python, isolation: r.isolation, limits: r.limits, outcome: r.outcome, modules, kernelPins, warnings: r.warnings, error: r.errorSummary };
  } finally {
    rmSync(ws, { recursive: true, force: true });
  }
}
