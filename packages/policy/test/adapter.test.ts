import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Gpu, SeededRng } from '@mlagent/core-kernels';
import {
  ADAPTER_CONFIG,
  ADAPTER_WEIGHTS,
  LORA_MODULES,
  LoraAdapter,
  LoraError,
  QwenModel,
  SafetensorsFile,
  ValueHead,
  loadAdapter,
  loadValueHead,
  mergeAdapter,
  policyForward,
  saveAdapter,
  saveValueHead,
  valueForward,
  writeSafetensors,
} from '../src/index.js';
import { writeModel } from './fixtures.js';
import { randomSeqs, randomizeB, relErr } from './lora-oracle.js';

const VOCAB = 512;
let gpu: Gpu;
let model: QwenModel;
let modelDir: string;
let work: string;

beforeAll(async () => {
  gpu = await Gpu.create();
  modelDir = writeModel('qwen2', 51, 'F32', { vocabSize: VOCAB });
  work = mkdtempSync(join(tmpdir(), 'mlagent-adapter-'));
  model = await QwenModel.load(gpu, modelDir);
}, 120_000);

afterAll(() => {
  model?.dispose();
  for (const d of [modelDir, work]) if (d) rmSync(d, { recursive: true, force: true });
});

function trained(seed: number, targetModules = LORA_MODULES as readonly (typeof LORA_MODULES)[number][]): LoraAdapter {
  const a = LoraAdapter.create(model, { r: 4, alpha: 8, dropout: 0.05, targetModules }, { seed });
  randomizeB(a, new SeededRng(seed));
  return a;
}

