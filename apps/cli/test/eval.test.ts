// mlagent eval: argument errors, the scripted expert on a real task (JSON and the Table-1 markdown), merging
// results with --compare, and a tiny random policy end to end.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadQwenConfig, planMemory } from '@mlagent/policy';
import { bin, mlagent, tinyModel } from './run-cli.js';

const dirs: string[] = [];
const newDir = () => {
  const d = mkdtempSync(path.join(tmpdir(), 'cli-eval-'));
  dirs.push(d);
  return d;
};
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe('mlagent eval', () => {
  it('names what is wrong with its arguments', async () => {
    const expectUsage = async (args: string[], message: RegExp) => {
      const r = await mlagent('eval', ...args);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(message);
    };
    await Promise.all(
      [
        [[], /give an agent \(--model DIR, --endpoint URL or --expert scripted\)/],
        [['--expert', 'scripted', '--endpoint', 'http://127.0.0.1:9', '--tasks', 'house-prices'], /give one agent, not --endpoint and --expert/],
        [['--expert', 'gpt', '--tasks', 'house-prices'], /--expert must be 'scripted'/],
        [['--endpoint', 'http://127.0.0.1:9', '--tasks', 'house-prices'], /needs --endpoint-model NAME/],
        [['--endpoint', 'localhost', '--endpoint-model', 'm', '--tasks', 'house-prices'], /is not a URL/],
        [['--adapter', '/x', '--expert', 'scripted'], /--adapter needs --model DIR/],
        [['--model', '/no/such/dir', '--tasks', 'house-prices'], /--model \/no\/such\/dir has no config\.json/],
        [['--expert', 'scripted', '--tasks', 'house-prices', '--trajectories', '0'], /--trajectories must be an integer >= 1, got '0'/],
        [['--expert', 'scripted', '--tasks', 'house-prices', '--time-budget', 'soon'], /--time-budget must be a number > 0, got 'soon'/],
        [['--expert', 'scripted', '--tasks', 'house-prices', '--temperature=-1'], /--temperature must be a number >= 0/],
        [['--expert', 'scripted', '--tasks', 'house-prices', '--max-prompt-tokens', '0'], /--max-prompt-tokens must be an integer >= 1, got '0'/],
        [['--expert', 'scripted', '--tasks', 'house-prices', '--concurrency', 'all'], /--concurrency must be an integer >= 1, got 'all'/],
        [['--expert', 'scripted', '--tasks', 'house-prices', '--memory-budget', 'lots'], /--memory-budget must be a number in \[[\d.e-]+, [\d.e+]+\], got 'lots'/],
        [['--expert', 'scripted', '--tasks', 'no-such-task'], /cannot load task 'no-such-task'/],
        [['--compare', '/no/such/eval.json'], /cannot read \/no\/such\/eval\.json.*\(--compare\)/],
      ].map(([args, message]) => expectUsage(args as string[], message as RegExp)),
    );
  }, 60_000);

  it('checks an endpoint before preparing any task: a refused model or a dead server fails in seconds (exit 1)', async () => {
    // A server that knows no model: every chat request gets 404, which is not retried.
    const server = createServer((req, res) => req.resume().on('end', () => res.writeHead(404).end('{"error": "model m not found"}')));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
      for (const [endpoint, message] of [
        [url, /endpoint does not answer for model m: .*HTTP 404 \(not retried\).*model m not found/],
        ['http://127.0.0.1:9/v1', /endpoint does not answer for model m: gave up after 3 attempts/],
      ] as const) {
        const out = path.join(newDir(), 'out');
        const r = await mlagent('eval', '--endpoint', endpoint, '--endpoint-model', 'm', '--tasks', 'house-prices', '--out', out);
        expect(r.code, r.stderr).toBe(1);
        expect(r.stderr).toMatch(message);
        expect(r.stderr).not.toMatch(/preparing|\n\s+at /);
        expect(existsSync(out)).toBe(false);
      }
    } finally {
      server.close();
    }
  }, 60_000);

  it('evaluates the scripted expert, prints JSON or the Table-1 markdown, and merges results', async () => {
    const out = newDir();
    const r = await mlagent('eval', '--expert', 'scripted', '--tasks', 'house-prices', '--trajectories', '1', '--max-steps', '5', '--ideas', '3', '--out', out, '--json');
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout);
    expect(result.format).toBe('mlagent-eval');
    expect(result.rows).toHaveLength(1);
    expect(result.rows[0]).toMatchObject({ task: 'house-prices', agent: 'scripted', trajectories: 1, submitted: 1, formatErrorRate: 0 });
    expect(result.trajectories[0].steps).toBeLessThanOrEqual(5);
    expect(JSON.parse(readFileSync(path.join(out, 'eval.json'), 'utf8'))).toEqual(result);
    expect(readFileSync(path.join(out, 'eval.md'), 'utf8')).toMatch(/^\| Task \| Metric \| Baseline \| scripted \(avg \/ best\) \|\n/);
    expect(existsSync(path.join(out, 'eval-steps.jsonl'))).toBe(true);
    expect(r.stderr).toMatch(/eval scripted \[/); // the progress bar

    // An --out that is a file is refused before any task is prepared.
    const fileOut = path.join(out, 'eval.md');
    const asFile = await mlagent('eval', '--expert', 'scripted', '--tasks', 'house-prices', '--out', fileOut);
    expect(asFile.code).toBe(2);
    expect(asFile.stderr.trim()).toBe(`mlagent eval: --out ${fileOut} is a file, not a directory`);

    // Running again into the same directory is refused: the first result stays.
    const again = await mlagent('eval', '--expert', 'scripted', '--tasks', 'house-prices', '--trajectories', '1', '--max-steps', '2', '--out', out);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/eval\.json already exists/);
    const resumeArgs = ['eval', '--expert', 'scripted', '--tasks', 'house-prices', '--trajectories', '1', '--max-steps', '5', '--ideas', '3', '--out', out];
    const finished = await mlagent(...resumeArgs, '--resume');
    expect(finished.code).toBe(2);
    expect(finished.stderr).toMatch(/holds a finished evaluation \(eval\.json\); nothing to resume/);
    expect((await mlagent(...resumeArgs, '--resume', '--force')).stderr).toMatch(/--force starts over and --resume continues; give one/);
    // As a run killed before its trajectory ended leaves it: no eval.json, no trajectory recorded.
    rmSync(path.join(out, 'eval.json'));
    writeFileSync(path.join(out, 'eval-trajectories.jsonl'), '');
    const unfinished = await mlagent(...resumeArgs);
    expect(unfinished.code).toBe(2);
    expect(unfinished.stderr).toMatch(/holds an unfinished evaluation; --resume continues it, --force starts over/);
    const resumed = await mlagent(...resumeArgs, '--resume', '--json');
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(JSON.parse(resumed.stdout).trajectories).toHaveLength(1);
    expect(existsSync(path.join(out, 'eval.json'))).toBe(true);

    // Two results merged into one table: a column per agent (the second renamed), and a merged eval.json.
    const merged = newDir();
    const m = await mlagent('eval', '--compare', path.join(out, 'eval.json'), '--compare', path.join(out, 'eval.json'), '--out', merged);
    expect(m.code, m.stderr).toBe(0);
    const cell = `${result.rows[0].avg >= 1000 ? Math.round(result.rows[0].avg) : result.rows[0].avg.toPrecision(4)}`;
    expect(m.stdout.split('\n')[0]).toBe('| Task | Metric | Baseline | scripted (avg / best) | scripted (2) (avg / best) |');
    expect(m.stdout).toContain(`| house-prices | MAE ↓ | 3555 | **${cell}** / `); // a tie: both in bold
    expect(JSON.parse(readFileSync(path.join(merged, 'eval.json'), 'utf8')).agents.map((a: { name: string }) => a.name)).toEqual(['scripted', 'scripted (2)']);
  }, 90_000);

  it('is killed (SIGKILL) after its first trajectory, and --resume keeps that one and runs the rest', async () => {
    const out = path.join(newDir(), 'out');
    const args = ['eval', '--expert', 'scripted', '--tasks', 'house-prices', '--trajectories', '3', '--max-steps', '4', '--ideas', '3', '--out', out];
    const records = () => (existsSync(path.join(out, 'eval-trajectories.jsonl')) ? readFileSync(path.join(out, 'eval-trajectories.jsonl'), 'utf8').split('\n').filter((l) => l.trim() !== '') : []);
    // Killed as soon as one trajectory's record is on disk.
    const child = spawn(process.execPath, [bin, ...args], { stdio: 'ignore' });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    for (let i = 0; i < 600 && records().length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    const first = records().map((l) => JSON.parse(l) as { task: string; index: number });
    expect(first.length).toBeGreaterThanOrEqual(1);
    expect(existsSync(path.join(out, 'eval.json'))).toBe(false);

    const r = await mlagent(...args, '--resume', '--json');
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as { trajectories: { task: string; index: number }[] };
    expect(result.trajectories.map((t) => t.index)).toEqual([0, 1, 2]);
    // What finished before the kill is kept as it was.
    for (const f of first) expect(result.trajectories.find((t) => t.index === f.index)).toEqual(f);
    expect(r.stderr).toMatch(/eval scripted \(\+\d done before\)/);
  }, 120_000);

  it('runs a tiny random policy: its answers are format errors, so it scores the baseline', async () => {
    const { tmp, model } = await tinyModel('qwen2', 1);
    dirs.push(tmp);
    const out = path.join(tmp, 'eval');
    const r = await mlagent('eval', '--model', model, '--tasks', 'house-prices', '--trajectories', '2', '--concurrency', '2', '--max-steps', '1', '--max-new-tokens', '2', '--temperature', '1', '--out', out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.split('\n')[2]).toBe('| house-prices | MAE ↓ | 3555 | 3555 / 3555 |');
    expect(r.stdout).toMatch(/\| house-prices \| policy:tiny \| 0\.0% \| 0\.0% \| 0\.0% \| 100\.0% \| 1\.0 \| 0\/2 \|/);
    const json = JSON.parse(readFileSync(path.join(out, 'eval.json'), 'utf8'));
    expect(json.agents[0]).toMatchObject({ name: 'policy:tiny', kind: 'policy', temperature: 1, detail: model });
    expect(json.agents[0].notes).toMatch(/^2 responses/);
    expect(r.stderr).toMatch(/the device reports no memory size, so each round generates in one call/);
  }, 90_000);

  it("sizes the policy's generate() calls by --memory-budget, and refuses a prompt no call fits before any task runs", async () => {
    const { tmp, model } = await tinyModel('qwen2', 1);
    dirs.push(tmp);
    // Prompts cut to their last 40 tokens: every call plans 40 + 2 tokens a sequence.
    const need = (batch: number) =>
      planMemory(loadQwenConfig(model), { batch, seqLen: 42, kvCache: true, dtype: 'f32', headKernel: 'cpu', packedWeights: true, maxBinding: 128 * 2 ** 20 }).total;
    // No --concurrency: the policy runs all 3 trajectories at once, one batched generation a round.
    const args = ['--model', model, '--tasks', 'house-prices', '--trajectories', '3', '--max-steps', '1', '--max-new-tokens', '2', '--max-prompt-tokens', '40'];
    const gib = (bytes: number) => String(bytes / 2 ** 30);

    const out = path.join(tmp, 'eval');
    const r = await mlagent('eval', ...args, '--memory-budget', gib((need(1) + need(2)) / 2), '--out', out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/eval: generating 1 of a round's 3 prompts a call \(prompts up to 40 tokens; /);
    const json = JSON.parse(readFileSync(path.join(out, 'eval.json'), 'utf8'));
    expect(json.agents[0].notes).toMatch(/^3 responses, .* 3 prompts cut to the 42-token context/);

    const refused = path.join(tmp, 'refused');
    const small = await mlagent('eval', ...args, '--memory-budget', gib(need(1) * 0.9), '--out', refused);
    expect(small.code, small.stderr).toBe(2);
    expect(small.stderr).toMatch(/one generate\(\) of 42 tokens needs about [\d.]+ [KM]iB of GPU memory, but the budget is [\d.]+ [KM]iB\.\n {2}--max-prompt-tokens \(prompts keep their end\), --max-new-tokens \(now 2\), --dtype \(now f32\)/);
    expect(small.stderr).not.toMatch(/preparing/);
    expect(existsSync(refused)).toBe(false);
  }, 90_000);

  it("refuses a --resume with other policy settings (--max-new-tokens, --prompt-format, --max-prompt-tokens), naming them", async () => {
    const { tmp, model } = await tinyModel('qwen2', 1);
    dirs.push(tmp);
    const out = path.join(tmp, 'eval');
    const argsWith = (maxNewTokens: string) => ['eval', '--model', model, '--tasks', 'house-prices', '--trajectories', '2', '--max-steps', '1', '--max-new-tokens', maxNewTokens, '--out', out];
    const args = argsWith('2');
    expect((await mlagent(...args)).code).toBe(0);
    // As a run killed before its trajectories ended leaves it.
    rmSync(path.join(out, 'eval.json'));
    writeFileSync(path.join(out, 'eval-trajectories.jsonl'), '');
    const run = JSON.parse(readFileSync(path.join(out, 'eval-run.json'), 'utf8'));
    expect(run.settings).toMatchObject({ dtype: 'f32', promptFormat: 'messages', maxNewTokens: 2, maxPromptTokens: 32766 });

    const other = await mlagent(...argsWith('3'), '--prompt-format', 'prompt', '--resume');
    expect(other.code, other.stderr).toBe(2);
    expect(other.stderr).toMatch(/mlagent eval: \S+ holds an evaluation with another promptFormat \("messages" there, "prompt" now\), maxNewTokens \(2 there, 3 now\), maxPromptTokens \(32766 there, 32765 now\); resume it as it was/);
    const shorter = await mlagent(...args, '--max-prompt-tokens', '40', '--resume');
    expect(shorter.code, shorter.stderr).toBe(2);
    expect(shorter.stderr).toMatch(/holds an evaluation with another maxPromptTokens \(32766 there, 40 now\);/);
    const same = await mlagent(...args, '--resume');
    expect(same.code, same.stderr).toBe(0);
  }, 120_000);

  /** Runs `mlagent eval ...args`, sends one SIGINT once its first step is on disk, and waits for its exit. */
  async function interruptAfterFirstStep(out: string, args: string[]) {
    const child = spawn(process.execPath, [bin, 'eval', ...args, '--out', out], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    const steps = path.join(out, 'eval-steps.jsonl');
    while (child.exitCode === null && !(existsSync(steps) && readFileSync(steps, 'utf8').length > 0)) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGINT');
    return { code: await exited, stderr };
  }

  it('Ctrl-C with every trajectory running (the default): they finish, and the evaluation is a success', async () => {
    const { tmp, model } = await tinyModel('qwen2', 1);
    dirs.push(tmp);
    const out = path.join(tmp, 'eval');
    const r = await interruptAfterFirstStep(out, ['--model', model, '--tasks', 'house-prices', '--trajectories', '2', '--max-steps', '40', '--max-new-tokens', '2']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/eval: every trajectory is running, so this finishes the evaluation \(Ctrl-C again to quit now/);
    expect(r.stderr).not.toMatch(/interrupted|--resume --out/);
    expect(JSON.parse(readFileSync(path.join(out, 'eval.json'), 'utf8')).trajectories).toHaveLength(2);
  }, 120_000);

  it('Ctrl-C that leaves trajectories unstarted exits 130, and --resume runs them', async () => {
    const { tmp, model } = await tinyModel('qwen2', 1);
    dirs.push(tmp);
    const out = path.join(tmp, 'eval');
    const args = ['--model', model, '--tasks', 'house-prices', '--trajectories', '2', '--max-steps', '40', '--max-new-tokens', '2', '--concurrency', '1'];
    const r = await interruptAfterFirstStep(out, args);
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toMatch(/eval: finishing the running trajectories \(Ctrl-C again to quit now/);
    expect(r.stderr).toMatch(new RegExp(`\\nmlagent eval: interrupted after 1 of 2 trajectories; --resume --out ${out} continues\\n$`));
    const resumed = await mlagent('eval', ...args, '--out', out, '--resume');
    expect(resumed.code, resumed.stderr).toBe(0);
  }, 120_000);
});
