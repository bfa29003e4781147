// `mlagent worker`: argument errors, jobs from a RemoteExecutor, and a graceful SIGTERM that finishes the
// running job. A real redis-server on a free port; the built CLI as the worker process.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, utimesSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { RemoteExecutor, removeTree, SnapshotStore } from '@mlagent/env';
import { writeQueueToyTask } from './worker-toy-task.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bin, mlagent } from './run-cli.js';

const home = mkdtempSync(path.join(tmpdir(), 'mlagent-cli-worker-'));
let redis: ChildProcess;
let url = '';
const children: ChildProcess[] = [];

function execute(file: string): string {
  return `Thought: run it\nAction: Execute Script\nAction Input: {"script_name": "${file}"}`;
}

function startWorker(name: string, extra: string[] = []): { child: ChildProcess; log: string[]; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [bin, 'worker', '--redis', url, '--queue', 'cli-q', '--name', name, '--store', path.join(home, name), ...extra], {
    env: { ...process.env, MLAGENT_HOME: home },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.push(child);
  const log: string[] = [];
  child.stderr!.setEncoding('utf8').on('data', (t: string) => log.push(...t.split('\n').filter(Boolean)));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, log, exited };
}

async function until(cond: () => boolean, what: string, ms = 30_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  writeQueueToyTask(home, 'wtoy', { 'slow.py': `import time\ntime.sleep(3)\nopen('submission.csv', 'w').write('id,y\\n1,2\\n2,4\\n')\n`, 'hang.py': 'import time\ntime.sleep(120)\n' });
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  url = `redis://127.0.0.1:${port}`;
  redis = spawn('/usr/bin/redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', home, '--save', '', '--appendonly', 'yes'], { stdio: 'ignore' });
});

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  redis?.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 300));
  removeTree(home);
});

