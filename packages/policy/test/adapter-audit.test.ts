// Audit of PEFT adapter loading, saving and merging against malformed, hostile or interrupted inputs.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Gpu, SeededRng } from '@mlagent/core-kernels';
import {
  ADAPTER_CONFIG,
  ADAPTER_WEIGHTS,
  LoraAdapter,
  LoraError,
  QwenModel,
  SafetensorsFile,
  VALUE_HEAD_FILE,
  ValueHead,
  loadAdapter,
  loadValueHead,
  mergeAdapter,
  saveAdapter,
  saveValueHead,
  writeSafetensors,
  type LoraModule,
  type TensorToWrite,
} from '../src/index.js';
import { toBf16Bits, writeModel } from './fixtures.js';
import { randomizeB } from './lora-oracle.js';

let gpu: Gpu;
let model: QwenModel;
let modelDir: string;
let work: string;

beforeAll(async () => {
  gpu = await Gpu.create();
  modelDir = writeModel('qwen2', 71, 'F32', { vocabSize: 512 });
  work = mkdtempSync(join(tmpdir(), 'mlagent-adapter-audit-'));
  model = await QwenModel.load(gpu, modelDir);
}, 120_000);

afterAll(() => {
  model?.dispose();
  for (const d of [modelDir, work]) if (d) rmSync(d, { recursive: true, force: true });
});

function trained(seed: number, targetModules: LoraModule[], alpha = 8): LoraAdapter {
  const a = LoraAdapter.create(model, { r: 2, alpha, targetModules }, { seed });
  randomizeB(a, new SeededRng(seed));
  return a;
}

/** Rewrites a safetensors file as F32 (or BF16), letting `edit` change each tensor's values. */
function rewrite(path: string, edit: (name: string, v: Float32Array) => void, dtype: 'F32' | 'BF16' = 'F32'): void {
  const f = SafetensorsFile.open(path);
  const tensors: Record<string, TensorToWrite> = {};
  for (const t of f.tensors.values()) {
    if (t.dtype !== 'F32') throw new Error(`rewrite: ${t.name} is ${t.dtype}`);
    const v = new Float32Array(f.read(t.name).slice().buffer);
    edit(t.name, v);
    tensors[t.name] = { dtype, shape: t.shape, data: dtype === 'F32' ? v : toBf16Bits(v) };
  }
  f.close();
  writeSafetensors(path, tensors, { format: 'pt' });
}

const qA1 = 'base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight';
const vB0 = 'base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight';

describe('loadAdapter / loadValueHead: non-finite weights', () => {
  it('refuses adapter tensors holding NaN or infinity (f32 and bf16), naming the file and the tensor', async () => {
    const adapter = trained(1, ['q_proj', 'v_proj']);
    const dir = join(work, 'nan');
    await saveAdapter(adapter, dir);
    adapter.dispose();
    const path = join(dir, ADAPTER_WEIGHTS);
    // A NaN in the weights made every logprob NaN with no hint of where it came from.
    rewrite(path, (name, v) => {
      if (name === qA1) v[3] = NaN;
    });
    expect(() => loadAdapter(model, dir)).toThrow(LoraError);
    expect(() => loadAdapter(model, dir)).toThrow(`${path}: tensor '${qA1}' holds NaN or infinite values`);
    rewrite(
      path,
      (name, v) => {
        if (name === qA1) v[3] = 0.5;
        if (name === vB0) v[0] = Infinity;
      },
      'BF16',
    );
    expect(() => loadAdapter(model, dir)).toThrow(`${path}: tensor '${vB0}' holds NaN or infinite values`);
  });

  it('refuses a value head holding NaN, naming the file and the tensor', async () => {
    const head = ValueHead.create(model, { r: 2, alpha: 4, targetModules: ['k_proj'] }, { seed: 2 });
    const dir = join(work, 'nan-head');
    await saveValueHead(head, dir);
    head.dispose();
    const path = join(dir, VALUE_HEAD_FILE);
    rewrite(path, (name, v) => {
      if (name === 'v_head.bias') v[0] = NaN;
    });
    expect(() => loadValueHead(model, dir)).toThrow(`${path}: tensor 'v_head.bias' holds NaN or infinite values`);
  });
});

