// mlagent eval with several --adapter DIRs (and --with-base) on one model load: each policy's results match an
// evaluation of that policy alone, the merged table names each, --resume reuses what finished, and bad
// combinations are usage errors before any model loads.
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writePeftAdapter } from './peft-adapter.js';
import { mlagent, tinyModel } from './run-cli.js';

let tmp: string;
let model: string;
let sft: string;
let ppo: string;

beforeAll(async () => {
  ({ tmp, model } = await tinyModel('qwen2', 3));
  // Laid out as a training run keeps them: both directories are named 'adapter'.
  sft = writePeftAdapter(path.join(tmp, 'run', 'sft', 'adapter'), model, 11);
  ppo = writePeftAdapter(path.join(tmp, 'run', 'ppo', 'adapter'), model, 12);
}, 120_000);

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// Greedy, so a policy gives the same responses in any run: what each adapter changes is visible in them.
const SETTINGS = ['--tasks', 'house-prices', '--trajectories', '2', '--max-steps', '2', '--max-new-tokens', '6', '--temperature', '0'];

interface StepLine {
  agent: string;
  trajectory: string;
  step: number;
  response: string;
}
const steps = (dir: string): StepLine[] =>
  readFileSync(path.join(dir, 'eval-steps.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as StepLine);
const responses = (dir: string) => steps(dir).map((s) => `${s.trajectory}#${s.step}: ${s.response}`);

describe('mlagent eval --adapter DIR --adapter DIR [--with-base]', () => {
  it('evaluates each policy on one model load as it would alone, into a subdirectory each, and merges the table', async () => {
    const out = path.join(tmp, 'several');
    const r = await mlagent('eval', '--model', model, '--adapter', sft, '--adapter', ppo, '--with-base', ...SETTINGS, '--out', out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr.match(/^loaded /gm)).toHaveLength(1);
    expect(r.stderr).toMatch(/eval: sft\/adapter: LoRA r=4 from .*sft\/adapter\n/);
    expect(r.stderr).toMatch(/eval: ppo\/adapter \(3 of 3\) into .*several\/ppo-adapter\n/);
    const merged = JSON.parse(readFileSync(path.join(out, 'eval.json'), 'utf8')) as { agents: { name: string; detail: string }[] };
    expect(merged.agents.map((a) => a.name)).toEqual(['policy:tiny', 'policy:tiny+sft/adapter', 'policy:tiny+ppo/adapter']);
    expect(merged.agents[2].detail).toBe(`${model} + ${ppo}`);
    expect(r.stdout.split('\n')[0]).toBe('| Task | Metric | Baseline | policy:tiny (avg / best) | policy:tiny+sft/adapter (avg / best) | policy:tiny+ppo/adapter (avg / best) |');
    expect(readFileSync(path.join(out, 'eval.md'), 'utf8')).toBe(`${r.stdout.trimEnd()}\n`);

    // Each subdirectory holds what that policy gives evaluated alone: the adapters were swapped, not stacked or
    // left out.
    const alone = async (name: string, ...adapter: string[]) => {
      const dir = path.join(tmp, `alone-${name}`);
      const a = await mlagent('eval', '--model', model, ...adapter, ...SETTINGS, '--out', dir);
      expect(a.code, a.stderr).toBe(0);
      return responses(dir);
    };
    const base = await alone('base');
    expect(responses(path.join(out, 'base'))).toEqual(base);
    const withSft = await alone('sft', '--adapter', sft);
    expect(responses(path.join(out, 'sft-adapter'))).toEqual(withSft);
    expect(responses(path.join(out, 'ppo-adapter'))).toEqual(await alone('ppo', '--adapter', ppo));
    expect(withSft).not.toEqual(base);
    expect(responses(path.join(out, 'ppo-adapter'))).not.toEqual(withSft);

    // --resume over finished evaluations reuses them; one whose directory is gone runs again, alone.
    const before = readFileSync(path.join(out, 'sft-adapter', 'eval-steps.jsonl'), 'utf8');
    rmSync(path.join(out, 'base'), { recursive: true });
    const again = await mlagent('eval', '--model', model, '--adapter', sft, '--adapter', ppo, '--with-base', ...SETTINGS, '--out', out, '--resume');
    expect(again.code, again.stderr).toBe(0);
    expect(readFileSync(path.join(out, 'sft-adapter', 'eval-steps.jsonl'), 'utf8')).toBe(before);
    expect(responses(path.join(out, 'base'))).toEqual(base);
    expect(again.stdout).toBe(r.stdout);
    // Without --resume or --force, finished results are not replaced.
    const refused = await mlagent('eval', '--model', model, '--adapter', sft, '--adapter', ppo, ...SETTINGS, '--out', out);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/sft-adapter\/eval\.json already exists; use another --out \(or --force to replace it\)/);
  }, 240_000);

  it("takes the policy's prompt settings from --config's ppo section, as mlagent train evaluates, unless given", async () => {
    const config = path.join(tmp, 'train-config.json');
    writeFileSync(config, JSON.stringify({ ppo: { compactPrompts: true, maxNewTokens: 5, historyWindow: 1, maxObservationChars: 300 } }));
    const args = ['--model', model, '--adapter', sft, '--tasks', 'house-prices', '--trajectories', '1', '--max-steps', '2', '--config', config];
    const settings = async (out: string, ...extra: string[]) => {
      const r = await mlagent('eval', ...args, ...extra, '--out', out);
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(readFileSync(path.join(out, 'eval-run.json'), 'utf8')).settings as Record<string, unknown>;
    };
    expect(await settings(path.join(tmp, 'from-config'))).toMatchObject({ promptFormat: 'compact', maxNewTokens: 5, historyWindow: 1, maxObservationChars: 300 });
    expect(await settings(path.join(tmp, 'given'), '--prompt-format', 'messages', '--max-new-tokens', '3')).toMatchObject({ promptFormat: 'messages', maxNewTokens: 3, historyWindow: 1 });
  }, 120_000);

  it('refuses bad combinations before loading the model', async () => {
    const out = path.join(tmp, 'refused');
    const cases: [string[], RegExp][] = [
      [['--adapter', sft, '--adapter', `${sft}/.`], /--adapter .*sft\/adapter\/\. is given twice/],
      [['--with-base'], /--with-base evaluates the base model beside --model DIR with --adapter DIRs/],
      [['--adapter', sft, '--adapter', ppo, '--name', 'mine'], /--name names one agent; with several adapters each is named policy:MODEL\+LABEL \(sft\/adapter, ppo\/adapter\)/],
      [['--adapter', sft, '--adapter', model], /--adapter .*tiny has no adapter_config\.json/],
    ];
    for (const [args, message] of cases) {
      const r = await mlagent('eval', '--model', model, ...args, ...SETTINGS, '--out', out);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toMatch(/^loaded /m);
    }
    expect(existsSync(out)).toBe(false);
  }, 60_000);
});
