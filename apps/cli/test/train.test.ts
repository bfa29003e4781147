import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { initModel } from '@mlagent/policy';
import { bin, mlagent } from './run-cli.js';

// Usage errors of `mlagent train` (exit 2, a message naming what is wrong, no stack trace), and its exit after a
// Ctrl-C. The pipeline itself runs in packages/rl's tests (the loop) and in the documented main-job run
// (docs/TRAINING.md).
const tmp = mkdtempSync(join(tmpdir(), 'mlagent-cli-train-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('mlagent train', () => {
  it('needs --preset or --config', async () => {
    const r = await mlagent('train', '--out', join(tmp, 'a'));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/train: give --preset tiny or --config FILE/);
  });

  it('refuses unknown presets and options', async () => {
    const a = await mlagent('train', '--preset', 'huge');
    expect(a.code).toBe(2);
    expect(a.stderr).toMatch(/--preset must be default or tiny, got 'huge'/);
    const b = await mlagent('train', '--preset', 'tiny', '--iterations', '3');
    expect(b.code).toBe(2);
    expect(b.stderr).toMatch(/train: .*--iterations/);
    const c = await mlagent('train', '--preset', 'tiny', '--model-preset', 'big');
    expect(c.code).toBe(2);
    expect(c.stderr).toMatch(/--model-preset must be tiny, mini or small/);
  });

  it('refuses a directory that already holds a run unless --resume', async () => {
    const dir = join(tmp, 'taken');
    mkdirSync(dir);
    writeFileSync(join(dir, 'train-config.json'), '{}');
    const r = await mlagent('train', '--preset', 'tiny', '--out', dir);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/already holds a run; pass --resume/);
  });

  it('reports every bad config field at once, before any stage runs', async () => {
    const file = join(tmp, 'bad.yaml');
    writeFileSync(file, 'preset: tiny\nppo:\n  historyWindow: -1\n  poolSampling: random\n  clipRatio: 2\n');
    const r = await mlagent('train', '--config', file, '--out', join(tmp, 'b'));
    expect(r.code).toBe(2);
    for (const field of ['ppo.historyWindow', 'ppo.poolSampling', 'ppo.clipRatio']) expect(r.stderr).toContain(field);
    expect(r.stderr).not.toMatch(/at .*\.js:\d+/);
  });

  it("checks the config's model before the collection, leaving no run directory behind", async () => {
    const model = join(tmp, 'half-model');
    mkdirSync(model);
    // A Qwen2 config but no tokenizer or weights.
    writeFileSync(join(model, 'config.json'), JSON.stringify({ architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', hidden_size: 64, intermediate_size: 128, num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 1000, max_position_embeddings: 512, rms_norm_eps: 1e-6, rope_theta: 10000, tie_word_embeddings: false }));
    const file = join(tmp, 'model.yaml');
    writeFileSync(file, `model: ${model}\n`);
    const out = join(tmp, 'c');
    const r = await mlagent('train', '--config', file, '--out', out);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/half-model\/tokenizer\.json not found/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.stderr).not.toMatch(/collect/);
    expect(existsSync(out)).toBe(false);
  });

  it('--memory-budget: SFT that cannot fit is refused before the collection (train) and before loading (sft)', async () => {
    const model = join(tmp, 'tiny-model');
    initModel({ arch: 'qwen2', preset: 'tiny', outDir: model, seed: 0 }); // f32 weights of ~80 MiB
    const file = join(tmp, 'tiny-model.yaml');
    writeFileSync(file, `preset: tiny
model: ${model}
`);
    const out = join(tmp, 'd');
    const bad = await mlagent('train', '--config', file, '--out', out, '--memory-budget', '0');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/train: --memory-budget must be a number in \[0\.001, /);
    const r = await mlagent('train', '--config', file, '--out', out, '--memory-budget', '0.05');
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/sft: a micro-batch of 4 x 1024 tokens needs about [\d.]+ MiB of GPU memory: this will not fit: .*budget is 51\.20 MiB/);
    expect(r.stderr).toMatch(/sft\.activationCheckpointing \(now false\)/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(out)).toBe(false);

    const data = join(tmp, 'sft.jsonl');
    writeFileSync(data, `${JSON.stringify({ prompt: 'a', response: 'b' })}\n`);
    const s = await mlagent('sft', '--model', model, '--data', data, '--out', join(tmp, 'sft-out'), '--memory-budget', '0.05');
    expect(s.code, s.stderr).toBe(2);
    expect(s.stderr).toMatch(/sft: a micro-batch of 1 x \d+ tokens needs about [\d.]+ MiB of GPU memory: this will not fit/);
  }, 120_000);

  // The smallest run: one two-step expert trajectory on house-prices (its steps read files, edit none).
  const smallConfig = (eval_tasks: string, editStateShare: string) => `preset: tiny
init: {size: tiny}
sft: {epochs: 3, probeStates: 0, batchSize: 2}
ppo: {editStateShare: ${editStateShare}, iterations: 1, statesPerIteration: 1, samplesPerState: 2, generationBatch: 2, minibatchSize: 2, ptxBatchSize: 1, maxNewTokens: 8, episodeMaxSteps: 2}
collection: {tasks: [house-prices], trajectories: 1, ideas: 1, candidateIdeas: 2, maxSteps: 2, concurrency: 1}
eval: {tasks: [${eval_tasks}], trajectories: 1, maxSteps: 1}
`;

  it('names an unknown eval task before any stage runs, in one line', async () => {
    const file = join(tmp, 'no-task.yaml');
    writeFileSync(file, smallConfig('house-prices, nosuchtask', 'null'));
    const out = join(tmp, 'no-task');
    const r = await mlagent('train', '--config', file, '--out', out);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/^mlagent train: eval\.tasks: unknown task 'nosuchtask' \(known: [^\n]*house-prices[^\n]*\)\n$/);
    expect(existsSync(out)).toBe(false);
  });

  it('finds a ppo.editStateShare the collection cannot meet before SFT, and refuses a resume with another config', async () => {
    const file = join(tmp, 'edit-share.yaml');
    writeFileSync(file, smallConfig('house-prices', '0.5'));
    const out = join(tmp, 'edit-share');
    const r = await mlagent('train', '--config', file, '--out', out);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/\nmlagent train: ppo\.editStateShare is 0\.5, but the collection at .*edit-share\/collect has no state where the expert edited a file; set it to null or 0 in the config of a new run \(another --out\)\n$/);
    expect(r.stderr).not.toMatch(/train: sft|\n\s+at /);

    // The config fixed, but the run in `out` was made with the other one: refused, and its record kept.
    const saved = readFileSync(join(out, 'train-config.json'), 'utf8');
    const fixed = join(tmp, 'edit-share-fixed.yaml');
    writeFileSync(fixed, smallConfig('house-prices', 'null'));
    const resumed = await mlagent('train', '--config', fixed, '--out', out, '--resume');
    expect(resumed.code, resumed.stderr).toBe(2);
    expect(resumed.stderr).toBe(
      `mlagent train: ${out} holds a run made with another config (ppo.editStateShare: 0.5 in the run, null now); resume it with the config it started with (--config ${join(out, 'train-config.json')}), or start a new run with another --out\n`,
    );
    expect(readFileSync(join(out, 'train-config.json'), 'utf8')).toBe(saved);
  }, 60_000);

  it('exits 130 when a Ctrl-C stops it, saying how to continue', async () => {
    const file = join(tmp, 'stop.yaml');
    writeFileSync(file, smallConfig('house-prices', 'null'));
    const child = spawn(process.execPath, [bin, 'train', '--config', file, '--out', join(tmp, 'stop')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      // Stopped as SFT starts: it stops after its step, and a resume continues there.
      if (!stderr.includes('train: sft\n') && (stderr + d).includes('train: sft\n')) child.kill('SIGINT');
      stderr += d;
    });
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    expect(code, stderr).toBe(130);
    expect(stderr).toMatch(/\nmlagent train: stopped during (SFT|PPO); run again with --resume to continue\n$/);
  }, 180_000);
});
