// The env HTTP server against hostile clients: requests node:http itself refuses, bodies that never finish, bad
// bytes and values too deep or too long to echo, a client that goes away or an episode deleted mid-request, and
// close() while an episode is being started. Every answer is JSON with the right status, and nothing is left behind.
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EnvServer } from '../src/server/env-server.js';
import { SnapshotStore } from '../src/snapshots/store.js';
import { makeFixtureTask, respond, type Fixture } from './episode-fixture.js';

let fx: Fixture;
beforeAll(() => {
  fx = makeFixtureTask();
});
afterAll(() => fx.cleanup());

type Options = Parameters<typeof EnvServer.listen>[0];

/** A server on the tiny task (each with its own workspace root), closed afterwards whatever happens. */
async function withServer(extra: Partial<Options>, body: (server: EnvServer, workspaces: () => string[]) => Promise<void>): Promise<void> {
  const workRoot = path.join(fx.root, `ws-${Math.random().toString(36).slice(2)}`);
  const server = await EnvServer.listen({
    episode: { store: new SnapshotStore(path.join(fx.root, 'store')), workRoot },
    prepare: async (name) => {
      if (name !== 'tiny') throw new Error('no such task');
      return fx.task;
    },
    tasks: () => [fx.task.spec],
    ...extra,
  });
  try {
    await body(server, () => (existsSync(workRoot) ? readdirSync(workRoot) : []));
  } finally {
    await server.close();
  }
}

interface Answer {
  status: number;
  headers: Headers;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- the tests read whatever JSON came back
}

