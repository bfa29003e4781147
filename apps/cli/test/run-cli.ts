import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const bin = fileURLToPath(new URL('../bin/mlagent.js', import.meta.url));

/** Runs `mlagent ...args` to completion. */
export function mlagent(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 240_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A fresh temp directory holding `mlagent init-model --preset tiny` output in `<tmp>/tiny`. */
export function tinyModel(arch: 'qwen2' | 'qwen3', seed: number): { tmp: string; model: string } {
  const tmp = mkdtempSync(join(tmpdir(), `mlagent-cli-${arch}-`));
  const model = join(tmp, 'tiny');
  const r = mlagent('init-model', '--arch', arch, '--preset', 'tiny', '--out', model, '--seed', String(seed));
  if (r.code !== 0) throw new Error(`init-model failed: ${r.stderr}`);
  return { tmp, model };
}
