// Where the time of KV-cache generation goes, op by op: an init-model policy (random weights; --merges cuts Qwen's
// tokenizer as the main job does), `--batch` prompts of `--prompt` random tokens (`--distinct` different ones,
// each repeated, as PPO samples several actions per state), `--new` greedy tokens. One warm-up run compiles the
// kernels; the timed run reports its wall time and, unless --no-profile, GPU timestamps summed per op (they add a
// timestamped pass per dispatch, so small ops read longer than they run). --by-shape splits the matmuls by shape.
// The main job's PPO sampling: --preset mini --merges 4000 --batch 4 --distinct 1 --prompt 600 --new 200; its
// evaluation: --batch 16 --distinct 16. --lora R samples through a rank-R adapter on all seven linears, as PPO's
// actor does (folded into the weights, as generate() does by default for small f32 models; --no-merge: not).
// Run (after `npx nx run-many -t build`): node --import tsx tools/bench/decode-profile.ts [options]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Gpu, SeededRng } from '@mlagent/core-kernels';
import { LORA_MODULES, LoraAdapter, QwenModel, generate, initModel, type ModelPreset } from '@mlagent/policy';

const { values } = parseArgs({
  options: {
    preset: { type: 'string', default: 'mini' },
    merges: { type: 'string' },
    batch: { type: 'string', default: '4' },
    distinct: { type: 'string' },
    prompt: { type: 'string', default: '600' },
    new: { type: 'string', default: '200' },
    lora: { type: 'string' },
    'no-merge': { type: 'boolean', default: false },
    'by-shape': { type: 'boolean', default: false },
    'no-profile': { type: 'boolean', default: false },
  },
});
const count = (name: string, v: string | undefined) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got ${v}`);
  return n;
};
const B = count('batch', values.batch);
const distinct = count('distinct', values.distinct ?? values.batch);
const promptLen = count('prompt', values.prompt);
const maxNewTokens = count('new', values.new);
const merges = values.merges === undefined ? undefined : count('merges', values.merges);
const loraRank = values.lora === undefined ? undefined : count('lora', values.lora);
if (distinct > B) throw new Error(`--distinct (${distinct}) must not exceed --batch (${B})`);

const root = mkdtempSync(join(tmpdir(), 'decode-profile-'));
try {
  const dir = join(root, 'model');
  await initModel({ arch: 'qwen2', preset: values.preset as ModelPreset, outDir: dir, seed: 0, ...(merges ? { vocabMerges: merges } : {}) });
  const gpu = await Gpu.create();
  const model = await QwenModel.load(gpu, dir);
  // As PPO samples from its actor: the adapter on all seven linears (the main job's r 64).
  const adapter = loraRank ? LoraAdapter.create(model, { r: loraRank, alpha: 2 * loraRank, targetModules: LORA_MODULES }, { seed: 1 }) : null;
  model.adapter = adapter;
  const rng = new SeededRng(1);
  const unique = Array.from({ length: distinct }, () => Array.from({ length: promptLen }, () => rng.int(0, model.config.vocabSize - 1)));
  const prompts = Array.from({ length: B }, (_, b) => unique[Math.floor((b * distinct) / B)]);
  const run = () => generate(model, prompts, { maxNewTokens, temperature: 0, ...(values['no-merge'] ? { mergeAdapter: false } : {}) });
  await run();
  gpu.profiling = !values['no-profile'];
  const t0 = performance.now();
  await run();
  const wall = performance.now() - t0;
  const timings = gpu.profiling ? await gpu.takeTimings() : [];
  gpu.profiling = false;
  const perOp = new Map<string, { ms: number; n: number }>();
  for (const t of timings) {
    const op = t.op.replace(/:.*/, '') + (values['by-shape'] && t.op.startsWith('matmul') ? ` ${t.shapes}` : '');
    const e = perOp.get(op) ?? { ms: 0, n: 0 };
    e.ms += t.ms;
    e.n++;
    perOp.set(op, e);
  }
  const total = [...perOp.values()].reduce((a, e) => a + e.ms, 0);
  console.log(`${values.preset} B${B} (${distinct} distinct), ${promptLen}+${maxNewTokens} tokens: ${wall.toFixed(0)} ms wall${timings.length ? `, ${total.toFixed(0)} ms of GPU time` : ''}`);
  for (const [op, e] of [...perOp].sort((a, b) => b[1].ms - a[1].ms).slice(0, 20)) {
    console.log(`${op.padEnd(44)} ${e.ms.toFixed(1).padStart(8)} ms ${((100 * e.ms) / total).toFixed(1).padStart(5)} %  x${e.n}`);
  }
  console.log(`bind groups created ${gpu.bindGroupStats.created}, reused ${gpu.bindGroupStats.reused}`);
  adapter?.dispose();
  model.dispose();
  gpu.destroy();
} finally {
  rmSync(root, { recursive: true, force: true });
}
