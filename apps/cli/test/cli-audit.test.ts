// Findings of an audit of the CLI's argument handling: values that were silently taken (an empty --seed as 0, an
// empty --out as the current directory, an empty --host as every interface), crashes with a stack trace, and an
// --out whose files collect would have rewritten or deleted. Each is refused before any model or task loads.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { removeTree } from '@mlagent/env';
import { afterAll, describe, expect, it } from 'vitest';
import { bin, tinyModel } from './run-cli.js';

const home = mkdtempSync(path.join(tmpdir(), 'mlagent-cli-audit-'));
const tmps: string[] = [home];
afterAll(() => tmps.forEach((d) => removeTree(d)));

/**
 * Runs the built CLI with its own MLAGENT_HOME. A command that should have been refused at once but runs on (a
 * worker, a server, a collection) is killed after `timeoutMs` and reads as code null.
 */
function run(args: string[], { cwd, timeoutMs = 30_000 }: { cwd?: string; timeoutMs?: number } = {}): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { encoding: 'utf8', cwd, timeout: timeoutMs, killSignal: 'SIGKILL', env: { ...process.env, MLAGENT_HOME: home } }, (error, _stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stderr });
    });
  });
}

function expectUsageLine(r: { code: number | null; stderr: string }, message: RegExp): void {
  expect(r.code, r.stderr).toBe(2);
  expect(r.stderr).toMatch(message);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

function tmp(prefix: string): string {
  const d = mkdtempSync(path.join(tmpdir(), `mlagent-cli-audit-${prefix}-`));
  tmps.push(d);
  return d;
}

describe('mlagent CLI audit', () => {
  it('train: an empty --out is refused instead of making the current directory the run directory', async () => {
    const cwd = tmp('train-cwd');
    const r = await run(['train', '--preset', 'tiny', '--out', ''], { cwd, timeoutMs: 20_000 });
    expectUsageLine(r, /^mlagent train: --out must name a directory, got an empty string\n$/);
    expect(readdirSync(cwd)).toEqual([]);
  });

  it('train: a run directory another live process writes to is refused in one line, not a stack trace', async () => {
    const out = tmp('train-locked');
    // A lock in the old pid-only form, naming this (live) test process.
    writeFileSync(path.join(out, '.lock'), String(process.pid));
    const r = await run(['train', '--preset', 'tiny', '--out', out, '--resume'], { timeoutMs: 30_000 });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`mlagent train: another run (pid ${process.pid}) is writing to ${out} (if none is, delete ${path.join(out, '.lock')})\n`);
  });

  it('worker: an empty --queue, --store, --work-root or --name is a usage error, not a stack trace or a silent default', async () => {
    for (const flag of ['queue', 'store', 'work-root', 'name']) {
      const r = await run(['worker', '--redis', 'redis://127.0.0.1:1', `--${flag}`, ''], { timeoutMs: 8_000 });
      expectUsageLine(r, new RegExp(`^mlagent worker: --${flag} must not be empty\\n$`));
    }
  });

  it('worker: a timer option longer than a Node timer holds is refused (it would fire after 1 ms)', async () => {
    const cases = [
      ['--job-timeout', '2147484', /--job-timeout must be an integer in \[1, 2147483\], got '2147484'/],
      ['--lock-ms', '2147483648', /--lock-ms must be an integer in \[100, 2147483647\], got '2147483648'/],
      ['--stalled-interval-ms', '2147483648', /--stalled-interval-ms must be an integer in \[100, 2147483647\]/],
    ] as const;
    for (const [flag, value, message] of cases) {
      expectUsageLine(await run(['worker', '--redis', 'redis://127.0.0.1:1', flag, value], { timeoutMs: 8_000 }), message);
    }
  });

  it('worker: an empty --max-stalled is refused, not read as 0', async () => {
    const r = await run(['worker', '--redis', 'redis://127.0.0.1:1', '--max-stalled', ''], { timeoutMs: 8_000 });
    expectUsageLine(r, /^mlagent worker: --max-stalled must be an integer >= 0, got ''\n$/);
  });

  it('collect: an empty --seed is refused, not read as seed 0', async () => {
    const out = path.join(tmp('collect-seed'), 'c');
    const r = await run(['collect', '--tasks', 'house-prices', '--expert', 'scripted', '--trajectories', '1', '--ideas', '1', '--out', out, '--seed', ''], { timeoutMs: 20_000 });
    expectUsageLine(r, /^mlagent collect: --seed must be an integer >= 0, got ''\n$/);
    expect(existsSync(out)).toBe(false);
  });

  it("collect: an --out that holds other files and no collection is refused, leaving its work/ and files alone", async () => {
    const out = tmp('collect-out');
    writeFileSync(path.join(out, 'steps.jsonl'), 'my own notes\n');
    mkdirSync(path.join(out, 'work'));
    writeFileSync(path.join(out, 'work', 'keep.txt'), 'keep\n');
    const r = await run(['collect', '--tasks', 'house-prices', '--expert', 'scripted', '--trajectories', '1', '--ideas', '1', '--out', out], { timeoutMs: 20_000 });
    expectUsageLine(r, /^mlagent collect: --out .* is not empty \(.*steps\.jsonl.*\) and holds no collection \(collection\.json\); choose a new directory\n$/);
    expect(existsSync(path.join(out, 'work', 'keep.txt'))).toBe(true);
    expect(readdirSync(out).sort()).toEqual(['steps.jsonl', 'work']);
  });

  it('tasks baseline: an empty --seed is refused, not read as seed 0', async () => {
    const r = await run(['tasks', 'baseline', 'house-prices', '--seed', ''], { timeoutMs: 30_000 });
    expectUsageLine(r, /^mlagent tasks baseline: --seed must be an integer in \[0, 4294967295\], got ''\n$/);
    // numpy refuses seeds of 2^32 and more, so the run would fail inside prepare.py.
    const big = await run(['tasks', 'baseline', 'house-prices', '--seed', '4294967296'], { timeoutMs: 30_000 });
    expectUsageLine(big, /^mlagent tasks baseline: --seed must be an integer in \[0, 4294967295\], got '4294967296'\n$/);
  });

  it('init-model: an empty --seed is refused, not read as seed 0', async () => {
    const out = path.join(tmp('init-seed'), 'm');
    const r = await run(['init-model', '--arch', 'qwen2', '--out', out, '--seed', '']);
    expectUsageLine(r, /^mlagent init-model: --seed must be an integer in \[0, 4294967295\], got ''\n$/);
    expect(existsSync(out)).toBe(false);
  });

  it('env run: an empty --store is a usage error, not a TypeError with its stack', async () => {
    const responses = path.join(tmp('env-store'), 'r.jsonl');
    writeFileSync(responses, `${JSON.stringify({ response: 'Action: List Files\nAction Input: {"dir_path": "."}' })}\n`);
    const r = await run(['env', 'run', '--task', 'house-prices', '--responses', responses, '--store', '']);
    expectUsageLine(r, /^mlagent env: --store must name a directory, got an empty string\n$/);
  });

  it('serve: an empty --host is refused before the model loads, where Node would listen on every interface', async () => {
    const { tmp: dir, model } = await tinyModel('qwen2', 7);
    tmps.push(dir);
    const r = await run(['serve', '--model', model, '--port', '0', '--host', ''], { timeoutMs: 20_000 });
    expectUsageLine(r, /^mlagent serve: --host must name an address \(default 127\.0\.0\.1\), got an empty string\n$/);
  });

  it("report: an --out naming the run's own metrics.jsonl (or any file that is not a page) is refused, the file kept", async () => {
    const dir = tmp('report-out');
    const metrics = path.join(dir, 'metrics.jsonl');
    const line = `${JSON.stringify({ step: 1, reward: 0.5 })}\n`;
    writeFileSync(metrics, line);
    const r = await run(['report', dir, '--out', metrics]);
    expectUsageLine(r, /^mlagent report: --out .*metrics\.jsonl exists and is not an \.html page, and the report would replace it; choose another name\n$/);
    expect(readFileSync(metrics, 'utf8')).toBe(line);
    expectUsageLine(await run(['report', dir, '--out', dir]), /^mlagent report: --out .* is a directory; name the HTML file to write\n$/);
    // A page of an earlier run is replaced, as without --out.
    writeFileSync(path.join(dir, 'old.html'), '<p>old</p>');
    const again = await run(['report', dir, '--out', path.join(dir, 'old.html')]);
    expect(again.code, again.stderr).toBe(0);
    expect(readFileSync(path.join(dir, 'old.html'), 'utf8')).toMatch(/^<!doctype html>/i);
  });

  it('bench kernels|policy: an --out in a missing directory, or naming a directory, is refused before any case runs', async () => {
    const dir = tmp('bench-out');
    for (const sub of [['kernels', '--no-torch'], ['policy', '--no-torch']]) {
      expectUsageLine(await run(['bench', ...sub, '--out', path.join(dir, 'missing', 'b.md')]), /^mlagent bench (kernels|policy): --out .*b\.md: the directory .*missing does not exist\n$/);
      expectUsageLine(await run(['bench', ...sub, '--out', dir]), /^mlagent bench (kernels|policy): --out .* is a directory, not a file\n$/);
    }
  });

  it('env, collect, worker: a --helper-url that is not an http(s) URL is refused at once, not at the first helper action', async () => {
    const responses = path.join(tmp('helper-url'), 'r.jsonl');
    writeFileSync(responses, `${JSON.stringify({ response: 'Action: List Files\nAction Input: {"dir_path": "."}' })}\n`);
    const helper = ['--helper-url', 'localhost:8000', '--helper-model', 'm'];
    for (const [args, command] of [
      [['env', 'run', '--task', 'house-prices', '--responses', responses, ...helper], 'env'],
      [['env', 'serve', '--port', '0', ...helper], 'env serve'],
      [['collect', '--tasks', 'house-prices', '--expert', 'scripted', '--trajectories', '1', '--ideas', '2', '--out', path.join(tmp('helper-collect'), 'c'), ...helper], 'collect'],
      [['worker', '--redis', 'redis://127.0.0.1:1', ...helper], 'worker'],
    ] as const) {
      expectUsageLine(await run([...args]), new RegExp(`^mlagent ${command}: --helper-url must be an http\\(s\\) URL, got 'localhost:8000'\n$`));
    }
  });
});
