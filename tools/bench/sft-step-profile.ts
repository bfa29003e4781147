// Where the GPU time of one LoRA SFT step of the main job's model goes, op by op: `mlagent train --preset tiny`'s
// policy (init-model mini with Qwen's tokenizer cut to 4000 merges, LoRA r = 64 on all seven linears), a batch of
// 4 sequences of T tokens (default 675, about the main job's), forward + backward (maskedNllBackward) and the
// optimizer step, GPU timestamps summed per op over 3 steps after a warm-up.
// Run (after `npx nx run-many -t build`): node --import tsx tools/bench/sft-step-profile.ts [T]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Gpu, SeededRng } from '@mlagent/core-kernels';
import { LORA_MODULES, LoraAdapter, QwenModel, TrainOptimizer, initModel, maskedNllBackward } from '@mlagent/policy';

const T = Number(process.argv[2] ?? 675);
const STEPS = 3;
const root = mkdtempSync(join(tmpdir(), 'sft-profile-'));
const dir = join(root, 'model');
await initModel({ arch: 'qwen2', preset: 'mini', outDir: dir, seed: 0, vocabMerges: 4000, headInitStd: 0.2 });
const gpu = await Gpu.create();
const model = await QwenModel.load(gpu, dir);
const rng = new SeededRng(1);
const seqs = Array.from({ length: 4 }, () => Array.from({ length: T }, () => rng.int(0, model.config.vocabSize - 1)));
const masks = seqs.map((s) => new Float32Array(s.length).fill(1));
const adapter = LoraAdapter.create(model, { r: 64, alpha: 128, targetModules: LORA_MODULES }, { seed: 1 });
const opt = new TrainOptimizer(gpu, [adapter], { lr: 1e-4, maxGradNorm: 1 });
const step = async () => {
  await maskedNllBackward(model, seqs, masks, { adapter });
  await opt.step();
};
await step();
const perOp = new Map<string, number>();
let wall = 0;
for (let i = 0; i < STEPS; i++) {
  gpu.profiling = true;
  const t0 = performance.now();
  await step();
  wall += performance.now() - t0;
  for (const t of await gpu.takeTimings()) {
    const op = t.op.replace(/:.*/, '');
    perOp.set(op, (perOp.get(op) ?? 0) + t.ms / STEPS);
  }
  gpu.profiling = false;
}
const total = [...perOp.values()].reduce((a, b) => a + b, 0);
console.log(`4 x ${T} tokens: ${(wall / STEPS).toFixed(0)} ms a step (wall), ${total.toFixed(0)} ms of GPU time`);
for (const [op, ms] of [...perOp].sort((a, b) => b[1] - a[1]).slice(0, 16)) {
  console.log(`${op.padEnd(34)} ${ms.toFixed(1).padStart(8)} ms ${((100 * ms) / total).toFixed(1).padStart(5)} %`);
}
opt.dispose();
adapter.dispose();
gpu.destroy();
rmSync(root, { recursive: true, force: true });