describe('readPeftConfig: PEFT options that change what the adapter computes', () => {
  it('refuses them (naming the file and the field) instead of loading a different model, and accepts harmless values', async () => {
    const adapter = trained(3, ['q_proj']);
    const dir = join(work, 'options');
    await saveAdapter(adapter, dir);
    adapter.dispose();
    const path = join(dir, ADAPTER_CONFIG);
    const good = JSON.parse(readFileSync(path, 'utf8'));
    const load = (patch: Record<string, unknown> | string) => {
      writeFileSync(path, typeof patch === 'string' ? patch : JSON.stringify({ ...good, ...patch }));
      return () => loadAdapter(model, dir);
    };
    const refused: [Record<string, unknown> | string, string][] = [
      // Activated LoRA: the update applies only after the invocation tokens; loading it as plain LoRA changes every token.
      [{ alora_invocation_tokens: [151644, 77091] }, 'alora_invocation_tokens [151644,77091] is not supported'],
      // QALoRA pools the input before A.
      [{ use_qalora: true, qalora_group_size: 16 }, 'use_qalora true is not supported'],
      // PiSSA / OLoRA / LoftQ / CorDA rewrite the base weights at init: the adapter only fits that residual base.
      [{ init_lora_weights: 'pissa_niter_4' }, 'init_lora_weights "pissa_niter_4" changed the base weights'],
      [{ init_lora_weights: 'olora' }, 'init_lora_weights "olora" changed the base weights'],
      [{ init_lora_weights: 'loftq' }, 'init_lora_weights "loftq" changed the base weights'],
      [{ init_lora_weights: 'corda' }, 'init_lora_weights "corda" changed the base weights'],
      // A per-module rank pattern of the wrong type was ignored instead of refused.
      [{ rank_pattern: 'q_proj' }, 'rank_pattern is not supported'],
      // Python's json writes 1e999 for an overflowing float; it parses to Infinity and then failed without the file's name.
      ['{"peft_type":"LORA","r":2,"lora_alpha":1e999,"target_modules":["q_proj"]}', 'lora_alpha must be a positive number, got Infinity'],
      // PEFT's regex form was refused with a message saying it must be a list, as if the file were malformed.
      [{ target_modules: '.*\\.(q_proj|v_proj)$' }, 'target_modules ".*\\\\.(q_proj|v_proj)$" is a regular expression'],
      // ... and numbers that JSON.stringify prints as null were reported as "got null".
      ['{"peft_type":"LORA","r":2,"lora_alpha":4,"lora_dropout":1e999,"target_modules":["q_proj"]}', 'lora_dropout must be in [0, 1), got Infinity'],
    ];
    for (const [patch, message] of refused) {
      expect(load(patch), message).toThrow(LoraError);
      expect(load(patch), message).toThrow(`${path}: ${message}`);
    }
    for (const ok of [{ init_lora_weights: 'gaussian' }, { init_lora_weights: 'eva' }, { init_lora_weights: false }, { alora_invocation_tokens: null, use_qalora: false }]) {
      const loaded = load(ok)();
      expect(loaded.config.r).toBe(2);
      loaded.dispose();
    }
  });
});