describe('mlagent worker', () => {
  it('rejects bad arguments with the reason', async () => {
    let r = await mlagent('worker');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--redis URL is required/);
    r = await mlagent('worker', '--redis', 'localhost:6379');
    expect(r.stderr).toMatch(/--redis must be a redis:\/\/ or rediss:\/\/ URL/);
    r = await mlagent('worker', '--redis', 'http://admin:hunter2@localhost:6379');
    expect(r.stderr).toMatch(/got 'http:\/\/admin:\*\*\*@localhost:6379'/);
    expect(r.stderr).not.toContain('hunter2');
    r = await mlagent('worker', '--redis', 'redis://127.0.0.1:1', '--concurrency', '0');
    expect(r.stderr).toMatch(/--concurrency must be an integer >= 1, got '0'/);
    r = await mlagent('worker', '--redis', 'redis://127.0.0.1:1', '--cache-max-age', '1 week');
    expect(r.stderr).toMatch(/worker: --cache-max-age must be an age such as 90s, 30m, 12h or 7d \(or 'off'\), got '1 week'/);
    r = await mlagent('worker', '--redis', 'redis://127.0.0.1:1', '--cache-max-size', '10 apples');
    expect(r.stderr).toMatch(/worker: --cache-max-size must be a size such as 500M, 20G or 1T, got '10 apples'/);
    r = await mlagent('worker', '--redis', 'redis://127.0.0.1:1', '--cache-max-age', '0');
    expect(r.stderr).toMatch(/--cache-max-age 0 would prune states the running jobs just saved/);
  });

  it('prunes its cache of states older than --cache-max-age; a --store given without it is left alone', async () => {
    /** A store holding one state saved 3 h ago and one just now. */
    const seed = async (dir: string): Promise<{ store: SnapshotStore; old: string; young: string }> => {
      const store = new SnapshotStore(dir);
      const save = async (text: string) => {
        const hash = await store.putBlob(text);
        const files = [{ path: 'train.py', hash, size: text.length, mode: 0o644 }];
        return store.save({ format: 'mlagent-state/1', task: 'wtoy', parent: null, step: 0, done: false, metric: null, files, dirs: [], links: [], omitted: [], undo: {}, steps: [] });
      };
      const old = await save('old\n');
      const young = await save('young\n');
      const t = new Date(Date.now() - 3 * 3600_000);
      utimesSync(path.join(dir, 'states', `${old}.json`), t, t);
      utimesSync(store.blobPath((await store.load(old)).files[0].hash), t, t);
      return { store, old, young };
    };
    const pruned = await seed(path.join(home, 'wp'));
    const kept = await seed(path.join(home, 'wk'));
    const sized = await seed(path.join(home, 'ws'));
    const a = startWorker('wp', ['--cache-max-age', '2h']);
    const b = startWorker('wk');
    // A size limit on a given store: the old state goes, the young one stays however small the limit.
    const c = startWorker('ws', ['--cache-max-size', '1']);
    try {
      await until(() => a.log.some((l) => l.includes('cache: removed')), 'the cache prune');
      expect(a.log.join('\n')).toMatch(/worker wp: cache: removed 1 state\(s\) older than 2h and 1 blob\(s\), [\d.]+ MiB freed/);
      expect((await pruned.store.list()).map((s) => s.id)).toEqual([pruned.young]);
      await until(() => b.log.some((l) => l.includes('waiting for jobs')), 'the second worker to start');
      await new Promise((r) => setTimeout(r, 500));
      expect((await kept.store.list()).map((s) => s.id).sort()).toEqual([kept.old, kept.young].sort());
      expect(b.log.join('\n')).not.toMatch(/cache/);
      await until(() => c.log.some((l) => l.includes('cache: removed')), 'the size prune');
      expect(c.log.join('\n')).toMatch(/worker ws: cache: removed 1 state\(s\) past 1 and 1 blob\(s\), [\d.]+ MiB freed; [\d.]+ MiB kept/);
      expect((await sized.store.list()).map((s) => s.id)).toEqual([sized.young]);
    } finally {
      a.child.kill('SIGTERM');
      b.child.kill('SIGTERM');
      c.child.kill('SIGTERM');
      expect([await a.exited, await b.exited, await c.exited]).toEqual([0, 0, 0]);
    }
  }, 60_000);

  it('executes steps for a RemoteExecutor and stops gracefully on SIGTERM after finishing its job', async () => {
    const a = startWorker('wa');
    await until(() => a.log.some((l) => l.includes('waiting for jobs')), 'the worker to start');
    const client = new RemoteExecutor({ redis: url, queue: 'cli-q', store: new SnapshotStore(path.join(home, 'client')), pollMs: 300 });
    try {
      const r = await client.execute({ task: 'wtoy', response: execute('train.py') });
      expect(r).toMatchObject({ action: 'Execute Script', outcome: 'ok', metric: 0, step: 1 });
      expect(r.observation).toMatch(/trained/);
      expect(a.log.join('\n')).toMatch(/job step-[0-9a-f]{64} done in [\d.]+ s: step 1 Execute Script -> ok metric 0/);

      const slow = client.execute({ task: 'wtoy', fromSnapshot: r.snapshotId!, response: execute('slow.py') });
      await until(() => a.log.some((l) => l.includes('started') && l.includes(`from ${r.snapshotId!.slice(0, 12)}`)), 'the slow job to start');
      a.child.kill('SIGTERM');
      const s = await slow;
      expect(s).toMatchObject({ outcome: 'ok', metric: 0, step: 2 });
      expect(await a.exited).toBe(0);
      expect(a.log.join('\n')).toMatch(/SIGTERM: finishing 1 running job\(s\), then exiting[\s\S]*stopped/);
    } finally {
      await client.close();
    }
  }, 60_000);

  it('a second SIGTERM abandons the running job and ends the process at once', async () => {
    const b = startWorker('wb');
    await until(() => b.log.some((l) => l.includes('waiting for jobs')), 'the worker to start');
    const client = new RemoteExecutor({ redis: url, queue: 'cli-q', store: new SnapshotStore(path.join(home, 'client-b')), pollMs: 300 });
    try {
      const hang = client.execute({ task: 'wtoy', response: execute('hang.py') }).catch((e: Error) => e);
      await until(() => b.log.some((l) => l.includes('started')), 'the hanging job to start');
      b.child.kill('SIGTERM');
      await until(() => b.log.some((l) => l.includes('finishing 1 running job')), 'the first SIGTERM');
      const t0 = Date.now();
      b.child.kill('SIGTERM');
      expect(await b.exited).toBe(143);
      // Not the 120 s the script sleeps: the sandboxed run no longer keeps the process alive.
      expect(Date.now() - t0).toBeLessThan(20_000);
      expect(b.log.join('\n')).toMatch(/SIGTERM again: abandoning 1 running job\(s\)/);
      await client.close();
      expect(await hang).toBeInstanceOf(Error);
    } finally {
      await client.close();
    }
  }, 60_000);
});
