// An HTTP JSON server over episodes, so an agent or an RL trainer in any language (Python above all) can play the
// tasks step by step: start an episode, send the model's raw response, read the observation, the reward and the
// next prompt. Everything a step does runs as in the TypeScript API (the sandbox, the hidden answers, the grader);
// nothing a client sends can stop the server: every bad request is a JSON error naming what is wrong.
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { computeReward, type RewardConfig, type RewardResult } from '@mlagent/reward';
import { compactMessages } from '../actions/compact.js';
import { DEFAULT_MAX_STEPS, Episode } from '../episode/episode.js';
import type { EpisodeOptions, StepResult } from '../episode/types.js';
import { prepareTask } from '../tasks/prepare.js';
import { listTasks } from '../tasks/registry.js';
import type { StateSummary } from '../snapshots/maintenance.js';
import type { PreparedTask, TaskSpec } from '../tasks/types.js';
import { HttpError, answerClientError, cut, describe, onlyFields, readJsonObject, sendError, sendJson } from './http-json.js';
import { LiveEpisodes, type LiveEpisode } from './live-episodes.js';

export interface EnvServerOptions {
  /** Every episode's options (the store, the sandbox pool, the helper model, maxSteps, ...). */
  episode: EpisodeOptions;
  /**
   * Prepares a task by name. Default: the registry's tasks (built-in and imported) by name only, never a directory
   * a client names: a task's grader runs outside the sandbox.
   */
  prepare?: (name: string) => Promise<PreparedTask>;
  /** The tasks GET /v1/tasks lists (default the registry's). */
  tasks?: () => TaskSpec[];
  /** Episodes open at once; more are refused with 429 (default 16). */
  maxEpisodes?: number;
  /** An episode without a request for this long is closed and its workspace removed (default 1800 s). */
  idleTimeoutSec?: number;
  /** The reward each step is scored with (default the paper's, v1). */
  reward?: Partial<RewardConfig>;
  /**
   * A secret every request must carry as `Authorization: Bearer TOKEN` (else 401); without one, anyone who can reach
   * the server can run code in its sandbox and read the hidden scores.
   */
  token?: string;
  /** Largest request body (default 4 MiB). */
  maxBodyBytes?: number;
  /**
   * How long a client may take to send a whole request, headers and body (default 60 s); a slower one gets 408 and
   * its connection closed, so clients that never finish a request cannot hold connections open. A step's own run
   * time does not count.
   */
  requestTimeoutSec?: number;
  log?: (line: string) => void;
}

export interface EnvServerAddress {
  host?: string;
  /** 0 (default) picks a free port. */
  port?: number;
}

const MAX_STATES_PAGE = 10_000;
const STATES_REUSE_MS = 10_000;
const EPISODE_FIELDS = ['task', 'state', 'maxSteps', 'scoreEdits', 'snapshotSteps', 'promptFormat'] as const;

export class EnvServer {
  private readonly episodes: LiveEpisodes;
  private readonly prepared = new Map<string, Promise<PreparedTask>>();
  private stopping = false;
  private closing: Promise<void> | undefined;
  private readonly stateLists = new Map<string, { at: number; list: Promise<StateSummary[]> }>();

