// The env server's open episodes: ids a client cannot guess, a limit on how many are open, one request at a time
// per episode, and episodes a client forgot closed after an idle time, so their workspaces do not pile up.
import { randomBytes } from 'node:crypto';
import type { Episode } from '../episode/episode.js';
import { HttpError, describe } from './http-json.js';

export interface LiveEpisode {
  id: string;
  episode: Episode;
  /** Date.now() of the last request that used it. */
  lastUsed: number;
  /** A step or snapshot is running. */
  busy: boolean;
  /** Its messages are shown in the compact form (compactMessages). */
  compact: boolean;
}

/** Why ids that are gone went, for a 404 that says more than "unknown" (the newest few hundred). */
const REMEMBERED_CLOSES = 512;

export class LiveEpisodes {
  private readonly open = new Map<string, LiveEpisode>();
  private readonly closedWhy = new Map<string, string>();
  private readonly running = new Set<Promise<unknown>>();
  private starting = 0;
  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    readonly maxEpisodes: number,
    readonly idleTimeoutMs: number,
    private readonly log: (line: string) => void,
  ) {
    if (Number.isFinite(idleTimeoutMs)) {
      this.sweeper = setInterval(() => void this.closeIdle(), Math.max(50, Math.min(idleTimeoutMs / 4, 30_000)));
      this.sweeper.unref();
    }
  }

  get size(): number {
    return this.open.size;
  }

  list(): LiveEpisode[] {
    return [...this.open.values()];
  }

  /**
   * Runs `work`, which starts an episode and adds it, holding a place meanwhile: episodes being started count
   * against `maxEpisodes` too, so a burst of requests cannot make more workspaces than that at once.
   */
  async withPlace<T>(work: () => Promise<T>): Promise<T> {
    if (this.open.size + this.starting >= this.maxEpisodes)
      throw new HttpError(
        429,
        'too_many_episodes',
        `${this.open.size} episodes are open${this.starting > 0 ? ` and ${this.starting} starting` : ''}, the server's limit (--max-episodes); close one (DELETE /v1/episodes/ID) first`,
      );
    this.starting++;
    try {
      return await work();
    } finally {
      this.starting--;
    }
  }

  add(episode: Episode, compact = false): LiveEpisode {
    const live = { id: randomBytes(12).toString('hex'), episode, lastUsed: Date.now(), busy: false, compact };
    this.open.set(live.id, live);
    return live;
  }

  get(id: string): LiveEpisode {
    const live = this.open.get(id);
    if (!live) throw new HttpError(404, 'episode_not_found', this.closedWhy.get(id) ?? `no episode ${describe(id, 100)} (POST /v1/episodes starts one)`);
    live.lastUsed = Date.now();
    return live;
  }

  /** 404 for an episode closed since its request began (deleted, or idle, while the body was arriving). */
  assertOpen(live: LiveEpisode): void {
    if (this.open.get(live.id) !== live) this.get(live.id);
  }

  /** Runs `work` as the episode's only request; another one meanwhile is 409. */
  async exclusive<T>(live: LiveEpisode, work: () => Promise<T>): Promise<T> {
    if (live.busy) throw new HttpError(409, 'episode_busy', `episode ${live.id} is running a step; send the next request when it has answered`);
    this.assertOpen(live);
    live.busy = true;
    try {
      return await this.track(work());
    } finally {
      live.busy = false;
      live.lastUsed = Date.now();
    }
  }

  /** Work closeAll waits for (a step, an episode being started), so none outlives the server's close(). */
  async track<T>(work: Promise<T>): Promise<T> {
    this.running.add(work);
    try {
      return await work;
    } finally {
      this.running.delete(work);
    }
  }

  async close(live: LiveEpisode, why: string): Promise<void> {
    if (!this.open.delete(live.id)) return;
    this.closedWhy.set(live.id, `episode ${live.id} was ${why}`);
    if (this.closedWhy.size > REMEMBERED_CLOSES) this.closedWhy.delete(this.closedWhy.keys().next().value!);
    await live.episode.close();
  }

  private async closeIdle(): Promise<void> {
    const now = Date.now();
    for (const live of this.list()) {
      if (live.busy || now - live.lastUsed < this.idleTimeoutMs) continue;
      const sec = Number((this.idleTimeoutMs / 1000).toPrecision(3));
      this.log(`env server: closed episode ${live.id} (${live.episode.task.spec.name}) after ${sec} s without a request`);
      await this.close(live, `closed after ${sec} s without a request (--idle-timeout)`).catch((e: Error) => this.log(`env server: closing ${live.id}: ${e.message}`));
    }
  }

  /** Waits for running steps, then closes every episode (their workspaces go; saved states stay). */
  async closeAll(why: string): Promise<void> {
    clearInterval(this.sweeper);
    await Promise.allSettled([...this.running]);
    await Promise.allSettled(this.list().map((live) => this.close(live, why)));
  }
}
