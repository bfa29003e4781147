// A content-addressed store of workspace states on disk (layout in the README):
//   <dir>/blobs/<hash[0:2]>/<hash[2:]>   file contents by sha256, read-only, written once
//   <dir>/states/<id>.json               manifests; id = sha256 of the manifest's JSON
// Every write goes to a temporary name and is renamed into place, so concurrent episodes can share a store.
import { createHash } from 'node:crypto';
import { constants as fsConstants, createReadStream, promises as fs, type BigIntStats, type Stats } from 'node:fs';
import path from 'node:path';
import { makeDirs } from '../fs/make-dirs.js';
import { MANIFEST_FORMAT, PUBLIC_DATA_TARGET, type ManifestFile, type StateManifest } from './manifest.js';
import { actionCallKey } from '../actions/call-key.js';
import { listStates, pruneStates, type ListStatesOptions, type PruneOptions, type PruneResult, type StateSummary } from './maintenance.js';
import { StoreQuota } from './quota.js';

export interface SnapshotStoreOptions {
  /** Files larger than this are left out of states (listed in `omitted`). Default 512 MiB. */
  maxFileBytes?: number;
  /**
   * The most bytes the store's blobs and manifests may take. Past it, captures leave files whose content is not
   * stored yet out of states (listed in `omitted`) rather than fail; manifests are still written. Default: no limit.
   */
  maxBytes?: number;
  /** Likewise where the store's filesystem would keep less than this many bytes free. Default 256 MiB. */
  minFreeBytes?: number;
}

/** Remembers the hash of a file by its inode, size and times, so unchanged files are not read again. */
export type HashCache = Map<string, { key: string; hash: string }>;

/** The parts of a manifest that describe the episode rather than the files. */
export type StateMeta = Pick<StateManifest, 'task' | 'parent' | 'step' | 'done' | 'metric' | 'undo' | 'steps'>;

const ID = /^[0-9a-f]{64}$/;
const IN_MEMORY_BYTES = 64 * 2 ** 20;
const COPY_BATCH = 32;
const FRESH_MS = 60_000;

function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** A '/'-separated path inside the workspace: relative, no empty, '.' or '..' segment. */
function isInsidePath(p: unknown): boolean {
  return typeof p === 'string' && p !== '' && !p.includes('\0') && p.split('/').every((s) => s !== '' && s !== '.' && s !== '..');
}

/**
 * Checks what materialize writes from a manifest. A manifest's id only proves it is the text it claims, not that the
 * store wrote it: one built by hand, given to save(), or pulled from a shared Redis by a queue worker could name
 * "../x" or a blob path outside the store and so write or read anything the trainer can.
 */
function checkManifest(m: StateManifest): void {
  const bad = (what: string) => new Error(`SnapshotStore: cannot restore a malformed state: ${what}`);
  if (m === null || typeof m !== 'object' || !Array.isArray(m.files) || !Array.isArray(m.dirs) || !Array.isArray(m.links)) {
    throw bad('it must be a manifest with files, dirs and links lists');
  }
  m.files.forEach((f, i) => {
    if (!isInsidePath(f?.path)) throw bad(`files[${i}].path ${JSON.stringify(f?.path)} is not a path inside the workspace`);
    if (typeof f.hash !== 'string' || !ID.test(f.hash)) throw bad(`files[${i}].hash ${JSON.stringify(f.hash)} is not a blob hash`);
    if (!Number.isSafeInteger(f.size) || f.size < 0) throw bad(`files[${i}].size ${JSON.stringify(f.size)} is not a size`);
    if (!Number.isInteger(f.mode) || f.mode < 0 || f.mode > 0o777) throw bad(`files[${i}].mode ${JSON.stringify(f.mode)} is not a permission mode`);
  });
  m.dirs.forEach((d, i) => {
    if (!isInsidePath(d)) throw bad(`dirs[${i}] ${JSON.stringify(d)} is not a path inside the workspace`);
  });
  m.links.forEach((l, i) => {
    if (!isInsidePath(l?.path)) throw bad(`links[${i}].path ${JSON.stringify(l?.path)} is not a path inside the workspace`);
    if (typeof l.target !== 'string' || l.target === '') throw bad(`links[${i}].target must be a non-empty string`);
  });
}

function tmpName(dir: string): string {
  return path.join(dir, `.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`);
}

async function exists(p: string): Promise<boolean> {
  return fs.lstat(p).then(
    () => true,
    () => false,
  );
}

/**
 * The lstat of `p`, or null; a file older than a minute gets its time brought up to now, so a prune running
 * beside this save sees it as in use (pruneStates' grace) until the state that names it is written.
 */
