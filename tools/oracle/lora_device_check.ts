// GPU-machine check of LoRA training (one device call; see tools/README.md): PEFT interop both ways with HF PEFT
// (peft_interop.py), logprob/entropy/LoRA/value-head gradients against qwen_oracle.py on the real GPU (f32 and f16
// base, checkpointing off and on, the full 152k vocabulary once), and long-context fwd+bwd timings.
// Bundle: npx esbuild tools/oracle/lora_device_check.ts --bundle --platform=node --format=esm --external:webgpu
// Phases: `node check.mjs prep DIR`, then `python3 peft_interop.py DIR`, then `node check.mjs check DIR`; the
// tokenizer files sit in tok/ and qwen_oracle.py beside the bundle.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Gpu, SeededRng } from '@mlagent/core-kernels';
import {
  LORA_MODULES, LoraAdapter, QwenModel, ValueHead, expectedShapes, initModel, loadAdapter, loadQwenConfig,
  policyForward, saveAdapter, saveValueHead, valueForward, writeSafetensors, type TensorToWrite,
} from '../../packages/policy/src/index.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const TOK = join(HERE, 'tok');

function toBf16Bits(x: Float32Array): Uint16Array {
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = ((u[i] + 0x7fff + ((u[i] >>> 16) & 1)) >>> 16) & 0xffff;
  return out;
}

function writeModel(dir: string, arch: 'qwen2' | 'qwen3', seed: number, dtype: 'F32' | 'BF16', vocab?: number): string {
  mkdirSync(dir, { recursive: true });
  initModel({ arch, preset: 'tiny', outDir: dir, seed, tokenizerDir: TOK });
  if (vocab) {
    const raw = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...raw, vocab_size: vocab }));
  }
  const cfg = loadQwenConfig(dir);
  const rng = new SeededRng(seed + 1000);
  const tensors: Record<string, TensorToWrite> = {};
  for (const [name, shape] of expectedShapes(cfg)) {
    const n = shape.reduce((a, b) => a * b, 1);
    tensors[name] = {
      dtype, shape, data: () => {
        const v = new Float32Array(n);
        if (name.endsWith('norm.weight')) for (let i = 0; i < n; i++) v[i] = 1 + 0.2 * rng.normal();
        else if (name.endsWith('.bias')) rng.fillNormal(v, 0.2);
        else rng.fillNormal(v, 1 / Math.sqrt(shape[1]));
        return dtype === 'F32' ? v : toBf16Bits(v);
      },
    };
  }
  writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  return dir;
}

const seqsOf = (rng: SeededRng, lens: number[], vocab: number) => lens.map((n) => Array.from({ length: n }, () => rng.int(0, vocab - 1)));
const coefs = (rng: SeededRng, seqs: number[][], s = 1) => seqs.map((q) => Array.from({ length: q.length }, () => s * rng.normal()));
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let e = 0, s = 0;
  for (let i = 0; i < b.length; i++) { const d = Math.abs(a[i] - b[i]); e = Number.isNaN(d) ? Infinity : Math.max(e, d); s = Math.max(s, Math.abs(b[i])); }
  return s > 0 ? e / s : e;
}
function maxAbs(a: ArrayLike<number>[], b: number[][], skip = 1): number {
  let m = 0;
  b.forEach((r, i) => { for (let t = skip; t < r.length; t++) { const d = Math.abs(a[i][t] - r[t]); m = Number.isNaN(d) ? Infinity : Math.max(m, d); } });
  return m;
}

async function logitsWith(model: QwenModel, adapter: LoraAdapter | null, ids: number[][]): Promise<Float32Array> {
  model.adapter = adapter;
  try { const l = model.forward(ids); const z = (await l.read()) as Float32Array; l.dispose(); return z; } finally { model.adapter = null; }
}