  private constructor(
    private readonly server: Server,
    private readonly options: EnvServerOptions,
  ) {
    const idle = options.idleTimeoutSec ?? 1800;
    const max = options.maxEpisodes ?? 16;
    if (!(idle > 0)) throw new RangeError(`EnvServer: idleTimeoutSec must be a positive number of seconds (Infinity: never), got ${idle}`);
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`EnvServer: maxEpisodes must be a positive integer, got ${max}`);
    this.episodes = new LiveEpisodes(max, idle * 1000, options.log ?? (() => {}));
  }

  /** Starts listening (default 127.0.0.1, a free port); `url` is where. */
  static async listen(options: EnvServerOptions, address: EnvServerAddress = {}): Promise<EnvServer> {
    if (!options?.episode?.store) throw new TypeError('EnvServer.listen: options.episode.store (a SnapshotStore) is required');
    if (options.token !== undefined && (typeof options.token !== 'string' || options.token === '')) throw new TypeError('EnvServer.listen: options.token must be a non-empty string');
    // NaN would compare false with every size, and no body would be too large.
    if (options.maxBodyBytes !== undefined && !(Number.isInteger(options.maxBodyBytes) && options.maxBodyBytes > 0))
      throw new RangeError(`EnvServer: maxBodyBytes must be a positive integer, got ${options.maxBodyBytes}`);
    const requestTimeout = Math.ceil((options.requestTimeoutSec ?? 60) * 1000);
    if (!(requestTimeout > 0) || !Number.isFinite(requestTimeout)) throw new RangeError(`EnvServer: requestTimeoutSec must be a positive number of seconds, got ${options.requestTimeoutSec}`);
    // node's defaults give a request 300 s to arrive; node checks its deadlines every connectionsCheckingInterval.
    const server = createServer({
      requestTimeout,
      headersTimeout: Math.min(requestTimeout, 60_000),
      connectionsCheckingInterval: Math.max(10, Math.min(Math.ceil(requestTimeout / 4), 30_000)),
    });
    const env = new EnvServer(server, options);
    server.on('request', (req, res) => void env.handle(req, res));
    server.on('clientError', answerClientError);
    // Without a listener node answers an Expect other than 100-continue with an empty 417.
    server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) =>
      sendError(res, new HttpError(417, 'expectation_failed', `this server takes no Expect but 100-continue, got ${describe(req.headers.expect, 100)}`)),
    );
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(address.port ?? 0, address.host ?? '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    return env;
  }

  get url(): string {
    const a = this.server.address() as AddressInfo;
    return `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  }

  get openEpisodes(): number {
    return this.episodes.size;
  }

  /** Refuses new requests (503), lets running steps finish, closes every episode, then stops listening. */
  close(): Promise<void> {
    // A second call waits for the first one's work too.
    this.closing ??= this.stop();
    return this.closing;
  }

  private async stop(): Promise<void> {
    this.stopping = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    await this.episodes.closeAll('closed: the server stopped');
    this.server.closeAllConnections();
    await closed;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      if (this.options.token !== undefined && !sameSecret(bearerToken(req.headers.authorization), this.options.token))
        throw new HttpError(401, 'unauthorized', 'this server needs the header Authorization: Bearer TOKEN, with the token it was started with', { 'www-authenticate': 'Bearer' });
      if (this.stopping) throw new HttpError(503, 'shutting_down', 'the server is stopping');
      let url: URL;
      try {
        const target = req.url ?? '/';
        // Relative to a base, '//v1/health' would read as a host 'v1' and a path '/health'.
        url = target.startsWith('/') ? new URL(`http://server${target}`) : new URL(target, 'http://server');
      } catch {
        throw new HttpError(400, 'invalid_request', `cannot read the request's path ${describe(req.url, 300)}`);
      }
      const [status, body] = await this.route(req, url.pathname.replace(/\/+$/, '') || '/', url.searchParams);
      sendJson(res, status, body);
    } catch (e) {
      if (e instanceof HttpError) sendError(res, e);
      else {
        (this.options.log ?? (() => {}))(`env server: ${req.method} ${req.url}: ${(e as Error).stack ?? e}`);
        sendError(res, new HttpError(500, 'internal_error', (e as Error).message));
      }
    }
  }

  private async route(req: IncomingMessage, path: string, query: URLSearchParams): Promise<[number, unknown]> {
    const method = req.method ?? 'GET';
    const allow = (methods: string[]) => {
      if (!methods.includes(method)) throw new HttpError(405, 'method_not_allowed', `${path} takes ${methods.join(' or ')}, not ${method}`, { allow: methods.join(', ') });
    };
    if (path === '/v1/health') {
      allow(['GET']);
      return [200, { ok: true, episodes: this.episodes.size, maxEpisodes: this.episodes.maxEpisodes }];
    }
    if (path === '/v1/tasks') {
      allow(['GET']);
      const specs = this.options.tasks ? this.options.tasks() : listTasks().tasks.map((t) => t.spec);
      return [200, { tasks: specs.map(({ name, title, modality, split, metric, baseline, best }) => ({ name, title, modality, split, metric, baseline, best })) }];
    }
    if (path === '/v1/states') {
      allow(['GET']);
      return [200, await this.states(query)];
    }
    if (path === '/v1/episodes') {
      allow(['GET', 'POST']);
      if (method === 'GET') return [200, { episodes: this.episodes.list().map((live) => ({ id: live.id, task: live.episode.task.spec.name, step: live.episode.stepIndex, done: live.episode.done, busy: live.busy })) }];
      const body = await this.readBody(req);
      return [201, await this.episodes.track(this.start(body, () => req.socket.destroyed || !req.socket.writable))];
    }
    const m = /^\/v1\/episodes\/([^/]+)(\/step|\/snapshot)?$/.exec(path);
    if (!m) throw new HttpError(404, 'not_found', `no endpoint ${cut(path, 300)} (GET /v1/tasks, POST /v1/episodes, POST /v1/episodes/ID/step, ...)`);
    allow(m[2] ? ['POST'] : ['GET', 'DELETE']);
    const live = this.episodes.get(m[1]);
    if (m[2] === '/step') {
      const body = await this.readBody(req);
      onlyFields(body, ['response']);
      if (typeof body.response !== 'string') throw new HttpError(400, 'invalid_request', `'response' must be the model's text (a string), got ${describe(body.response)}`);
      if (live.episode.done) throw new HttpError(409, 'episode_done', `episode ${live.id} is done after ${live.episode.stepIndex} steps; DELETE it, or start another`);
      const response = body.response;
      const view = await this.episodes.exclusive(live, async () => this.stepView(live, await live.episode.step(response)));
      // This server's own saves show in the next listing at once (other processes' within STATES_REUSE_MS).
      this.stateLists.clear();
      return [200, view];
    }
    if (m[2] === '/snapshot') {
      onlyFields(await this.readBody(req), []);
      const state = await this.episodes.exclusive(live, () => live.episode.snapshot());
      this.stateLists.clear();
      return [200, { state }];
    }
    if (method === 'GET') return [200, this.view(live)];
    if (live.busy) throw new HttpError(409, 'episode_busy', `episode ${live.id} is running a step; delete it when the step has answered`);
    const last = this.view(live, false);
    await this.episodes.close(live, 'deleted');
    return [200, { ...last, closed: true }];
  }

  /** The store's states, oldest first, a page at a time: where a step-wise RL client draws its start states from. */
  private async states(query: URLSearchParams): Promise<unknown> {
    const unknown = [...new Set(query.keys())].filter((k) => !['task', 'limit', 'offset'].includes(k));
    if (unknown.length > 0) throw new HttpError(400, 'invalid_request', `unknown query parameter${unknown.length > 1 ? 's' : ''} ${unknown.slice(0, 10).map((k) => describe(k, 60)).join(', ')} (known: task, limit, offset)`);
    const count = (name: string, fallback: number, min: number, max: number): number => {
      const text = query.get(name);
      if (text === null) return fallback;
      const n = /^\d{1,9}$/.test(text) ? Number(text) : NaN;
      if (!(n >= min && n <= max)) throw new HttpError(400, 'invalid_request', `'${name}' must be an integer from ${min} to ${max}, got ${describe(text, 60)}`);
      return n;
    };
    const limit = count('limit', 1000, 1, MAX_STATES_PAGE);
    const offset = count('offset', 0, 0, 999_999_999);
    const task = query.get('task') ?? undefined;
    if (task === '') throw new HttpError(400, 'invalid_request', "'task' must name a task");
    const all = await this.listStates(task);
    return { total: all.length, offset, states: all.slice(offset, offset + limit) };
  }

  /**
   * The store's listing, reused for STATES_REUSE_MS: listing reads every manifest, so a client paging through a big
   * store would otherwise read it all once a page (and its pages would shift as states are saved meanwhile).
   */
  private listStates(task: string | undefined): Promise<StateSummary[]> {
    const key = task ?? '';
    const hit = this.stateLists.get(key);
    if (hit && Date.now() - hit.at < STATES_REUSE_MS) return hit.list;
    const list = this.options.episode.store.list({ task });
    this.stateLists.set(key, { at: Date.now(), list });
    list.catch(() => this.stateLists.delete(key));
    // One entry per task asked for; drop the stale ones so a client naming many tasks cannot grow the map.
    for (const [k, v] of this.stateLists) if (Date.now() - v.at >= STATES_REUSE_MS) this.stateLists.delete(k);
    return list;
  }

  private get maxBody(): number {
    return this.options.maxBodyBytes ?? 4 * 2 ** 20;
  }

  /** The body; a server that began stopping while it arrived starts nothing more (close() waits only for work begun). */
  private async readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
    const body = await readJsonObject(req, this.maxBody);
    if (this.stopping) throw new HttpError(503, 'shutting_down', 'the server is stopping');
    return body;
  }

  private async start(body: Record<string, unknown>, clientGone: () => boolean): Promise<unknown> {
    onlyFields(body, EPISODE_FIELDS);
    const { task: name, state, maxSteps, scoreEdits, snapshotSteps, promptFormat } = body;
    if (typeof name !== 'string' || name === '') throw new HttpError(400, 'invalid_request', `'task' must name a task (GET /v1/tasks lists them), got ${describe(name)}`);
    if (state !== undefined && (typeof state !== 'string' || state === '')) throw new HttpError(400, 'invalid_request', `'state' must be a saved state's id (or a unique prefix), got ${describe(state)}`);
    // The server's own limit is also the most a client may ask for: each step may run code for the task's time limit.
    const ceiling = this.options.episode.maxSteps ?? DEFAULT_MAX_STEPS;
    if (maxSteps !== undefined && !(Number.isInteger(maxSteps) && (maxSteps as number) >= 1 && (maxSteps as number) <= ceiling))
      throw new HttpError(400, 'invalid_request', `'maxSteps' must be an integer from 1 to ${ceiling} (the server's --max-steps), got ${describe(maxSteps)}`);
    for (const [field, value] of [['scoreEdits', scoreEdits], ['snapshotSteps', snapshotSteps]] as const)
      if (value !== undefined && typeof value !== 'boolean') throw new HttpError(400, 'invalid_request', `'${field}' must be true or false, got ${describe(value)}`);
    if (promptFormat !== undefined && promptFormat !== 'messages' && promptFormat !== 'compact')
      throw new HttpError(400, 'invalid_request', `'promptFormat' must be 'messages' or 'compact', got ${describe(promptFormat)}`);
    return this.episodes.withPlace(async () => {
      const task = await this.prepare(name);
      let episode: Episode;
      try {
        episode = await Episode.start(task, {
          ...this.options.episode,
          ...(maxSteps === undefined ? {} : { maxSteps: maxSteps as number }),
          ...(scoreEdits === undefined ? {} : { runEditedScripts: scoreEdits as boolean }),
          ...(snapshotSteps === undefined ? {} : { snapshotSteps: snapshotSteps as boolean }),
          fromSnapshot: state as string | undefined,
        });
      } catch (e) {
        throw new HttpError(400, 'invalid_request', `cannot start an episode of ${describe(name, 100)}${state ? ` from state ${cut(state as string, 100)}` : ''}: ${cut((e as Error).message, 500)}`);
      }
      if (this.stopping || clientGone()) {
        await episode.close();
        if (this.stopping) throw new HttpError(503, 'shutting_down', 'the server is stopping');
        // Nobody would learn its id: kept, it would hold a place and a workspace until the idle timeout.
        throw new HttpError(400, 'request_aborted', 'the client closed the connection before the episode started');
      }
      return this.view(this.episodes.add(episode, promptFormat === 'compact'));
    });
  }

  private prepare(name: string): Promise<PreparedTask> {
    let task = this.prepared.get(name);
    if (!task) {
      const prepare = this.options.prepare ?? registeredTask;
      task = prepare(name).catch((e: Error) => {
        this.prepared.delete(name);
        throw new HttpError(400, 'unknown_task', `cannot load task ${describe(name, 100)}: ${cut(e.message, 500)}`);
      });
      this.prepared.set(name, task);
    }
    return task;
  }

  /** What a client needs to go on: the chat (or the one-text prompt) for the next turn, and where the episode is. */
  private view(live: LiveEpisode, withPrompt = true): Record<string, unknown> {
    const ep = live.episode;
    return {
      id: live.id,
      task: ep.task.spec.name,
      step: ep.stepIndex,
      maxSteps: ep.maxSteps,
      done: ep.done,
      metric: ep.currentMetric,
      ...(withPrompt ? { messages: live.compact ? compactMessages(ep.messages()) : ep.messages(), prompt: ep.prompt() } : {}),
    };
  }

  private stepView(live: LiveEpisode, result: StepResult): Record<string, unknown> {
    const spec = live.episode.task.spec;
    let reward: RewardResult | null = null;
    let rewardError: string | undefined;
    try {
      reward = computeReward(result.feedback, { name: spec.metric.name, direction: spec.metric.direction, baseline: spec.baseline, best: spec.best }, this.options.reward);
    } catch (e) {
      rewardError = (e as Error).message;
    }
    return { result, reward, ...(rewardError ? { rewardError } : {}), episode: this.view(live) };
  }
}

async function registeredTask(name: string): Promise<PreparedTask> {
  const names = listTasks().tasks.map((t) => t.spec.name);
  if (!names.includes(name)) throw new Error(`no such task (the server's tasks: ${names.join(', ')})`);
  return prepareTask(name);
}

/** The token of an `Authorization: Bearer TOKEN` header; the scheme's case and the spaces after it do not matter (RFC 9110). */
function bearerToken(header: string | undefined): string {
  const m = /^bearer +(.*)$/i.exec(header?.trim() ?? '');
  return m ? m[1] : '';
}

/** Compared in constant time, so response timings do not spell the token out. */
function sameSecret(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}