async function freshStat(p: string): Promise<Stats | null> {
  const st = await fs.lstat(p).catch(() => null);
  if (st && Date.now() - st.mtimeMs > FRESH_MS) {
    const now = new Date();
    await fs.utimes(p, now, now).catch(() => undefined); // another user's store: the grace then rests on its age
  }
  return st;
}

const existsFresh = async (p: string): Promise<boolean> => (await freshStat(p)) !== null;

function checkBytes(name: string, v: number, allowInfinity: boolean): number {
  if (typeof v !== 'number' || !(Number.isSafeInteger(v) || (allowInfinity && v === Infinity)) || v < 0) {
    throw new TypeError(`SnapshotStore: ${name} must be an integer >= 0${allowInfinity ? ' (or Infinity)' : ''}, got ${String(v)}`);
  }
  return v;
}

export class SnapshotStore {
  readonly dir: string;
  readonly maxFileBytes: number;
  private readonly quota: StoreQuota;

  constructor(dir: string, options: SnapshotStoreOptions = {}) {
    if (typeof dir !== 'string' || dir === '') throw new TypeError('SnapshotStore: dir must be a non-empty path');
    this.dir = path.resolve(dir);
    this.maxFileBytes = checkBytes('maxFileBytes', options.maxFileBytes ?? 512 * 2 ** 20, false);
    this.quota = new StoreQuota(this.dir, {
      maxBytes: checkBytes('maxBytes', options.maxBytes ?? Infinity, true),
      minFreeBytes: checkBytes('minFreeBytes', options.minFreeBytes ?? 256 * 2 ** 20, false),
    });
  }

  /** The store's limits on its size (see SnapshotStoreOptions). */
  get limits(): { maxBytes: number; minFreeBytes: number } {
    return { ...this.quota.limits };
  }

  /**
   * Bytes of the store's blobs and manifests: counted once, then kept up to date with this object's writes
   * (`recount` counts again, seeing other processes' writes and prunes).
   */
  usedBytes(recount = false): Promise<number> {
    return this.quota.usedBytes(recount);
  }

  /** Path of the blob holding content `hash`. */
  blobPath(hash: string): string {
    return path.join(this.dir, 'blobs', hash.slice(0, 2), hash.slice(2));
  }

  private statePath(id: string): string {
    return path.join(this.dir, 'states', `${id}.json`);
  }

  /** Stores bytes and returns their hash. The store's size limits do not apply: the caller needs the blob. */
  async putBlob(data: Buffer | string): Promise<string> {
    const hash = sha256(data);
    if (!(await existsFresh(this.blobPath(hash)))) await this.writeBlob(hash, data);
    return hash;
  }

  private async writeBlob(hash: string, data: Buffer | string): Promise<void> {
    const dest = this.blobPath(hash);
    await makeDirs(path.dirname(dest));
    const tmp = tmpName(path.dirname(dest));
    await fs.writeFile(tmp, data, { mode: 0o444 });
    await fs.rename(tmp, dest);
    this.quota.added(Buffer.byteLength(data));
  }

  /** Whether blob `hash` is stored. It counts as in use from now on (a prune leaves it for an hour). */
  async hasBlob(hash: string): Promise<boolean> {
    if (!ID.test(hash)) throw new Error(`SnapshotStore: '${hash}' is not a blob hash`);
    return existsFresh(this.blobPath(hash));
  }

  async readBlob(hash: string): Promise<Buffer> {
    if (!ID.test(hash)) throw new Error(`SnapshotStore: '${hash}' is not a blob hash`);
    return fs.readFile(this.blobPath(hash)).catch(() => {
      throw new Error(`SnapshotStore: blob ${hash} is missing from ${this.dir}`);
    });
  }

  /**
   * Stores a workspace file and returns its hash and the stored blob's length; the cache skips reading files whose
   * inode, size and times did not change. The length is the blob's, not the lstat's from before the read (the file
   * may have changed since), since materialize checks restored files against it. Content not stored yet is left out
   * where the store's limits refuse it: then the result is the reason.
   */
  private async putFile(abs: string, st: BigIntStats, cache?: HashCache): Promise<{ hash: string; size: number } | { refused: string }> {
    const key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
    const hit = cache?.get(abs);
    const blobSize = (hash: string) => fs.lstat(this.blobPath(hash)).then((b) => b.size, () => null);
    if (hit && hit.key === key) {
      const blob = await freshStat(this.blobPath(hit.hash));
      if (blob) return { hash: hit.hash, size: blob.size };
    }
    let hash: string;
    if (st.size <= BigInt(IN_MEMORY_BYTES)) {
      const data = await fs.readFile(abs);
      hash = sha256(data);
      if (!(await existsFresh(this.blobPath(hash)))) {
        const refused = await this.quota.refusal(data.length);
        if (refused !== null) return { refused };
        await this.writeBlob(hash, data);
      }
    } else {
      hash = await sha256File(abs);
      const dest = this.blobPath(hash);
      if (!(await existsFresh(dest))) {
        const refused = await this.quota.refusal(Number(st.size));
        if (refused !== null) return { refused };
        await makeDirs(path.dirname(dest));
        const tmp = tmpName(path.dirname(dest));
        await fs.copyFile(abs, tmp, fsConstants.COPYFILE_FICLONE);
        await fs.chmod(tmp, 0o444);
        await fs.rename(tmp, dest);
        this.quota.added((await fs.lstat(dest).catch(() => null))?.size ?? Number(st.size));
      }
    }
    cache?.set(abs, { key, hash });
    return { hash, size: (await blobSize(hash)) ?? Number(st.size) };
  }

