// mlagent env serve: a built-in task's episode over HTTP from the running command, Ctrl-C closing it (its workspace
// gone, exit 0), and the argument errors.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bin, mlagent } from './run-cli.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'cli-env-serve-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function json(url: string, method = 'GET', body?: unknown): Promise<{ status: number; body: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const r = await fetch(url, { method, headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: r.status, body: await r.json() };
}

describe('mlagent env serve', () => {
  it('serves a built-in task until Ctrl-C, which closes the open episode and exits 0', async () => {
    const workRoot = path.join(tmp, 'ws');
    // TMPDIR moves the episodes' workspaces (os.tmpdir()/mlagent-ws) where the test can count them.
    const child = spawn(process.execPath, [bin, 'env', 'serve', '--port', '0', '--store', path.join(tmp, 'store'), '--reward', 'v2'], { env: { ...process.env, TMPDIR: workRoot } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c));
    child.stderr.on('data', (c: Buffer) => (stderr += c));
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    try {
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setInterval(() => {
          const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stdout);
          if (m) {
            clearInterval(timer);
            resolve(m[1]);
          }
        }, 50);
        void exited.then((code) => reject(new Error(`env serve exited ${code}: ${stderr}`)));
      });
      const tasks = (await json(`${url}/v1/tasks`)).body.tasks as { name: string; split: string }[];
      expect(tasks.map((t) => t.name)).toContain('house-prices');
      const ep = await json(`${url}/v1/episodes`, 'POST', { task: 'house-prices', maxSteps: 3 });
      expect(ep.status, JSON.stringify(ep.body)).toBe(201);
      const step = await json(`${url}/v1/episodes/${ep.body.id}/step`, 'POST', { response: 'Action: List Files\nAction Input: {"dir_path": "."}' });
      expect(step.body.result.observation).toContain('train.py');
      // --reward v2: a neutral step scores 0 (v1's 0.5).
      expect(step.body.reward).toEqual({ reward: 0, reason: 'neutral' });
      expect(readdirSync(path.join(workRoot, 'mlagent-ws'))).toHaveLength(1);
    } finally {
      child.kill('SIGINT');
    }
    expect(await exited, stderr).toBe(0);
    expect(stderr).toMatch(/env serve: SIGINT: finishing running steps, closing 1 open episodes/);
    expect(stderr).toMatch(/env serve: stopped\n$/);
    expect(readdirSync(path.join(workRoot, 'mlagent-ws'))).toEqual([]);
  }, 120_000);

  it('names bad arguments (exit 2) and a port it cannot take (exit 1)', async () => {
    for (const [args, message] of [
      [['--port', '70000'], /--port must be an integer from 0 to 65535, got '70000'/],
      [['--max-episodes', '0'], /--max-episodes must be an integer from 1/],
      [['--idle-timeout', 'soon'], /--idle-timeout must be a number of seconds > 0, got 'soon'/],
      [['--helper-url', 'http://x'], /--helper-url and --helper-model go together/],
      [['--task', 'house-prices'], /Unknown option '--task'/],
      [['--reward', 'v3'], /--reward must be v1, v2 or milestones, got 'v3'/],
      [['--host', '0.0.0.0'], /--host 0\.0\.0\.0 can be reached from other machines; set MLAGENT_ENV_TOKEN to a secret first/],
    ] as const) {
      const r = await mlagent('env', 'serve', ...args);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(message);
    }
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
      const port = (taken.address() as { port: number }).port;
      const r = await mlagent('env', 'serve', '--port', String(port), '--store', path.join(tmp, 'store'));
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`env serve: cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`));
    } finally {
      taken.close();
    }
  }, 60_000);
});
