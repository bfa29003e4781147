// Moves snapshot states between a machine's local SnapshotStore and Redis, so workers need no shared disk.
// Keys are content hashes (`<prefix>:blob:<sha256>`, `<prefix>:state:<id>`), so uploads are idempotent and
// every download is checked against its key. A state is uploaded after its blobs: a visible state is complete.
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { MANIFEST_FORMAT, type StateManifest } from '../snapshots/manifest.js';
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

const STATE_ID = /^[0-9a-f]{64}$/;

function checkId(id: unknown): void {
  if (typeof id !== 'string' || !STATE_ID.test(id)) throw new TypeError(`RedisStates: a state id is 64 hex digits, got ${JSON.stringify(id)?.slice(0, 100) ?? String(id)}`);
}

/**
 * A manifest read from Redis, checked enough to walk its blobs: matching its id proves only that it is what was
 * uploaded, not that it is a state (another version's format, or any JSON at all under a key that hashes right).
 */
function parseManifest(raw: Buffer, id: string): StateManifest {
  let m: unknown;
  try {
    m = JSON.parse(raw.toString('utf8'));
  } catch {
    m = undefined;
  }
  const obj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  const hash = (h: unknown) => typeof h === 'string' && STATE_ID.test(h);
  const ok =
    obj(m) &&
    m.format === MANIFEST_FORMAT &&
    Array.isArray(m.files) &&
    m.files.every((f) => obj(f) && hash(f.hash)) &&
    obj(m.undo) &&
    Object.values(m.undo).every((stack) => Array.isArray(stack) && stack.every((h) => h === null || hash(h)));
  if (!ok) throw new Error(`RedisStates: state ${id} in Redis is not a state manifest of format '${MANIFEST_FORMAT}'`);
  return m as unknown as StateManifest;
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

  /**
   * Refreshes the expiry of a state's blobs and tells which of them Redis lacks. A blob is shared by every state
   * that holds the same content (the task's files, above all): refreshing only the state would let the blobs
   * uploaded with an older state expire under a newer one, which could then no longer be downloaded.
   */
  private async touchBlobs(hashes: string[]): Promise<boolean[]> {
    if (hashes.length === 0) return [];
    const pipe = this.redis.pipeline();
    for (const h of hashes) {
      if (this.ttlSec > 0) pipe.expire(this.blobKey(h), this.ttlSec);
      else pipe.exists(this.blobKey(h));
    }
    const replies = (await pipe.exec()) ?? [];
    return hashes.map((_, i) => {
      const [err, n] = replies[i] ?? [new Error('no reply'), 0];
      if (err) throw err;
      return n === 1;
    });
  }

  /**
   * Uploads state `id` of the local store (and the blobs Redis lacks), and refreshes the expiry of the state and
   * of all its blobs. A state Redis has (with its blobs) needs no local copy.
   */
  async push(store: SnapshotStore, id: string): Promise<void> {
    checkId(id);
    // A state with more than half its time left is left alone (one round trip: the common case, a client
    // continuing from the state a worker just made). Whenever a state's expiry is set, its blobs' is set too, so
    // they expire no earlier than it.
    if (this.ttlSec > 0) {
      const ttl = await this.redis.ttl(this.stateKey(id));
      if (ttl > this.ttlSec / 2) return;
    } else if ((await this.redis.exists(this.stateKey(id))) === 1) return;
    const local = await store.load(id).catch(() => null);
    let manifest = local;
    if (!manifest) {
      const remote = await this.redis.getBuffer(this.stateKey(id));
      if (remote === null || sha256(remote) !== id) await store.load(id); // throws the store's reason
      manifest = parseManifest(remote!, id);
    }
    const json = JSON.stringify(manifest);
    if (sha256(json) !== id) throw new Error(`RedisStates: state ${id} does not serialize back to its id; cannot upload it`);
    const hashes = blobsOf(manifest);
    const present = await this.touchBlobs(hashes);
    for (let i = 0; i < hashes.length; i++) {
      if (present[i]) continue;
      if (!local) throw new Error(`RedisStates: blob ${hashes[i]} of state ${id} is gone from Redis (expired?) and ${store.dir} has no copy of the state`);
      await this.putOnce(this.blobKey(hashes[i]), await store.readBlob(hashes[i]));
    }
    await this.putOnce(this.stateKey(id), json);
  }

  /** Makes state `id` available in the local store, downloading what it lacks. */
  async pull(store: SnapshotStore, id: string): Promise<StateManifest> {
    // A full id only: the store would resolve a prefix to some other state, and the id ends up in keys and paths.
    checkId(id);
    // A local copy counts only with all its blobs: a cache pruned meanwhile (mlagent env prune) may lack some.
    const local = await store.load(id).catch(() => null);
    if (local && (await Promise.all(blobsOf(local).map((h) => store.hasBlob(h)))).every(Boolean)) return local;
    const raw = await this.redis.getBuffer(this.stateKey(id));
    if (raw === null) throw new Error(`RedisStates: state ${id} is neither in ${store.dir} nor in Redis (expired, or never uploaded)`);
    if (sha256(raw) !== id) throw new Error(`RedisStates: state ${id} in Redis is corrupt (its content does not match its id)`);
    const manifest = parseManifest(raw, id);
    for (const h of blobsOf(manifest)) {
      if (await store.hasBlob(h)) continue;
      const data = await this.redis.getBuffer(this.blobKey(h));
      if (data === null) throw new Error(`RedisStates: blob ${h} of state ${id} is missing from Redis`);
      // Checked before it is written: a damaged blob must not land in the store (under its own hash) either.
      if (sha256(data) !== h) throw new Error(`RedisStates: blob ${h} in Redis is corrupt (its content does not match its hash)`);
      await store.putBlob(data);
    }
    const saved = await store.save(manifest);
    if (saved !== id) throw new Error(`RedisStates: state ${id} was saved as ${saved}; the manifest did not round-trip`);
    return manifest;
  }
}