describe('mergeAdapter: the base and output directories', () => {
  it('refuses a base whose tensor has another shape than the model the adapter was made on, naming it', async () => {
    const adapter = trained(4, ['down_proj']);
    const base = join(work, 'base-reshaped');
    cpSync(modelDir, base, { recursive: true });
    // Same number of values, transposed: the merge read it with the adapter's layout and wrote garbage.
    const f = SafetensorsFile.open(join(base, 'model.safetensors'));
    const tensors: Record<string, TensorToWrite> = {};
    for (const t of f.tensors.values()) {
      const shape = t.name === 'model.layers.1.mlp.down_proj.weight' ? [t.shape[1], t.shape[0]] : t.shape;
      tensors[t.name] = { dtype: t.dtype, shape, data: f.read(t.name) };
    }
    f.close();
    writeSafetensors(join(base, 'model.safetensors'), tensors, { format: 'pt' });
    const out = join(work, 'merged-reshaped');
    await expect(mergeAdapter(adapter, base, out)).rejects.toThrow(LoraError);
    await expect(mergeAdapter(adapter, base, out)).rejects.toThrow(
      `mergeAdapter: ${base}: tensor 'model.layers.1.mlp.down_proj.weight' has shape [176,64], the adapter's model has [64,176]`,
    );
    expect(existsSync(join(out, 'model.safetensors'))).toBe(false);
    adapter.dispose();
  });

  it('refuses an outDir that is the base directory through a symlink, and leaves the base intact', async () => {
    const adapter = trained(5, ['q_proj']);
    const base = join(work, 'base-linked');
    cpSync(modelDir, base, { recursive: true });
    const before = readFileSync(join(base, 'model.safetensors'));
    const link = join(work, 'link-to-base');
    symlinkSync(base, link);
    await expect(mergeAdapter(adapter, base, link)).rejects.toThrow('mergeAdapter: outDir must differ from baseDir');
    await expect(mergeAdapter(adapter, link, join(base, '.', 'x', '..'))).rejects.toThrow('mergeAdapter: outDir must differ from baseDir');
    expect(readFileSync(join(base, 'model.safetensors')).equals(before)).toBe(true);
    adapter.dispose();
  });

  it('refuses an outDir holding a sharded checkpoint, whose index would be loaded instead of the merged weights', async () => {
    const adapter = trained(6, ['q_proj']);
    const out = join(work, 'merged-over-shards');
    mkdirSync(out);
    const f = SafetensorsFile.open(join(modelDir, 'model.safetensors'));
    const weightMap = Object.fromEntries([...f.tensors.keys()].map((n) => [n, 'model-00001-of-00001.safetensors']));
    f.close();
    cpSync(join(modelDir, 'model.safetensors'), join(out, 'model-00001-of-00001.safetensors'));
    writeFileSync(join(out, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    await expect(mergeAdapter(adapter, modelDir, out)).rejects.toThrow(LoraError);
    await expect(mergeAdapter(adapter, modelDir, out)).rejects.toThrow(`mergeAdapter: ${out} holds a sharded checkpoint (model.safetensors.index.json)`);
    adapter.dispose();
  });
});

describe('saving over an existing adapter or value head, interrupted', () => {
  it('a save killed after the weights are in place does not leave the old config with the new weights', async () => {
    const dir = join(work, 'killed');
    const old = trained(7, ['q_proj', 'v_proj'], 8);
    await saveAdapter(old, dir);
    const oldA = [...((await old.slot(0, 'q_proj')!.A.read()) as Float32Array)];
    old.dispose();
    // The new adapter: same shapes, another alpha, so a mixed pair would load without any shape error.
    const fresh = trained(8, ['q_proj', 'v_proj'], 32);
    const src = join(work, 'fresh');
    await saveAdapter(fresh, src);
    const freshA = [...((await fresh.slot(0, 'q_proj')!.A.read()) as Float32Array)];
    fresh.dispose();
    const entry = fileURLToPath(new URL('../src/index.ts', import.meta.url));
    const script = join(work, 'killed.mts');
    // The child saves over `dir` and dies (SIGKILL) at its first rename, i.e. once a file of the new save is in place.
    writeFileSync(
      script,
      [
        `import fs from 'node:fs';`,
        `import { syncBuiltinESMExports } from 'node:module';`,
        `const rename = fs.renameSync;`,
        `fs.renameSync = (a, b) => { rename(a, b); process.kill(process.pid, 'SIGKILL'); };`,
        `syncBuiltinESMExports();`,
        `const { SafetensorsFile, readPeftConfig, saveAdapter } = await import(${JSON.stringify(entry)});`,
        `const f = SafetensorsFile.open(${JSON.stringify(join(src, ADAPTER_WEIGHTS))});`,
        `const ts = [...f.tensors.values()].map((t) => ({ name: t.name, shape: t.shape, v: new Float32Array(f.read(t.name).slice().buffer) }));`,
        `const c = readPeftConfig(${JSON.stringify(src)});`,
        `const fake = { assertLive() {}, config: { r: c.r, alpha: c.alpha, dropout: c.dropout, targetModules: c.targetModules },`,
        `  paramNames: () => ts.map((t) => t.name), params: () => ts.map((t) => ({ shape: t.shape, read: async () => t.v })) };`,
        `await saveAdapter(fake, ${JSON.stringify(dir)});`,
        `console.log('not killed');`,
      ].join('\n'),
    );
    const r = spawnSync(process.execPath, ['--import', 'tsx', script], { encoding: 'utf8', timeout: 60_000 });
    expect(r.signal, r.stderr).toBe('SIGKILL');
    // Either the old adapter, whole, or an error: never alpha 8 with the new weights.
    let loaded: LoraAdapter | undefined;
    try {
      loaded = loadAdapter(model, dir);
    } catch (e) {
      expect(e).toBeInstanceOf(LoraError);
    }
    if (loaded) {
      const A = [...((await loaded.slot(0, 'q_proj')!.A.read()) as Float32Array)];
      const alpha = loaded.config.alpha;
      loaded.dispose();
      expect({ alpha, A }).toEqual(alpha === 8 ? { alpha: 8, A: oldA } : { alpha: 32, A: freshA });
    }
  }, 90_000);

  it('a value-head save that fails after the adapter is written does not pair the new adapter with the old head', async () => {
    const dir = join(work, 'critic-over');
    const old = ValueHead.create(model, { r: 2, alpha: 4, targetModules: ['k_proj'] }, { seed: 9 });
    randomizeB(old.adapter, new SeededRng(9));
    await saveValueHead(old, dir);
    const oldB = (await old.adapter.slot(0, 'k_proj')!.B.read()) as Float32Array;
    old.dispose();
    const fresh = ValueHead.create(model, { r: 2, alpha: 4, targetModules: ['k_proj'] }, { seed: 10 });
    randomizeB(fresh.adapter, new SeededRng(10));
    // The head's weights cannot be read back (a lost device, a disposed tensor): the save fails part way.
    const failing = Object.create(fresh, { weight: { value: { shape: fresh.weight.shape, read: () => Promise.reject(new Error('device lost')) } } }) as ValueHead;
    await expect(saveValueHead(failing, dir)).rejects.toThrow('device lost');
    fresh.dispose();
    let loaded: ValueHead | undefined;
    try {
      loaded = loadValueHead(model, dir);
    } catch (e) {
      expect(e).toBeInstanceOf(LoraError);
    }
    if (loaded) {
      // Whatever loads must be the old critic whole: its adapter with its head.
      expect([...((await loaded.adapter.slot(0, 'k_proj')!.B.read()) as Float32Array)]).toEqual([...oldB]);
      loaded.dispose();
    }
  });

  it('a value head left next to another adapter (an adapter saved over a critic) is refused, not paired with it', async () => {
    const dir = join(work, 'critic-overwritten');
    const head = ValueHead.create(model, { r: 2, alpha: 4, targetModules: ['k_proj'] }, { seed: 11 });
    await saveValueHead(head, dir);
    head.dispose();
    const other = trained(12, ['k_proj'], 4);
    await saveAdapter(other, dir);
    other.dispose();
    expect(() => loadValueHead(model, dir)).toThrow(LoraError);
    expect(() => loadValueHead(model, dir)).toThrow(`${join(dir, VALUE_HEAD_FILE)}: was saved with another ${ADAPTER_WEIGHTS}`);
    // Saved again as a critic, it loads.
    const again = ValueHead.create(model, { r: 2, alpha: 4, targetModules: ['k_proj'] }, { seed: 13 });
    await saveValueHead(again, dir);
    again.dispose();
    loadValueHead(model, dir).dispose();
  });
});
