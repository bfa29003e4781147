// Scale-out test rig: a real redis-server on a free port (AOF on, temp dir), a toy task under a temp
// MLAGENT_HOME, and a supervisor that keeps N worker processes alive (respawning crashed ones, as systemd would).
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { tempDir, writeToyTask } from './tasks-fixture.js';

export const REDIS_SERVER = '/usr/bin/redis-server';
const ENTRY = fileURLToPath(new URL('./queue-worker-entry.ts', import.meta.url));

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export interface RedisServer {
  url: string;
  dir: string;
  stop(): Promise<void>;
  /** Shuts the server down (AOF flushed) and starts it again on the same port and data. */
  restart(): Promise<void>;
}

async function waitForPing(url: string, ms = 10_000): Promise<void> {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  r.on('error', () => {}); // refused until the server is up: expected here
  const t0 = Date.now();
  try {
    for (;;) {
      try {
        await r.connect();
        if ((await r.ping()) === 'PONG') return;
      } catch {
        r.disconnect();
      }
      if (Date.now() - t0 > ms) throw new Error(`redis at ${url} did not answer within ${ms} ms`);
      await new Promise((res) => setTimeout(res, 100));
    }
  } finally {
    r.disconnect();
  }
}

export async function startRedis(): Promise<RedisServer> {
  const dir = tempDir('redis');
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  let proc: ChildProcess;
  const launch = async () => {
    proc = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--save', '', '--daemonize', 'no'], {
      stdio: 'ignore',
    });
    await waitForPing(url);
  };
  const halt = () =>
    new Promise<void>((resolve) => {
      if (proc.exitCode !== null) return resolve();
      proc.once('exit', () => resolve());
      proc.kill('SIGTERM'); // redis shuts down cleanly on SIGTERM: the AOF is fsynced
    });
  await launch();
  return {
    url,
    dir,
    stop: halt,
    async restart() {
      await halt();
      await launch();
    },
  };
}

/** The toy task (y = 2x; train.py scores MAE 1) plus slow.py: sleeps 3 s, then writes the exact answers (MAE 0). */
export function writeQueueTask(home: string): string {
  const dir = writeToyTask(path.join(home, 'tasks'), 'qtoy');
  writeFileSync(
    path.join(dir, 'env', 'slow.py'),
    `import csv, time\ntime.sleep(3)\nrows = list(csv.DictReader(open('data/test.csv')))\nwith open('submission.csv', 'w') as f:\n    f.write('id,y\\n' + ''.join(f"{r['id']},{2 * int(r['x'])}\\n" for r in rows))\nprint('slow done')\n`,
  );
  return dir;
}

export interface WorkerSettings {
  redis: string;
  queue: string;
  home: string;
  lockMs?: number;
  stalledMs?: number;
  maxStalled?: number;
  jobTimeoutMs?: number;
  crashOn?: string;
  concurrency?: number;
}

interface Slot {
  name: string;
  child: ChildProcess;
  log: string[];
}

/** Keeps `n` worker processes running; `crashes` counts exits it did not ask for. */
export class WorkerSupervisor {
  private slots: Slot[] = [];
  private stopping = false;
  private spawned = 0;
  crashes = 0;
  readonly logs: string[] = [];

  constructor(
    private readonly settings: WorkerSettings,
    n: number,
  ) {
    for (let i = 0; i < n; i++) this.spawn();
  }

  private spawn(): void {
    const s = this.settings;
    const name = `${s.queue}-w${this.spawned++}`;
    const env: Record<string, string> = {
      ...(process.env as Record<string, string>),
      MLAGENT_HOME: s.home,
      QW_REDIS: s.redis,
      QW_QUEUE: s.queue,
      QW_NAME: name,
      QW_STORE: path.join(s.home, 'worker-stores', name),
      QW_LOCK_MS: String(s.lockMs ?? 3000), // generous: a loaded CI machine must not stall healthy jobs
      QW_STALLED_MS: String(s.stalledMs ?? 1000),
      QW_MAX_STALLED: String(s.maxStalled ?? 1),
      QW_CONCURRENCY: String(s.concurrency ?? 1),
    };
    if (s.jobTimeoutMs) env.QW_JOB_TIMEOUT_MS = String(s.jobTimeoutMs);
    if (s.crashOn) env.QW_CRASH_ON = s.crashOn;
    const child = spawn(process.execPath, ['--import', 'tsx', ENTRY], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    const slot: Slot = { name, child, log: [] };
    child.stderr!.setEncoding('utf8').on('data', (t: string) => {
      for (const line of t.split('\n').filter(Boolean)) {
        slot.log.push(line);
        this.logs.push(line);
      }
    });
    child.on('exit', () => {
      if (this.stopping || !this.slots.includes(slot)) return;
      this.crashes++;
      this.slots = this.slots.filter((x) => x !== slot);
      this.spawn();
    });
    this.slots.push(slot);
  }

  /** Resolves when every worker has logged that it waits for jobs. */
  async ready(ms = 30_000): Promise<void> {
    const t0 = Date.now();
    while (!this.slots.every((s) => s.log.some((l) => l.includes('waiting for jobs')))) {
      if (Date.now() - t0 > ms) throw new Error(`workers not ready after ${ms} ms:\n${this.logs.join('\n')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** SIGKILLs the worker of that name (BullMQ's job.processedBy); the supervisor replaces it. */
  kill(name: string): boolean {
    const slot = this.slots.find((s) => s.name === name);
    if (!slot) return false;
    slot.child.kill('SIGKILL');
    return true;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(
      this.slots.map(
        (s) =>
          new Promise<void>((resolve) => {
            if (s.child.exitCode !== null || s.child.signalCode !== null) return resolve();
            s.child.once('exit', () => resolve());
            s.child.kill('SIGTERM');
            setTimeout(() => s.child.kill('SIGKILL'), 5000).unref();
          }),
      ),
    );
  }
}
