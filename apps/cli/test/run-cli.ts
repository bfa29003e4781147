import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const bin = fileURLToPath(new URL('../bin/mlagent.js', import.meta.url));

/**
 * Runs `mlagent ...args` to completion. Asynchronous, so a slow run (lavapipe on a loaded machine) does not block
 * the test worker's event loop.
 */
export function mlagent(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 240_000, maxBuffer: 1 << 26 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** A fresh temp directory holding `mlagent init-model --preset tiny` output in `<tmp>/tiny`. */
export async function tinyModel(arch: 'qwen2' | 'qwen3', seed: number): Promise<{ tmp: string; model: string }> {
  const tmp = mkdtempSync(join(tmpdir(), `mlagent-cli-${arch}-`));
  const model = join(tmp, 'tiny');
  const r = await mlagent('init-model', '--arch', arch, '--preset', 'tiny', '--out', model, '--seed', String(seed));
  if (r.code !== 0) throw new Error(`init-model failed: ${r.stderr}`);
  return { tmp, model };
}