  /**
   * Saves the files of `workspace` with the episode's `meta` and returns the state's id. The link to
   * `publicDir` is kept as a reference, never copied.
   */
  async capture(workspace: string, publicDir: string, meta: StateMeta, cache?: HashCache): Promise<string> {
    const realPublic = await fs.realpath(publicDir).catch(() => path.resolve(publicDir));
    const files: ManifestFile[] = [];
    const dirs: string[] = [];
    const links: StateManifest['links'] = [];
    const omitted: StateManifest['omitted'] = [];
    const walk = async (rel: string): Promise<void> => {
      const names = (await fs.readdir(path.join(workspace, rel))).sort();
      for (const name of names) {
        const r = rel === '' ? name : `${rel}/${name}`;
        const abs = path.join(workspace, r);
        const st = await fs.lstat(abs, { bigint: true }).catch((e: NodeJS.ErrnoException) => e);
        if (st instanceof Error) {
          // A name that is not UTF-8 comes back from readdir with U+FFFD and names nothing; the sandbox's disk guard
          // removes such entries, and those of over-long paths, after every run, so this is only a workspace
          // written outside it.
          if (st.code === 'ENAMETOOLONG' || name.includes('\uFFFD')) omitted.push({ path: r, size: 0, reason: 'a name that is not UTF-8 or a path too long to save' });
          continue; // else it vanished while walking
        }
        if (st.isSymbolicLink()) {
          const target = await fs.readlink(abs);
          const real = await fs.realpath(abs).catch(() => null);
          links.push({ path: r, target: real === realPublic ? PUBLIC_DATA_TARGET : target });
        } else if (st.isDirectory()) {
          dirs.push(r);
          await walk(r);
        } else if (!st.isFile()) {
          omitted.push({ path: r, size: 0, reason: 'not a regular file' });
        } else if (st.size > BigInt(this.maxFileBytes)) {
          omitted.push({ path: r, size: Number(st.size), reason: `larger than the store's limit of ${this.maxFileBytes} bytes` });
        } else {
          const put = await this.putFile(abs, st, cache);
          if ('refused' in put) omitted.push({ path: r, size: Number(st.size), reason: put.refused });
          else files.push({ path: r, hash: put.hash, size: put.size, mode: Number(st.mode) & 0o777 });
        }
      }
    };
    await walk('');
    // The undo history names blobs of earlier states, which a prune may be about to drop.
    for (const stack of Object.values(meta.undo)) for (const h of stack) if (h !== null) await existsFresh(this.blobPath(h));
    const manifest: StateManifest = {
      format: MANIFEST_FORMAT,
      task: meta.task,
      parent: meta.parent,
      step: meta.step,
      done: meta.done,
      metric: meta.metric,
      files,
      dirs,
      links,
      omitted,
      undo: meta.undo,
      steps: meta.steps,
    };
    return this.save(manifest);
  }

  /** Writes a manifest (its blobs must be stored already) and returns its id. */
  async save(manifest: StateManifest): Promise<string> {
    const json = JSON.stringify(manifest);
    const id = sha256(json);
    const dest = this.statePath(id);
    // Saved again (a resumed run, another episode reaching the same state): it counts as new for a prune by age.
    if (!(await existsFresh(dest))) {
      await makeDirs(path.dirname(dest));
      const tmp = tmpName(path.dirname(dest));
      await fs.writeFile(tmp, json);
      await fs.rename(tmp, dest);
      this.quota.added(Buffer.byteLength(json));
    }
    return id;
  }

  /**
   * A copy of state `id` whose last step's response is `response`: another wording of the same action call (the
   * same actionCallKey), whose result the state already holds. Returns the copy's id.
   */
  async withLastResponse(id: string, response: string): Promise<string> {
    const m = await this.load(id);
    const last = m.steps.at(-1);
    if (!last) throw new Error(`SnapshotStore: state ${id} has no step whose response could be replaced`);
    if (actionCallKey(response) !== actionCallKey(last.response)) {
      throw new Error(`SnapshotStore: the response does not make the action call of the last step of state ${id}, so that step's result is not its result`);
    }
    return this.save({ ...m, steps: [...m.steps.slice(0, -1), { ...last, response }] });
  }