async function call(server: EnvServer, method: string, route: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const r = await fetch(`${server.url}${route}`, { method, headers, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await r.text();
  try {
    return { status: r.status, headers: r.headers, body: JSON.parse(text) };
  } catch {
    throw new Error(`not JSON (${r.status}): ${text}`);
  }
}

/** Raw bytes over a socket: writes `first`, then `later` after `gapMs` (if given); everything that came back when the server closed it. */
function raw(server: EnvServer, first: string | Buffer, opts: { later?: string; gapMs?: number; during?: () => Promise<void>; timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(Number(new URL(server.url).port), '127.0.0.1', () => {
      socket.write(first);
      if (opts.later !== undefined || opts.during)
        setTimeout(() => {
          void (opts.during?.() ?? Promise.resolve()).then(() => opts.later !== undefined && socket.write(opts.later));
        }, opts.gapMs ?? 0);
    });
    let text = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${opts.timeoutMs ?? 3000} ms; got ${JSON.stringify(text)}`));
    }, opts.timeoutMs ?? 3000);
    socket.on('data', (b: Buffer) => (text += b));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(text);
    });
  });
}

/** The status and the JSON error of a raw HTTP answer; fails unless it is one JSON error. */
function parseRaw(text: string): { status: number; error: { type: string; message: string } } {
  const [head, body] = text.split('\r\n\r\n');
  const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(head)?.[1]);
  expect(head, text).toMatch(/content-type: application\/json/i);
  return { status, error: (JSON.parse(body) as { error: { type: string; message: string } }).error };
}

const post = (route: string, body: string | Buffer, extra = '') =>
  Buffer.concat([Buffer.from(`POST ${route} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n`), Buffer.from(body)]);

/** A prepare() that waits until release() is called, to hold episodes in the middle of starting. */
function gatedPrepare(): { prepare: () => Promise<typeof fx.task>; release: () => void } {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  return {
    prepare: async () => {
      await gate;
      return fx.task;
    },
    release,
  };
}

describe('EnvServer against hostile clients', { timeout: 15_000 }, () => {
  it('answers requests node:http refuses itself (bad syntax, oversized headers, an unknown Expect) with a JSON error', async () => {
    await withServer({}, async (server) => {
      for (const [request, status, type] of [
        ['GET /v1/health HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n', 400, 'invalid_request'],
        ['HELLO\r\n\r\n', 400, 'invalid_request'],
        [`GET /v1/episodes/${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`, 431, 'headers_too_large'],
        ['POST /v1/episodes HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400, 'invalid_request'],
        ['GET /v1/health HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nConnection: close\r\n\r\n', 417, 'expectation_failed'],
      ] as const) {
        const answer = parseRaw(await raw(server, request));
        expect([answer.status, answer.error.type], request.slice(0, 40)).toEqual([status, type]);
      }
      expect((await call(server, 'GET', '/v1/health')).status).toBe(200);
    });
  });

  it('gives a request whose body never finishes 408 after requestTimeoutSec; a step running longer is not cut; bad limits are refused', async () => {
    writeFileSync(path.join(fx.task.envDir, 'nap.py'), 'import time\ntime.sleep(0.8)\nprint("woke")\n');
    await withServer({ requestTimeoutSec: 0.5 }, async (server) => {
      const started = Date.now();
      const slow = parseRaw(await raw(server, 'POST /v1/episodes HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"task"'));
      expect([slow.status, slow.error.type]).toEqual([408, 'request_timeout']);
      expect(Date.now() - started).toBeLessThan(4000); // not node's 300 s; loose for a loaded CI machine
      const ep = (await call(server, 'POST', '/v1/episodes', { task: 'tiny' })).body;
      const run = await call(server, 'POST', `/v1/episodes/${ep.id}/step`, { response: respond('Execute Script', { script_name: 'nap.py' }) });
      expect(run.status).toBe(200);
      expect(run.body.result.observation).toContain('woke');
    });
    for (const [option, message] of [
      [{ requestTimeoutSec: 0 }, /requestTimeoutSec must be a positive number/],
      [{ requestTimeoutSec: Number.NaN }, /requestTimeoutSec must be a positive number/],
      [{ maxBodyBytes: Number.NaN }, /maxBodyBytes must be a positive integer, got NaN/],
      [{ maxBodyBytes: -1 }, /maxBodyBytes must be a positive integer/],
    ] as const)
      await expect(EnvServer.listen({ episode: { store: new SnapshotStore(path.join(fx.root, 'store')) }, ...option })).rejects.toThrow(message);
  }, 20_000);

  it('answers a step or snapshot whose episode was deleted while the body arrived with 404, not 500; a client gone mid-body is no server error', async () => {
    const logs: string[] = [];
    await withServer({ log: (line) => logs.push(line) }, async (server) => {
      for (const route of ['step', 'snapshot']) {
        const ep = (await call(server, 'POST', '/v1/episodes', { task: 'tiny' })).body;
        const body = route === 'step' ? JSON.stringify({ response: respond('List Files', { dir_path: '.' }) }) : '{}';
        const answer = parseRaw(
          await raw(server, post(`/v1/episodes/${ep.id}/${route}`, body).subarray(0, -1), {
            gapMs: 50,
            during: async () => expect((await call(server, 'DELETE', `/v1/episodes/${ep.id}`)).status).toBe(200),
            later: body.slice(-1),
          }),
        );
        expect([answer.status, answer.error], route).toEqual([404, { type: 'episode_not_found', message: `episode ${ep.id} was deleted` }]);
      }
      // A client that hangs up halfway through its body.
      await new Promise<void>((resolve) => {
        const socket = connect(Number(new URL(server.url).port), '127.0.0.1', () => {
          socket.write('POST /v1/episodes HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"task"');
          setTimeout(() => socket.destroy(), 50);
        });
        socket.on('close', () => setTimeout(resolve, 100));
      });
    });
    expect(logs).toEqual([]);
  });

  it('names a bad value briefly, however deep, long or odd it is, and never answers 500 for one', async () => {
    await withServer({}, async (server) => {
      const deep = `{"task":"tiny","maxSteps":${'['.repeat(200_000)}${']'.repeat(200_000)}}`;
      const many = JSON.stringify(Object.fromEntries([['task', 'tiny'], ...Array.from({ length: 5000 }, (_, i) => [`field${i}`, 1])]));
      for (const [body, status, message] of [
        [deep, 400, /^'maxSteps' must be an integer from 1 to 15 \(the server's --max-steps\), got an array$/],
        ['{"task":"tiny","maxSteps":1e309}', 400, /got Infinity$/],
        ['{"task":"tiny","maxSteps":-0}', 400, /got 0$/],
        ['{"task":"tiny","maxSteps":1.5}', 400, /got 1\.5$/],
        [JSON.stringify({ task: 'tiny', state: 7, x: 1 }), 400, /^unknown field 'x'/],
        [JSON.stringify({ task: 'tiny', response: 'x'.repeat(100_000) }), 400, /^unknown field 'response'/],
        [JSON.stringify({ task: 'tiny', maxSteps: 'y'.repeat(100_000) }), 400, /got 'y{199}\.\.\. \(100002 characters\)$/],
        [many, 400, /^unknown fields 'field0', .*'field9' and 4990 more \(known: /],
        [JSON.stringify({ task: 'z'.repeat(100_000) }), 400, /^cannot load task 'z{99}\.\.\. \(100002 characters\): no such task$/],
        [JSON.stringify({ task: 'tiny', state: 'a'.repeat(100_000) }), 400, /^cannot start an episode of 'tiny' from state a{100}\.\.\. \(100000 characters\): /],
      ] as const) {
        const r = await call(server, 'POST', '/v1/episodes', body);
        expect(r.status, body.slice(0, 60)).toBe(status);
        expect(r.body.error.message).toMatch(message);
        expect(r.body.error.message.length).toBeLessThan(1000);
      }
      const longId = await call(server, 'GET', `/v1/episodes/${'f'.repeat(8000)}`);
      expect([longId.status, longId.body.error.type]).toEqual([404, 'episode_not_found']);
      expect(longId.body.error.message.length).toBeLessThan(1000);
      // '//v1/health' is a path, not a host 'v1' and a path '/health'.
      expect((await call(server, 'GET', '//v1/health')).body.error.message).toMatch(/^no endpoint \/\/v1\/health /);
      expect(server.openEpisodes).toBe(0);
    });
  });

  it('closes the connection after a 413: the unread rest of the body is not read as the next request', async () => {
    await withServer({ maxBodyBytes: 1000 }, async (server) => {
      const chunk = 'x'.repeat(3000);
      // Chunked, so the size is only known once the body is over the limit.
      const head = 'POST /v1/episodes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n';
      const text = await raw(server, `${head}${chunk.length.toString(16)}\r\n${chunk}\r\n`, { later: `${chunk.length.toString(16)}\r\n${chunk}\r\n0\r\n\r\n`, gapMs: 50 });
      expect(parseRaw(text).status).toBe(413);
      expect(text.split('\r\n\r\n')[0]).toMatch(/\r\nconnection: close\r\n/i);
      expect(text.match(/HTTP\/1\.1 /g)).toHaveLength(1);
      const declared = await call(server, 'POST', '/v1/episodes', { task: 'tiny', pad: chunk });
      expect([declared.status, declared.headers.get('connection')]).toEqual([413, 'close']);
    });
  });

  it('refuses a body that is not UTF-8 instead of changing the bytes', async () => {
    await withServer({}, async (server) => {
      const body = Buffer.concat([Buffer.from('{"task":"ti'), Buffer.from([0xff, 0xfe]), Buffer.from('ny"}')]);
      const answer = parseRaw(await raw(server, post('/v1/episodes', body)));
      expect([answer.status, answer.error]).toEqual([400, { type: 'invalid_json', message: 'the request body is not UTF-8 text' }]);
    });
  });

  it('takes the Bearer scheme in any case; a 401 says WWW-Authenticate, a 405 says Allow', async () => {
    await withServer({ token: 's3cret' }, async (server) => {
      for (const authorization of ['Bearer s3cret', 'bearer s3cret', 'BEARER   s3cret'])
        expect((await call(server, 'GET', '/v1/health', undefined, { authorization })).status, authorization).toBe(200);
      for (const authorization of ['Bearer', 'Bearers3cret', 'Basic s3cret', 'Bearer s3cret2', 's3cret']) {
        const r = await call(server, 'GET', '/v1/health', undefined, { authorization });
        expect([r.status, r.body.error.type, r.headers.get('www-authenticate')], authorization).toEqual([401, 'unauthorized', 'Bearer']);
      }
      const auth = { authorization: 'Bearer s3cret' };
      for (const [method, route, allow] of [
        ['OPTIONS', '/v1/health', 'GET'],
        ['DELETE', '/v1/episodes', 'GET, POST'],
        ['GET', '/v1/episodes/abc/step', 'POST'],
        ['POST', '/v1/episodes/abc', 'GET, DELETE'],
      ]) {
        const r = await call(server, method, route, undefined, auth);
        expect([r.status, r.body.error.type, r.headers.get('allow')], `${method} ${route}`).toEqual([405, 'method_not_allowed', allow]);
      }
    });
  });

  it('closes an episode whose client hung up while it was being started: no place or workspace held', async () => {
    const { prepare, release } = gatedPrepare();
    await withServer(
      { maxEpisodes: 1, prepare },
      async (server, workspaces) => {
        await new Promise<void>((resolve) => {
          const socket = connect(Number(new URL(server.url).port), '127.0.0.1', () => socket.write(post('/v1/episodes', '{"task":"tiny"}')));
          setTimeout(() => {
            socket.destroy();
            release();
            resolve();
          }, 100);
        });
        // The one place is 429 while that start runs, and free once it has ended (on a loaded machine that takes a
        // while): kept for the client that left, it would stay taken.
        let next = await call(server, 'POST', '/v1/episodes', { task: 'tiny' });
        for (let i = 0; i < 400 && next.status === 429; i++) {
          await new Promise((r) => setTimeout(r, 20));
          next = await call(server, 'POST', '/v1/episodes', { task: 'tiny' });
        }
        expect(next.status).toBe(201);
        expect(server.openEpisodes).toBe(1);
        expect(workspaces()).toHaveLength(1); // the new client's
      },
    );
  }, 20_000);

  it('counts episodes being started against maxEpisodes: a burst of starts makes no more workspaces than the limit', async () => {
    const { prepare, release } = gatedPrepare();
    await withServer(
      { maxEpisodes: 2, prepare },
      async (server, workspaces) => {
        const statuses: number[] = [];
        const burst = Array.from({ length: 6 }, () => call(server, 'POST', '/v1/episodes', { task: 'tiny' }).then((r) => statuses.push(r.status)));
        try {
          for (let i = 0; i < 50 && statuses.length < 4; i++) await new Promise((r) => setTimeout(r, 20));
          // Four refused while two are still being started, before any workspace exists.
          expect(statuses).toEqual([429, 429, 429, 429]);
        } finally {
          release();
        }
        await Promise.all(burst);
        expect(statuses.slice(4)).toEqual([201, 201]);
        expect(workspaces()).toHaveLength(2);
        const full = await call(server, 'POST', '/v1/episodes', { task: 'tiny' });
        expect([full.status, full.body.error.message]).toEqual([429, "2 episodes are open, the server's limit (--max-episodes); close one (DELETE /v1/episodes/ID) first"]);
      },
    );
  });

  it('close() waits for an episode being started (and a second close() for the first), leaving no workspace behind', async () => {
    const { prepare, release } = gatedPrepare();
    await withServer(
      { prepare },
      async (server, workspaces) => {
        const starting = call(server, 'POST', '/v1/episodes', { task: 'tiny' }).catch((e: Error) => e);
        await new Promise((r) => setTimeout(r, 100));
        let closed = 0;
        let late = '';
        // Another start whose body ends after close() began: refused at once, not started behind close()'s back.
        const lateDone = raw(server, post('/v1/episodes', '{"task":"tiny"}').subarray(0, -1), {
          gapMs: 50,
          during: async () => {
            void server.close().then(() => closed++);
          },
          later: '}',
        }).then((text) => (late = text));
        const second = new Promise((r) => setTimeout(r, 20)).then(() => server.close().then(() => closed++));
        try {
          await new Promise((r) => setTimeout(r, 200));
          expect(closed).toBe(0);
          expect(parseRaw(late)).toMatchObject({ status: 503, error: { type: 'shutting_down' } });
        } finally {
          release();
        }
        await lateDone;
        await second;
        expect(closed).toBe(2);
        expect(workspaces()).toEqual([]);
        expect(server.openEpisodes).toBe(0);
        const answer = await starting;
        expect(answer instanceof Error ? answer.message : [answer.status, answer.body.error.type]).toEqual([503, 'shutting_down']);
      },
    );
  });
});