async function prep(root: string) {
  const gpu = await Gpu.create();
  const ids = [seqsOf(new SeededRng(9), [11], 512)[0]];
  writeFileSync(join(root, 'ids.json'), JSON.stringify(ids));
  for (const [arch, seed] of [['qwen2', 61], ['qwen3', 62]] as const) {
    const dir = writeModel(join(root, arch, 'model'), arch, seed, 'F32', 512);
    const model = await QwenModel.load(gpu, dir);
    const a = LoraAdapter.create(model, { r: 4, alpha: 8, targetModules: LORA_MODULES }, { seed });
    const rng = new SeededRng(seed);
    for (const s of a.slots()) s.B.write(rng.randn(s.B.size, 0.3));
    await saveAdapter(a, join(root, arch, 'ours'), { baseModel: dir });
    writeFileSync(join(root, arch, 'ours_logits.f32'), await logitsWith(model, a, ids));
    a.dispose(); model.dispose();
  }
  console.log('prep done');
}

interface OracleResult {
  logprobs: number[][];
  entropies: number[][];
  grads: Record<string, number[]>;
  values: number[][];
  valueGrads: Record<string, number[]>;
}

function oracle(work: string, spec: object): OracleResult {
  const p = join(work, 'spec.json');
  writeFileSync(p, JSON.stringify(spec));
  const r = spawnSync('python3', [join(HERE, 'qwen_oracle.py'), '--train', p], { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`oracle failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as OracleResult;
}

async function check(root: string) {
  const gpu = await Gpu.create();
  console.log('adapter', JSON.stringify(gpu.adapter), 'features', JSON.stringify(gpu.features));
  const ids = JSON.parse(readFileSync(join(root, 'ids.json'), 'utf8'));
  // 1. PEFT interop.
  for (const arch of process.env.SKIP_PEFT ? [] : ['qwen2', 'qwen3']) {
    const model = await QwenModel.load(gpu, join(root, arch, 'model'));
    const f32 = (p: string) => { const b = readFileSync(p); return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4); };
    const ours = loadAdapter(model, join(root, arch, 'ours'));
    const peftOnOurs = f32(join(root, arch, 'peft_on_ours.f32'));
    const oursLogits = f32(join(root, arch, 'ours_logits.f32'));
    const base = await logitsWith(model, null, ids);
    console.log(`${arch} PEFT loads our adapter: max|HF PEFT - ours| ${relErr(oursLogits, peftOnOurs).toExponential(2)} (rel to max logit); adapter effect ${relErr(base, peftOnOurs).toExponential(2)}`);
    const theirs = loadAdapter(model, join(root, arch, 'theirs'));
    const tl = await logitsWith(model, theirs, ids);
    console.log(`${arch} we load PEFT's adapter (r=${theirs.config.r}, targets ${theirs.config.targetModules}): rel err vs HF PEFT ${relErr(tl, f32(join(root, arch, 'theirs_logits.f32'))).toExponential(2)}; adapter effect ${relErr(base, f32(join(root, arch, 'theirs_logits.f32'))).toExponential(2)}`);
    ours.dispose(); theirs.dispose(); model.dispose();
  }
  // 2. Oracle gradients on this GPU, f32 and f16 base.
  for (const [arch, dtype, seed, vocab, mdt] of [
    ['qwen2', 'F32', 21, 512, 'f32'], ['qwen3', 'F32', 22, 512, 'f32'], ['qwen2', 'BF16', 23, 512, 'f32'], ['qwen3', 'BF16', 24, 151936, 'f32'],
    ['qwen2', 'BF16', 25, 512, 'f16'], ['qwen3', 'BF16', 26, 512, 'f16'],
  ] as const) {
    if (process.env.QUICK && vocab > 512) continue;
    const work = join(root, `o-${arch}-${dtype}-${seed}`);
    const dir = writeModel(join(work, 'model'), arch, seed, dtype, vocab);
    if (mdt === 'f16' && !gpu.features.shaderF16) { console.log('no shader-f16'); continue; }
    const model = await QwenModel.load(gpu, dir, { dtype: mdt });
    const rng = new SeededRng(seed);
    const adapter = LoraAdapter.create(model, { r: 4, alpha: 8, targetModules: LORA_MODULES }, { seed });
    for (const s of adapter.slots()) s.B.write(rng.randn(s.B.size, 0.3));
    const head = ValueHead.create(model, { r: 2, alpha: 4, targetModules: ['q_proj', 'v_proj', 'down_proj'] }, { seed: seed + 1 });
    for (const s of head.adapter.slots()) s.B.write(rng.randn(s.B.size, 0.3));
    await saveAdapter(adapter, join(work, 'policy'));
    await saveValueHead(head, join(work, 'value'));
    const seqs = seqsOf(rng, [37, 4, 19], Math.min(vocab, 3000));
    const dLogprob = coefs(rng, seqs), dEntropy = coefs(rng, seqs, 0.5), dValue = coefs(rng, seqs);
    const ref = oracle(work, { model: dir, adapter: join(work, 'policy'), seqs, dLogprob, dEntropy, value: { dir: join(work, 'value'), dValue } });
    for (const checkpoint of [false, true]) {
      adapter.zeroGrad(); head.zeroGrad();
      const pass = await policyForward(model, seqs, { adapter, checkpoint });
      const lpErr = maxAbs(pass.logprobs, ref.logprobs), entErr = maxAbs(pass.entropies, ref.entropies);
      pass.backward({ dLogprob, dEntropy });
      let worst = 0; const names = adapter.paramNames(); const grads = adapter.grads();
      for (let i = 0; i < names.length; i++) worst = Math.max(worst, relErr(await grads[i].read(), ref.grads[names[i]]));
      const vp = await valueForward(model, head, seqs, { checkpoint });
      const vErr = maxAbs(vp.values, ref.values, 0);
      vp.backward(dValue);
      let vworst = 0; const vn = [...head.adapter.paramNames(), 'v_head.weight', 'v_head.bias']; const vg = head.grads();
      for (let i = 0; i < vn.length; i++) vworst = Math.max(vworst, relErr(await vg[i].read(), ref.valueGrads[vn[i]]));
      console.log(`${arch} ${dtype} vocab ${vocab} base ${mdt} ckpt ${checkpoint}: logprob ${lpErr.toExponential(2)} entropy ${entErr.toExponential(2)} lora grad rel ${worst.toExponential(2)} value ${vErr.toExponential(2)} value grad rel ${vworst.toExponential(2)}`);
    }
    adapter.dispose(); head.dispose(); model.dispose();
  }
  // 3. Long context: tiny model, real vocab, one sequence, checkpointing off/on.
  for (const preset of process.env.SKIP_LONG ? [] : [2048, 8192]) {
    const dir = writeModel(join(root, `long-${preset}`), 'qwen2', 71, 'BF16');
    const model = await QwenModel.load(gpu, dir, { dtype: gpu.features.shaderF16 ? 'f16' : 'f32' });
    const adapter = LoraAdapter.create(model, { r: 16, alpha: 32, targetModules: LORA_MODULES }, { seed: 1 });
    const seqs = seqsOf(new SeededRng(1), [preset], 150000);
    const ones = [seqs[0].map(() => 1 / preset)];
    for (const checkpoint of [false, true]) {
      for (let rep = 0; rep < 2; rep++) {
        const t0 = performance.now();
        const p = await policyForward(model, seqs, { adapter, checkpoint });
        const t1 = performance.now();
        p.backward({ dLogprob: ones });
        await adapter.grads()[0].read();
        const t2 = performance.now();
        console.log(`T=${preset} ckpt ${checkpoint} rep ${rep}: fwd ${(t1 - t0).toFixed(0)} ms, bwd ${(t2 - t1).toFixed(0)} ms, ${(preset / ((t2 - t0) / 1000)).toFixed(0)} tok/s, peak ${(gpu.memory().peak / 2 ** 20).toFixed(0)} MiB`);
      }
    }
    adapter.dispose(); model.dispose();
  }
}

const [phase, root] = process.argv.slice(2);
mkdirSync(root, { recursive: true });
await (phase === 'prep' ? prep(root) : check(root));
process.exit(0);