describe('PEFT adapter files', () => {
  it("writes PEFT's adapter_config.json and tensor names, and loads them back exactly", async () => {
    const adapter = trained(1, ['q_proj', 'v_proj', 'down_proj']);
    const dir = join(work, 'peft');
    await saveAdapter(adapter, dir, { baseModel: 'Qwen/Qwen2.5-7B-Instruct' });
    const cfg = JSON.parse(readFileSync(join(dir, ADAPTER_CONFIG), 'utf8'));
    expect(cfg).toMatchObject({
      peft_type: 'LORA',
      task_type: 'CAUSAL_LM',
      r: 4,
      lora_alpha: 8,
      lora_dropout: 0.05,
      target_modules: ['q_proj', 'v_proj', 'down_proj'],
      bias: 'none',
      base_model_name_or_path: 'Qwen/Qwen2.5-7B-Instruct',
      use_dora: false,
      use_rslora: false,
    });
    const f = SafetensorsFile.open(join(dir, ADAPTER_WEIGHTS));
    const shapes = Object.fromEntries([...f.tensors.values()].map((t) => [t.name, t.shape]));
    f.close();
    expect(Object.keys(shapes).length).toBe(2 * 3 * 2);
    expect(shapes['base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight']).toEqual([4, 64]);
    expect(shapes['base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight']).toEqual([64, 4]);
    expect(shapes['base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight']).toEqual([32, 4]);
    expect(shapes['base_model.model.model.layers.1.mlp.down_proj.lora_A.weight']).toEqual([4, 176]);

    const loaded = loadAdapter(model, dir);
    expect(loaded.config).toEqual(adapter.config);
    const [p0, p1] = [adapter.params(), loaded.params()];
    for (let i = 0; i < p0.length; i++) expect(await p1[i].read()).toEqual(await p0[i].read());
    const seqs = randomSeqs(new SeededRng(1), [5, 3], VOCAB);
    const a = await policyForward(model, seqs, { adapter, grad: false });
    const b = await policyForward(model, seqs, { adapter: loaded, grad: false });
    expect(b.logprobs).toEqual(a.logprobs);
    adapter.dispose();
    loaded.dispose();
  });

  it('rejects bad adapters with errors naming the problem', async () => {
    const adapter = trained(2, ['q_proj', 'o_proj']);
    const dir = join(work, 'bad');
    await saveAdapter(adapter, dir);
    const cfgPath = join(dir, ADAPTER_CONFIG);
    const good = JSON.parse(readFileSync(cfgPath, 'utf8'));
    const withConfig = (patch: Record<string, unknown>) => {
      writeFileSync(cfgPath, JSON.stringify({ ...good, ...patch }));
      return () => loadAdapter(model, dir);
    };
    expect(withConfig({ r: 8 })).toThrow(/lora_A\.weight' has shape \[4,64\], expected \[8,64\] \(r=8\)/);
    expect(withConfig({ use_dora: true })).toThrow(/use_dora is set/);
    expect(withConfig({ peft_type: 'IA3' })).toThrow(/only LORA adapters load/);
    expect(withConfig({ target_modules: ['q_proj', 'lm_head'] })).toThrow(/target module "lm_head" is not one of/);
    expect(withConfig({ target_modules: ['q_proj'] })).toThrow(/unexpected tensor 'base_model\.model\.model\.layers\.0\.self_attn\.o_proj\.lora_A\.weight'/);
    writeFileSync(cfgPath, JSON.stringify(good));
    // A file missing one tensor.
    const f = SafetensorsFile.open(join(dir, ADAPTER_WEIGHTS));
    const keep = [...f.tensors.values()].filter((t) => !t.name.includes('layers.1.self_attn.q_proj.lora_B'));
    const tensors = Object.fromEntries(keep.map((t) => [t.name, { dtype: t.dtype, shape: t.shape, data: f.read(t.name) }]));
    f.close();
    writeSafetensors(join(dir, ADAPTER_WEIGHTS), tensors);
    expect(() => loadAdapter(model, dir)).toThrow(/missing tensor 'base_model\.model\.model\.layers\.1\.self_attn\.q_proj\.lora_B\.weight' \[64,4\]/);
    expect(() => loadAdapter(model, join(work, 'nowhere'))).toThrow(/no adapter_config\.json/);
    adapter.dispose();
  });

  it('saves and loads a value head (its adapter in PEFT format plus value_head.safetensors)', async () => {
    const head = ValueHead.create(model, { r: 2, alpha: 4, targetModules: ['k_proj', 'up_proj'] }, { seed: 3 });
    randomizeB(head.adapter, new SeededRng(3));
    head.bias.write([0.25]);
    const dir = join(work, 'critic');
    await saveValueHead(head, dir);
    const loaded = loadValueHead(model, dir);
    const seqs = randomSeqs(new SeededRng(3), [4, 6], VOCAB);
    const a = await valueForward(model, head, seqs, { grad: false });
    const b = await valueForward(model, loaded, seqs, { grad: false });
    expect(b.values).toEqual(a.values);
    rmSync(join(dir, 'value_head.safetensors'));
    expect(() => loadValueHead(model, dir)).toThrow(/no value_head\.safetensors/);
    head.dispose();
    loaded.dispose();
  });
});

describe('mergeAdapter', () => {
  it('writes a full HF checkpoint that loads and gives the logits of base + adapter', async () => {
    const adapter = trained(4);
    const out = join(work, 'merged');
    await mergeAdapter(adapter, modelDir, out);
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) {
      expect(existsSync(join(out, f)), f).toBe(true);
    }
    const merged = await QwenModel.load(gpu, out);
    const ids = [randomSeqs(new SeededRng(4), [7], VOCAB)[0]];
    model.adapter = adapter;
    let withAdapter: Float32Array;
    try {
      const l = model.forward(ids);
      withAdapter = (await l.read()) as Float32Array;
      l.dispose();
    } finally {
      model.adapter = null;
    }
    const l2 = merged.forward(ids);
    const mergedLogits = (await l2.read()) as Float32Array;
    l2.dispose();
    const l3 = model.forward(ids);
    const baseLogits = (await l3.read()) as Float32Array;
    l3.dispose();
    let maxErr = 0;
    for (let i = 0; i < mergedLogits.length; i++) maxErr = Math.max(maxErr, Math.abs(mergedLogits[i] - withAdapter[i]));
    expect(maxErr).toBeLessThan(1e-4);
    // The adapter really changes the model, so the comparison above means something.
    expect(relErr(baseLogits, withAdapter)).toBeGreaterThan(1e-2);
    await expect(mergeAdapter(adapter, modelDir, modelDir)).rejects.toThrow(/outDir must differ from baseDir/);
    merged.dispose();
    adapter.dispose();
  });
});

