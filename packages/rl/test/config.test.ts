import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultTrainConfig, loadTrainConfig, parseTrainConfig, trainConfigReference } from '../src/config/train-config.js';
import { problemsOf } from './config-fixture.js';


describe('training config', () => {
  it("defaults are verl's", () => {
    const c = defaultTrainConfig();
    expect(c.ppo).toMatchObject({ clipRatio: 0.2, dualClip: 3, valueClip: 0.5, klCoef: 0.001, actorLr: 1e-6, criticLr: 1e-5, entropyCoef: 0, gradClip: 1 });
    expect(c.preset).toBe('default');
    expect(c.seed).toBe(0);
    expect(c.eval.tasks).toEqual(['held-in', 'held-out']);
  });

  it('the tiny preset overrides, and the file wins over the preset, and overrides over the file', () => {
    const c = parseTrainConfig({ preset: 'tiny', ppo: { actorLr: 5e-5 }, seed: 3 }, { overrides: { seed: 7, ppo: { iterations: 2 } } });
    expect(c.ppo.actorLr).toBe(5e-5);
    expect(c.ppo.criticLr).toBe(1e-3); // from the preset
    expect(c.ppo.iterations).toBe(2);
    expect(c.ppo.clipRatio).toBe(0.2); // untouched default
    expect(c.seed).toBe(7);
  });

  it('reports every bad field at once, each by its path', () => {
    const problems = problemsOf(() =>
      parseTrainConfig({
        ppo: { clipRatio: 1.5, klEstimator: 'k2', iterations: 2.5, dualClip: null, valueClip: 'x', bogus: 1 },
        sft: { lengthBucketing: 'yes' },
        collection: { tasks: [] },
        extra: {},
      }),
    );
    expect(problems).toEqual([
      'extra: unknown top-level key (known: preset, seed, model, dtype, init, lora, sft, ppo, collection, eval)',
      'sft.lengthBucketing: must be true or false, got "yes"',
      'ppo.clipRatio: must be a number in (0, 1), got 1.5',
      "ppo.klEstimator: must be one of 'k1', 'k3', got \"k2\"",
      'ppo.iterations: must be an integer ≥ 1, got 2.5',
      'ppo.valueClip: must be a number > 0 or null, got "x"',
      expect.stringMatching(/^ppo\.bogus: unknown field \(known: iterations, rollout, /),
      "collection.tasks: must be 'held-in', 'held-out', 'all' or a list of names, got a list ([])",
    ]);
  });

  it('checks fields that depend on each other', () => {
    expect(problemsOf(() => parseTrainConfig({ ppo: { statesPerIteration: 2, samplesPerState: 2, minibatchSize: 8 } }))).toEqual([
      'ppo.minibatchSize: 8 is more than the 4 samples of an iteration (statesPerIteration × samplesPerState)',
    ]);
    expect(problemsOf(() => parseTrainConfig({ ppo: { advantage: 'grpo', samplesPerState: 1, minibatchSize: 1 } }))).toEqual([
      'ppo.samplesPerState: grpo needs at least 2 samples per state, got 1',
    ]);
    expect(problemsOf(() => parseTrainConfig({ ppo: { minibatchSize: 8, microBatchSize: 9 } }))).toEqual([
      'ppo.microBatchSize: 9 is more than ppo.minibatchSize (8), the samples a micro-batch splits',
    ]);
    expect(parseTrainConfig({ ppo: { minibatchSize: 8, microBatchSize: 8 } }).ppo.microBatchSize).toBe(8);
    expect(parseTrainConfig({}).ppo.microBatchSize).toBeNull();
    expect(problemsOf(() => parseTrainConfig({ ppo: { samplerRatioCap: 2 } }))).toEqual([
      "ppo.samplerRatioCap: weighs the actor's π_old against the sampler's, so it needs ppo.oldLogprobs: actor",
    ]);
    expect(parseTrainConfig({ ppo: { samplerRatioCap: 2, oldLogprobs: 'actor' } }).ppo.samplerRatioCap).toBe(2);
  });

  it('rejects a preset it does not know and a section that is not a mapping', () => {
    expect(problemsOf(() => parseTrainConfig({ preset: 'huge', sft: [1] }))).toEqual([
      "preset: must be one of 'default', 'tiny', got \"huge\"",
      'sft: must be a mapping of fields, got a list',
    ]);
  });

  it('loads YAML and JSON files, naming the file in errors', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rl-config-'));
    const yamlPath = join(dir, 'run.yaml');
    writeFileSync(yamlPath, 'preset: tiny\nppo:\n  advantage: grpo\n  klMode: reward\n  dualClip: null\nlora:\n  targets: [q_proj, v_proj]\n');
    const c = loadTrainConfig(yamlPath);
    expect(c.ppo.advantage).toBe('grpo');
    expect(c.ppo.dualClip).toBeNull();
    expect(c.lora.targets).toEqual(['q_proj', 'v_proj']);
    const jsonPath = join(dir, 'run.json');
    writeFileSync(jsonPath, JSON.stringify({ sft: { epochs: 0 } }));
    expect(() => loadTrainConfig(jsonPath)).toThrow(`invalid training config ${jsonPath}:\n  sft.epochs: must be an integer ≥ 1, got 0`);
    writeFileSync(yamlPath, 'ppo: [unclosed');
    expect(() => loadTrainConfig(yamlPath)).toThrow(/cannot parse: .*line 1/s);
    expect(() => loadTrainConfig(join(dir, 'run.toml'))).toThrow(/cannot read the file/);
  });

  it('the README embeds the current reference table of every field', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    expect(readme).toContain(trainConfigReference());
  });
});
