// A snapshot store's limits on its own growth. Every step of an episode saves a state, and a hostile script can leave
// up to its disk limit (2 GiB by default) of new content in the workspace at each step, so without a bound the store
// alone could fill the trainer's disk. Past a limit, captures leave new file contents out of the state (listed in
// `omitted`, as files over maxFileBytes are) instead of failing the step; manifests are still written.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { freeBytes } from '../sandbox/disk-guard.js';

/** The store's total bytes are counted again at most this often when they look full (another process may prune). */
const RECOUNT_MS = 10_000;

export interface StoreLimits {
  /** The most bytes the store's blobs and manifests may take; Infinity for no limit. */
  maxBytes: number;
  /** New content is not written where the store's filesystem would keep less than this free. */
  minFreeBytes: number;
}

/** Sums the sizes of the files under `dir` (blobs/xx/*, states/*), ignoring what vanishes meanwhile. */
async function bytesUnder(dir: string): Promise<number> {
  let total = 0;
  const entries = await fs.readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) total += await bytesUnder(p);
    else if (e.isFile()) total += (await fs.lstat(p).catch(() => null))?.size ?? 0;
  }
  return total;
}

/** Bytes free to unprivileged writers on the filesystem of `dir`, or of its nearest existing parent (a new store). */
async function freeBytesAt(dir: string): Promise<number> {
  for (let d = dir; ; d = path.dirname(d)) {
    const free = await freeBytes(d).catch(() => null);
    if (free !== null) return free;
    if (path.dirname(d) === d) return Infinity;
  }
}

export class StoreQuota {
  private used: number | null = null;
  private countedAt = 0;
  private counting: Promise<number> | null = null;
  private warned = false;

  constructor(
    private readonly dir: string,
    readonly limits: StoreLimits,
  ) {}

  /** The store's bytes as last counted, plus what this process wrote since (other processes' writes are seen at a recount). */
  async usedBytes(recount = false): Promise<number> {
    if (this.used === null || (recount && Date.now() - this.countedAt > RECOUNT_MS)) {
      // One walk at a time, however many captures ask at once.
      this.counting ??= Promise.all([bytesUnder(path.join(this.dir, 'blobs')), bytesUnder(path.join(this.dir, 'states'))])
        .then(([b, s]) => {
          this.used = b + s;
          this.countedAt = Date.now();
          return this.used;
        })
        .finally(() => {
          this.counting = null;
        });
      return this.counting;
    }
    return this.used;
  }

  /** Counts bytes this process added to the store. */
  added(bytes: number): void {
    if (this.used !== null) this.used += bytes;
  }

  /** Why `bytes` of new content may not be written now, or null when they may. */
  async refusal(bytes: number): Promise<string | null> {
    const { maxBytes, minFreeBytes } = this.limits;
    if (Number.isFinite(maxBytes)) {
      let used = await this.usedBytes();
      if (used + bytes > maxBytes) used = await this.usedBytes(true);
      if (used + bytes > maxBytes) return this.refuse(`the snapshot store is full (${used} of its ${maxBytes} bytes used)`);
    }
    if (minFreeBytes > 0) {
      const free = await freeBytesAt(this.dir);
      if (free - bytes < minFreeBytes) return this.refuse(`the snapshot store's disk would keep less than ${minFreeBytes} bytes free (${free} free)`);
    }
    return null;
  }

  private refuse(reason: string): string {
    if (!this.warned) {
      this.warned = true;
      console.warn(`mlagent env: ${reason} at ${this.dir}: new file contents are left out of saved states; \`mlagent env prune\` frees space`);
    }
    return reason;
  }
}