describe('PEFT adapter files: unsupported and malformed configs (audit)', () => {
  it('an adapter_config.json that is not a JSON object names the file', async () => {
    const adapter = trained(4, ['q_proj']);
    const dir = join(work, 'cfg-null');
    await saveAdapter(adapter, dir);
    adapter.dispose();
    const path = join(dir, ADAPTER_CONFIG);
    for (const [text, kind] of [['null', 'null'], ['["q_proj"]', 'an array']]) {
      writeFileSync(path, text);
      expect(() => loadAdapter(model, dir)).toThrow(LoraError);
      expect(() => loadAdapter(model, dir)).toThrow(`${path}: expected a JSON object, got ${kind}`);
    }
  });

  it('refuses PEFT features that change which weights are adapted (set), and accepts them off', async () => {
    const adapter = trained(5, ['q_proj', 'v_proj']);
    const dir = join(work, 'features');
    await saveAdapter(adapter, dir);
    const path = join(dir, ADAPTER_CONFIG);
    const good = JSON.parse(readFileSync(path, 'utf8'));
    const withConfig = (patch: Record<string, unknown>) => {
      writeFileSync(path, JSON.stringify({ ...good, ...patch }));
      return () => loadAdapter(model, dir);
    };
    const cases: [Record<string, unknown>, string][] = [
      [{ exclude_modules: ['model.layers.1.self_attn.q_proj'] }, 'exclude_modules ["model.layers.1.self_attn.q_proj"] is not supported'],
      [{ exclude_modules: 'q_proj' }, 'exclude_modules "q_proj" is not supported'],
      [{ lora_bias: true }, 'lora_bias true is not supported'],
      [{ layer_replication: [[0, 2], [1, 2]] }, 'layer_replication [[0,2],[1,2]] is not supported'],
      [{ target_parameters: ['mlp.experts.gate_up_proj'] }, 'target_parameters ["mlp.experts.gate_up_proj"] is not supported'],
    ];
    for (const [patch, message] of cases) {
      expect(withConfig(patch), message).toThrow(LoraError);
      expect(withConfig(patch), message).toThrow(`${path}: ${message}`);
    }
    for (const off of [{ exclude_modules: null, lora_bias: false, layer_replication: null, target_parameters: [] }, { exclude_modules: [] }]) {
      const loaded = withConfig(off)();
      expect(loaded.config.targetModules).toEqual(['q_proj', 'v_proj']);
      loaded.dispose();
    }
    adapter.dispose();
  });

  // In a child process with a timeout: Node's recursive mkdir under /proc never returns (a busy loop no test
  // timeout can interrupt), so a regression fails here instead of hanging the run.
  it.runIf(process.platform === 'linux')('saveAdapter and mergeAdapter under /proc fail at once, naming the directory', () => {
    const src = fileURLToPath(new URL('../src/index.ts', import.meta.url));
    const script = join(work, 'proc.mts');
    writeFileSync(
      script,
      [
        `import { loadQwenConfig, mergeAdapter, saveAdapter } from ${JSON.stringify(src)};`,
        // Stand-ins: both make the output directory before touching the adapter's weights.
        `const fake = { assertLive() {}, slots: () => [], scale: 1, model: { config: loadQwenConfig(${JSON.stringify(modelDir)}) } };`,
        `for (const run of [() => saveAdapter(fake, '/proc/self/mlagent-none/a'), () => mergeAdapter(fake, ${JSON.stringify(modelDir)}, '/proc/self/mlagent-none/m')]) {`,
        `  try { await run(); console.log('no error'); } catch (e) { console.log(e.message); }`,
        `}`,
      ].join('\n'),
    );
    const r = spawnSync(process.execPath, ['--import', 'tsx', script], { encoding: 'utf8', timeout: 60_000 });
    expect(r.signal, 'timed out: a recursive mkdir under /proc').toBeNull();
    expect(r.stdout.trim().split('\n')).toEqual([
      "ENOENT: no such file or directory, mkdir '/proc/self/mlagent-none'",
      "ENOENT: no such file or directory, mkdir '/proc/self/mlagent-none'",
    ]);
  });
});
