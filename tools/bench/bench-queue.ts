// Env steps/s through `mlagent worker` processes on a local redis-server, for 1, 2, 4 workers, plus the costs
// that bound it (one sandboxed python, one grade, a Redis round trip, one step in-process).
// Run: node --import tsx tools/bench/bench-queue.ts [--workers 1,2,4] [--steps 24] [--out FILE.md]
// Needs the built CLI (npx nx run @mlagent/cli:build) and /usr/bin/redis-server ($REDIS_SERVER overrides).
// --self-workers runs the workers as this script (--as-worker: the same startExecutionWorker as `mlagent worker`),
// so an esbuild bundle of this file runs on a machine with only node, python3 and a redis-server binary.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { writeQueueToyTask } from '../../apps/cli/test/worker-toy-task.js';
import { LocalExecutor, prepareTask, RemoteExecutor, removeTree, runSandboxed, SnapshotStore, startExecutionWorker } from '@mlagent/env';

const { values } = parseArgs({
  options: {
    workers: { type: 'string', default: '1,2,4' },
    steps: { type: 'string', default: '24' },
    out: { type: 'string' },
    'self-workers': { type: 'boolean', default: false },
    'as-worker': { type: 'string' }, // internal: "<redis url>,<queue>,<name>,<store dir>"
  },
});
const REDIS_SERVER = process.env.REDIS_SERVER ?? '/usr/bin/redis-server';
if (values['as-worker']) {
  const [redisUrl, queue, name, store] = values['as-worker'].split(',');
  const w = startExecutionWorker({ redis: redisUrl, queue, name, store: new SnapshotStore(store) });
  process.once('SIGTERM', () => void w.close().then(() => process.exit(0)));
  await new Promise(() => {}); // runs until SIGTERM
}
const WORKERS = values.workers.split(',').map(Number);
const STEPS = Number(values.steps);
const CLI = fileURLToPath(new URL('../../apps/cli/bin/mlagent.js', import.meta.url)); // unused with --self-workers
const home = mkdtempSync(path.join(os.tmpdir(), 'mlagent-bench-queue-'));
const EXECUTE = 'Thought: run it\nAction: Execute Script\nAction Input: {"script_name": "train.py"}';
const LIST = 'Thought: look\nAction: List Files\nAction Input: {"dir_path": "."}';

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function startWorkers(url: string, queue: string, n: number): Promise<ChildProcess[]> {
  const children = Array.from({ length: n }, (_, i) => {
    const store = path.join(home, `w${i}`);
    const args = values['self-workers']
      ? [process.argv[1], '--as-worker', [url, queue, `w${i}`, store].join(',')]
      : [CLI, 'worker', '--redis', url, '--queue', queue, '--name', `w${i}`, '--store', store];
    const c = spawn(process.execPath, args, {
      env: { ...process.env, MLAGENT_HOME: home },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    (c as ChildProcess & { ready?: boolean }).ready = false;
    c.stderr!.setEncoding('utf8').on('data', (t: string) => {
      if (t.includes('waiting for jobs')) (c as ChildProcess & { ready?: boolean }).ready = true;
    });
    return c;
  });
  while (!children.every((c) => (c as ChildProcess & { ready?: boolean }).ready)) await sleep(50);
  return children;
}

async function stopWorkers(children: ChildProcess[]): Promise<void> {
  await Promise.all(children.map((c) => new Promise<void>((r) => (c.once('exit', () => r()), c.kill('SIGTERM')))));
}

/** Steps/s for `n` requests in flight at once, each a distinct job from the initial state. */
async function measure(executor: { execute: LocalExecutor['execute'] }, response: string, tag: string, inFlight: number, steps = STEPS): Promise<number> {
  await executor.execute({ task: 'bench-toy', response, key: `${tag}-warm` }); // workers prepare the task, python caches warm
  const t0 = performance.now();
  let next = 0;
  const lane = async () => {
    while (next < steps) await executor.execute({ task: 'bench-toy', response, key: `${tag}-${next++}` });
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  return steps / ((performance.now() - t0) / 1000);
}

async function timeIt(n: number, f: () => Promise<unknown>): Promise<number> {
  await f();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await f();
  return (performance.now() - t0) / n;
}

const loadBefore = os.loadavg()[0].toFixed(1);
writeQueueToyTask(home, 'bench-toy');
process.env.MLAGENT_HOME = home;
const task = await prepareTask('bench-toy');
const port = await freePort();
const url = `redis://127.0.0.1:${port}`;
const redis = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--dir', home, '--save', '', '--appendonly', 'yes'], { stdio: 'ignore' });
await sleep(300);
const rows: string[] = [];
try {
  // What one step costs, measured one at a time.
  const ws = mkdtempSync(path.join(home, 'ws-'));
  const python = await timeIt(5, () => runSandboxed({ command: ['/usr/bin/python3', '-c', 'pass'], workspace: ws, timeoutMs: 30_000 }));
  const bare = await timeIt(5, () => new Promise((r) => spawn('/usr/bin/python3', ['-c', 'pass']).once('exit', r)));
  writeFileSync(path.join(ws, 'sub.csv'), 'id,y\n1,2\n2,4\n');
  const grade = await timeIt(5, () => task.grade(path.join(ws, 'sub.csv')));
  const conn = new Redis(url);
  const ping = await timeIt(200, () => conn.ping());
  conn.disconnect();
  const local = new LocalExecutor({ store: new SnapshotStore(path.join(home, 'local')) });
  const localExec = 1 / (await measure(local, EXECUTE, 'local-exec', 1));
  const localList = 1 / (await measure(local, LIST, 'local-list', 1, 4 * STEPS));
  rows.push(`One at a time: bare \`python3 -c pass\` ${bare.toFixed(0)} ms; the same in the sandbox ${python.toFixed(0)} ms; grade.py ${grade.toFixed(0)} ms; Redis PING ${ping.toFixed(2)} ms; a step in-process (LocalExecutor): Execute Script ${(localExec * 1000).toFixed(0)} ms, List Files ${(localList * 1000).toFixed(0)} ms.`);
  rows.push('', '| workers | in flight | Execute Script steps/s | List Files steps/s | LocalExecutor (same in flight) Execute Script steps/s |', '|---:|---:|---:|---:|---:|');
  for (const n of WORKERS) {
    const queue = `bench-${n}`;
    const children = await startWorkers(url, queue, n);
    const client = new RemoteExecutor({ redis: url, queue, store: new SnapshotStore(path.join(home, `client-${n}`)), pollMs: 200 });
    const inFlight = 2 * n; // keeps every worker busy while results travel back
    const exec = await measure(client, EXECUTE, `exec-${n}`, inFlight);
    const list = await measure(client, LIST, `list-${n}`, inFlight, 4 * STEPS);
    await client.close();
    await stopWorkers(children);
    const localN = await measure(new LocalExecutor({ store: new SnapshotStore(path.join(home, `local-${n}`)) }), EXECUTE, `local-${n}`, n);
    rows.push(`| ${n} | ${inFlight} | ${exec.toFixed(2)} | ${list.toFixed(2)} | ${localN.toFixed(2)} |`);
    process.stderr.write(`${n} worker(s): ${exec.toFixed(2)} execute steps/s, ${list.toFixed(2)} list steps/s\n`);
  }
} finally {
  redis.kill('SIGTERM');
  await sleep(200);
  removeTree(home);
}
const load = os.loadavg().map((x) => x.toFixed(1)).join(' ');
const header = [
  `Command: \`node --import tsx tools/bench/bench-queue.ts --workers ${values.workers} --steps ${STEPS}${values['self-workers'] ? ' --self-workers' : ''}\`  `,
  `Date: ${new Date().toISOString()}; host: ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}; load average (1 min) ${loadBefore} before, ${load} after; redis ${execFileSync(REDIS_SERVER, ['--version']).toString().split(' ')[2]}  `,
  `${STEPS} timed Execute Script steps and ${4 * STEPS} List Files steps per row, each a distinct job from the task's initial state.`,
  '',
];
const text = [...header, ...rows].join('\n') + '\n';
if (values.out) writeFileSync(values.out, text);
process.stdout.write(text);
