// Hostile agent code run through Episode.step: each attack gets the right outcome and a clear observation,
// and the trainer process, the workspace, the hidden files and the snapshot store come through unharmed.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Episode } from '../src/episode/episode.js';
import { SnapshotStore } from '../src/snapshots/store.js';
import { makeFixtureTask, respond, type Fixture } from './episode-fixture.js';

let fx: Fixture;
let store: SnapshotStore;
let ep: Episode;
let startId: string;

beforeAll(async () => {
  fx = makeFixtureTask({ timeoutSec: 3, memoryMb: 256, cpuSec: 10, maxProcs: 32, diskMb: 64 });
  store = new SnapshotStore(path.join(fx.root, 'store'));
  ep = await Episode.start(fx.task, { store, workRoot: path.join(fx.root, 'ws'), maxSteps: 100 });
  startId = await ep.snapshot();
});
afterAll(async () => {
  await ep.close();
  fx.cleanup();
});

/** Writes `code` as a script in the workspace (through the agent's own Write File) and runs it. */
async function runAgentCode(name: string, code: string) {
  const w = await ep.step(respond('Write File', { file_name: name, content: code }));
  expect(w.outcome).toBe('none');
  return ep.step(respond('Execute Script', { script_name: name }));
}

describe('agent code cannot harm the host', () => {
  it('an endless loop times out', async () => {
    const r = await runAgentCode('loop.py', 'print("start", flush=True)\nwhile True:\n    pass\n');
    expect(r.outcome).toBe('timeout');
    expect(r.feedback.outcome).toBe('timeout');
    expect(r.observation).toMatch(/^EnvError: The script did not finish within 3 seconds and was stopped.\nOutput before it stopped:\nstart/);
    expect(r.durationSec).toBeGreaterThanOrEqual(2.9);
    expect(r.durationSec).toBeLessThan(10);
  }, 20_000);

  it('unbounded memory use is stopped as out of memory', async () => {
    const r = await runAgentCode('mem.py', 'chunks = []\nwhile True:\n    chunks.append(bytearray(32 * 2**20))\n');
    expect(r.outcome).toBe('oom');
    expect(r.observation).toMatch(/^EnvError: The script ran out of memory \(limit 256 MiB\) and was stopped./);
  }, 20_000);

  it('a script that crashes by a signal is an error (the reward of a crash), and its observation says how it ended', async () => {
    const r = await runAgentCode('segv.py', 'import ctypes\nprint("before", flush=True)\nctypes.string_at(0)\n');
    expect(r.outcome).toBe('error');
    expect(r.observation).toMatch(/^The script has been executed. Here is the output:\nbefore\n[\s\S]*The script crashed: it was ended by SIGSEGV\.$/);
  }, 20_000);

  it('a fork bomb is killed at the process limit', async () => {
    const r = await runAgentCode('bomb.py', 'import os\nwhile True:\n    os.fork()\n');
    expect(r.outcome).toBe('killed');
    expect(r.observation).toMatch(/^EnvError: The script was killed \(.*at most 32 processes and threads are allowed\)/s);
  }, 30_000);

  it('network connections fail', async () => {
    let connections = 0;
    const server = net.createServer((s) => {
      connections++;
      s.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const code = [
      'import socket',
      'for host in ["127.0.0.1", "1.1.1.1"]:',
      '    try:',
      `        socket.create_connection((host, ${port}), 2)`,
      '        print(host, "CONNECTED")',
      '    except OSError as e:',
      '        print(host, "FAILED", e)',
    ].join('\n');
    const r = await runAgentCode('net.py', code);
    server.close();
    expect(r.outcome).toBe('ok');
    expect(r.observation).toMatch(/127\.0\.0\.1 FAILED/);
    expect(r.observation).toMatch(/1\.1\.1\.1 FAILED/);
    expect(r.observation).not.toMatch(/CONNECTED/);
    expect(connections).toBe(0);
  }, 20_000);

  it('hidden answers, the grader and the task directory cannot be read', async () => {
    const targets = [
      path.join(fx.task.privateDir, 'answers.csv'),
      fx.task.privateDir,
      path.join(fx.task.dir, 'grade.py'),
      fx.task.dir,
      store.dir,
    ];
    const code = [
      'import os, json',
      `for p in ${JSON.stringify(targets)}:`,
      '    try:',
      '        data = os.listdir(p) if os.path.isdir(p) else open(p).read()',
      '        print("READ", p, len(data))',
      '    except OSError as e:',
      '        print("DENIED", p, type(e).__name__)',
    ].join('\n');
    const r = await runAgentCode('peek.py', code);
    expect(r.outcome).toBe('ok');
    expect(r.observation).not.toMatch(/READ/);
    for (const t of targets) expect(r.observation).toContain(`DENIED ${t}`);
    // Host-side actions cannot reach them either.
    const read = await ep.step(respond('Read File', { file_name: path.relative(ep.workspace, path.join(fx.task.privateDir, 'answers.csv')) }));
    expect(read.outcome).toBe('action-error');
    expect(read.observation).toMatch(/^EnvError: .*leaves the workspace/);
  }, 20_000);

  it('nothing outside the workspace can be written', async () => {
    const targets = [
      path.join(fx.task.publicDir, 'train.csv'),
      path.join(fx.task.publicDir, 'new.csv'),
      path.join(fx.task.privateDir, 'answers.csv'),
      path.join(fx.task.dir, 'grade.py'),
      path.join(store.dir, 'states', 'evil.json'),
      '/etc/mlagent-escape',
    ];
    // The sandbox's /tmp is its own tmpfs, so writing under the host's /tmp may succeed in there; it never lands here.
    const hostTmp = path.join(fx.root, 'escape.txt');
    const code = [
      `for p in ${JSON.stringify([...targets, hostTmp])}:`,
      '    try:',
      '        open(p, "w").write("pwned")',
      '        print("WROTE", p)',
      '    except OSError as e:',
      '        print("DENIED", p, type(e).__name__)',
      'open("inside.txt", "w").write("fine")',
    ].join('\n');
    const r = await runAgentCode('escape.py', code);
    expect(r.outcome).toBe('ok');
    for (const t of targets) expect(r.observation).toContain(`DENIED ${t}`);
    expect(readFileSync(path.join(fx.task.publicDir, 'train.csv'), 'utf8')).toBe('id,x,y\n0,1,2\n1,2,4\n');
    expect(readFileSync(path.join(fx.task.privateDir, 'answers.csv'), 'utf8')).toBe('id,y\n0,1\n1,1\n2,1\n3,1\n');
    for (const t of [path.join(fx.task.publicDir, 'new.csv'), path.join(store.dir, 'states', 'evil.json'), hostTmp, '/etc/mlagent-escape']) {
      expect(existsSync(t)).toBe(false);
    }
    expect(readFileSync(path.join(ep.workspace, 'inside.txt'), 'utf8')).toBe('fine');
  }, 20_000);

  it('filling the disk is stopped at the workspace limit, and what the script added is removed', async () => {
    // Endless 8 MiB files in a new directory and beside the workspace's own files; inside.txt (from above) must stay.
    const code = [
      'import os',
      'os.makedirs("out/deeper", exist_ok=True)',
      'print("writing", flush=True)',
      'i = 0',
      'while True:',
      '    with open(f"out/deeper/blob{i}.bin" if i % 2 else f"blob{i}.bin", "wb") as f:',
      '        f.write(os.urandom(8 * 2**20))',
      '    i += 1',
    ].join('\n');
    const r = await runAgentCode('fill.py', code);
    expect(r.outcome).toBe('resource-limit');
    expect(r.feedback.outcome).toBe('resource-limit');
    expect(r.observation).toMatch(/^EnvError: The run filled the workspace past its disk limit of 64 MiB; what it added to the workspace \(\d+ entries\) was removed.\nOutput before it stopped:\nwriting/);
    expect(r.durationSec).toBeLessThan(2.5); // stopped by the guard, not by the 3 s timeout
    expect(existsSync(path.join(ep.workspace, 'out'))).toBe(false);
    expect(existsSync(path.join(ep.workspace, 'blob0.bin'))).toBe(false);
    expect(readFileSync(path.join(ep.workspace, 'inside.txt'), 'utf8')).toBe('fine');
    expect(existsSync(path.join(ep.workspace, 'fill.py'))).toBe(true);
  }, 20_000);

  it('after all that the episode goes on, and the store restores its states intact', async () => {
    const r = await ep.step(respond('Execute Script', { script_name: 'train.py' }));
    expect(r.outcome).toBe('ok');
    expect(r.metric).toBe(1);
    const back = await Episode.start(fx.task, { store, workRoot: path.join(fx.root, 'ws'), fromSnapshot: r.snapshotId! });
    expect(readFileSync(path.join(back.workspace, 'inside.txt'), 'utf8')).toBe('fine');
    expect(back.stepIndex).toBe(ep.stepIndex);
    await back.close();
    const first = await Episode.start(fx.task, { store, workRoot: path.join(fx.root, 'ws'), fromSnapshot: startId });
    expect(first.stepIndex).toBe(0);
    expect(readFileSync(path.join(first.workspace, 'train.py'), 'utf8')).toBe(readFileSync(path.join(fx.task.envDir, 'train.py'), 'utf8'));
    await first.close();
    writeFileSync(path.join(ep.workspace, 'after.txt'), 'still writable');
  }, 20_000);
});
