import { spawnSync } from 'node:child_process';

/**
 * Free memory of the first NVIDIA GPU in bytes, from nvidia-smi; undefined where there is none. WebGPU does not
 * report device memory, so this is how a 7B-shaped benchmark can refuse before allocating what will not fit.
 */
export function nvidiaFreeBytes(): number | undefined {
  const r = spawnSync('nvidia-smi', ['--query-gpu=memory.free', '--format=csv,noheader,nounits'], { encoding: 'utf8', timeout: 20_000 });
  if (r.error || r.status !== 0) return undefined;
  const mib = Number(r.stdout.trim().split('\n')[0]);
  return Number.isFinite(mib) && mib > 0 ? mib * 2 ** 20 : undefined;
}