  /** The states in the store, oldest first (a damaged manifest is listed with a `problem`). */
  list(options: ListStatesOptions = {}): Promise<StateSummary[]> {
    return listStates(this.dir, options);
  }

  /**
   * Removes the states saved more than `olderThanMs` ago (but those in `keep`; only `task`'s, if given), then the
   * oldest others until the store fits `maxBytes` (if given), then every blob no remaining state needs that has not
   * been used for an hour, so episodes saving meanwhile are safe.
   */
  async prune(options: PruneOptions): Promise<PruneResult> {
    const result = await pruneStates(this.dir, options);
    if (!options.dryRun) this.quota.added(-result.bytesFreed);
    return result;
  }

  /** Finds a state by its id or a unique prefix of at least 6 characters. */
  async resolveId(idOrPrefix: string): Promise<string> {
    const s = String(idOrPrefix).toLowerCase();
    if (ID.test(s)) {
      if (await exists(this.statePath(s))) return s;
      throw new Error(`SnapshotStore: no state ${s} in ${this.dir}`);
    }
    if (!/^[0-9a-f]{6,63}$/.test(s)) throw new Error(`SnapshotStore: '${idOrPrefix}' is not a state id (64 hex digits, or a prefix of at least 6)`);
    const names = await fs.readdir(path.join(this.dir, 'states')).catch(() => [] as string[]);
    const hits = names.filter((n) => n.startsWith(s) && n.endsWith('.json'));
    if (hits.length === 1) return hits[0].slice(0, -'.json'.length);
    throw new Error(`SnapshotStore: ${hits.length === 0 ? 'no state' : `${hits.length} states`} in ${this.dir} match '${idOrPrefix}'`);
  }

  async load(idOrPrefix: string): Promise<StateManifest> {
    const id = await this.resolveId(idOrPrefix);
    const text = await fs.readFile(this.statePath(id), 'utf8');
    if (sha256(text) !== id) throw new Error(`SnapshotStore: state ${id} is corrupt (its content does not match its id)`);
    const m = JSON.parse(text) as StateManifest;
    if (m.format !== MANIFEST_FORMAT) throw new Error(`SnapshotStore: state ${id} has format '${String(m.format)}', expected '${MANIFEST_FORMAT}'`);
    return m;
  }

  /**
   * Rebuilds a workspace from a manifest into `target` (created; must not exist or be empty). Files are copies
   * (reflinks where the filesystem has them), never hard links: scripts overwrite files in place.
   */
  async materialize(manifest: StateManifest, target: string, publicDir: string): Promise<void> {
    checkManifest(manifest);
    const created = !(await exists(target));
    // The target is the caller's path: a bad one must fail, not hang (see makeDirs).
    await makeDirs(target);
    if ((await fs.readdir(target)).length > 0) throw new Error(`SnapshotStore: cannot restore into ${target}: it is not empty`);
    try {
      for (const d of manifest.dirs) await makeDirs(path.join(target, d));
      for (let i = 0; i < manifest.files.length; i += COPY_BATCH) {
        await Promise.all(
          manifest.files.slice(i, i + COPY_BATCH).map(async (f) => {
            const dest = path.join(target, f.path);
            await fs.copyFile(this.blobPath(f.hash), dest, fsConstants.COPYFILE_FICLONE).catch((e: Error) => {
              throw new Error(`SnapshotStore: cannot restore ${f.path} from blob ${f.hash}: ${e.message}`);
            });
            // Blobs are never rewritten, so one of another length was damaged on disk (truncated, emptied): restoring
            // it would silently give the episode other files than the state's. A length check costs no read.
            const size = (await fs.stat(dest)).size;
            if (size !== f.size) throw new Error(`SnapshotStore: cannot restore ${f.path}: blob ${f.hash} is corrupt (${size} bytes, the state's file has ${f.size})`);
            await fs.chmod(dest, f.mode);
          }),
        );
      }
      for (const l of manifest.links) {
        await fs.symlink(l.target === PUBLIC_DATA_TARGET ? publicDir : l.target, path.join(target, l.path));
      }
    } catch (e) {
      // A half-restored workspace looks like a state but is not one, and the target, no longer empty, would refuse a
      // second try: leave it as it was found.
      if (created) await fs.rm(target, { recursive: true, force: true }).catch(() => undefined);
      else for (const n of await fs.readdir(target).catch(() => [] as string[])) await fs.rm(path.join(target, n), { recursive: true, force: true }).catch(() => undefined);
      throw e;
    }
  }
}
