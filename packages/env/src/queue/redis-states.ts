// Moves snapshot states between a machine's local SnapshotStore and Redis, so workers need no shared disk.
// Keys are content hashes (`<prefix>:blob:<sha256>`, `<prefix>:state:<id>`), so uploads are idempotent and
// every download is checked against its key. A state is uploaded after its blobs: a visible state is complete.
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { StateManifest } from '../snapshots/manifest.js';
import type { SnapshotStore } from '../snapshots/store.js';

export interface RedisStatesOptions {
  /** Key prefix. Default 'mlagent'. */
  prefix?: string;
  /** Seconds uploaded blobs and states live in Redis (refreshed on every upload). Default 7 days; 0 = forever. */
  ttlSec?: number;
}

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

/** Every blob a state needs: its files and its undo stacks. */
function blobsOf(m: StateManifest): string[] {
  const hashes = new Set(m.files.map((f) => f.hash));
  for (const stack of Object.values(m.undo)) for (const h of stack) if (h !== null) hashes.add(h);
  return [...hashes];
}

export class RedisStates {
  private readonly prefix: string;
  private readonly ttlSec: number;

  constructor(
    private readonly redis: Redis,
    options: RedisStatesOptions = {},
  ) {
    this.prefix = options.prefix ?? 'mlagent';
    this.ttlSec = options.ttlSec ?? 7 * 24 * 3600;
    if (!Number.isInteger(this.ttlSec) || this.ttlSec < 0) throw new TypeError(`RedisStates: ttlSec must be an integer >= 0, got ${this.ttlSec}`);
  }

  private blobKey(hash: string): string {
    return `${this.prefix}:blob:${hash}`;
  }

  private stateKey(id: string): string {
    return `${this.prefix}:state:${id}`;
  }

  /** Writes a key only if absent, and (re)sets its expiry either way. */
  private async putOnce(key: string, value: Buffer | string): Promise<void> {
    if (this.ttlSec > 0) {
      const r = await this.redis.set(key, value, 'EX', this.ttlSec, 'NX');
      if (r === null) await this.redis.expire(key, this.ttlSec);
    } else {
      await this.redis.set(key, value, 'NX');
    }
  }

  /** Uploads state `id` of the local store (and the blobs Redis lacks); a state Redis has needs no local copy. */
  async push(store: SnapshotStore, id: string): Promise<void> {
    if ((await this.redis.exists(this.stateKey(id))) === 1) {
      if (this.ttlSec > 0) await this.redis.expire(this.stateKey(id), this.ttlSec);
      return;
    }
    const manifest = await store.load(id);
    const json = JSON.stringify(manifest);
    if (sha256(json) !== id) throw new Error(`RedisStates: state ${id} does not serialize back to its id; cannot upload it`);
    const hashes = blobsOf(manifest);
    const present = hashes.length === 0 ? [] : await Promise.all(hashes.map((h) => this.redis.exists(this.blobKey(h))));
    for (let i = 0; i < hashes.length; i++) {
      if (present[i] === 1) continue;
      await this.putOnce(this.blobKey(hashes[i]), await store.readBlob(hashes[i]));
    }
    await this.putOnce(this.stateKey(id), json);
  }

  /** Makes state `id` available in the local store, downloading what it lacks. */
  async pull(store: SnapshotStore, id: string): Promise<StateManifest> {
    // A local copy counts only with all its blobs: a cache pruned meanwhile (mlagent env prune) may lack some.
    const local = await store.load(id).catch(() => null);
    if (local && (await Promise.all(blobsOf(local).map((h) => store.hasBlob(h)))).every(Boolean)) return local;
    const raw = await this.redis.getBuffer(this.stateKey(id));
    if (raw === null) throw new Error(`RedisStates: state ${id} is neither in ${store.dir} nor in Redis (expired, or never uploaded)`);
    if (sha256(raw) !== id) throw new Error(`RedisStates: state ${id} in Redis is corrupt (its content does not match its id)`);
    const manifest = JSON.parse(raw.toString('utf8')) as StateManifest;
    for (const h of blobsOf(manifest)) {
      if (await store.hasBlob(h)) continue;
      const data = await this.redis.getBuffer(this.blobKey(h));
      if (data === null) throw new Error(`RedisStates: blob ${h} of state ${id} is missing from Redis`);
      if ((await store.putBlob(data)) !== h) throw new Error(`RedisStates: blob ${h} in Redis is corrupt (its content does not match its hash)`);
    }
    const saved = await store.save(manifest);
    if (saved !== id) throw new Error(`RedisStates: state ${id} was saved as ${saved}; the manifest did not round-trip`);
    return manifest;
  }
}
