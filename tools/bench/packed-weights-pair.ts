// A LoRA SFT step with the frozen weights packed once (QwenModel.packWeights) against the same step packing them
// in every product, alternating in one process so the machine's drift falls on both sides. The model is
// `init-model --preset P` (qwen2, f32), LoRA r = 16 on all seven linears, one sequence of T random tokens,
// maskedNllBackward + AdamW. Prints each round's times and the median on/off ratio (below 1: packing once is faster).
// Run (after `npx nx run-many -t build`): node --import tsx tools/bench/packed-weights-pair.ts [preset] [T] [rounds]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Gpu, SeededRng } from '@mlagent/core-kernels';
import { LORA_MODULES, LoraAdapter, QwenModel, TrainOptimizer, initModel, maskedNllBackward, type ModelPreset } from '@mlagent/policy';

const preset = (process.argv[2] ?? 'small') as ModelPreset;
const T = Number(process.argv[3] ?? 128);
const rounds = Number(process.argv[4] ?? 5);
const root = mkdtempSync(join(tmpdir(), 'packed-pair-'));
const gpu = await Gpu.create();
try {
  const dir = join(root, 'model');
  initModel({ arch: 'qwen2', preset, outDir: dir, seed: 0 });
  const model = await QwenModel.load(gpu, dir);
  const rng = new SeededRng(1);
  const seqs = [Array.from({ length: T }, () => rng.int(0, model.config.vocabSize - 1))];
  const masks = seqs.map((s) => new Float32Array(s.length).fill(1));
  const adapter = LoraAdapter.create(model, { r: 16, alpha: 32, targetModules: LORA_MODULES }, { seed: 1 });
  const opt = new TrainOptimizer(gpu, [adapter], { lr: 1e-4, maxGradNorm: 1 });
  const step = async (packed: boolean): Promise<number> => {
    model.packWeights = packed;
    const t0 = performance.now();
    await maskedNllBackward(model, seqs, masks, { adapter });
    await opt.step();
    return performance.now() - t0;
  };
  await step(false); // compiles the kernels
  await step(true); // and makes the packs
  console.log(`${preset}, 1 x ${T} tokens, packs ${(model.packedWeightBytes / 2 ** 20).toFixed(1)} MiB (${gpu.adapter.description})`);
  const ratios: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const order = i % 2 === 0 ? [false, true] : [true, false];
    const ms = new Map<boolean, number>();
    for (const packed of order) ms.set(packed, await step(packed));
    const [off, on] = [ms.get(false)!, ms.get(true)!];
    ratios.push(on / off);
    console.log(`round ${i + 1}: off ${off.toFixed(0)} ms, on ${on.toFixed(0)} ms, on/off ${(on / off).toFixed(3)}`);
  }
  ratios.sort((a, b) => a - b);
  console.log(`median on/off ${ratios[Math.floor(ratios.length / 2)].toFixed(3)} (${ratios[0].toFixed(3)}-${ratios[ratios.length - 1].toFixed(3)})`);
  opt.dispose();
  adapter.dispose();
  model.dispose();
} finally {
  gpu.destroy();
  rmSync(root, { recursive: true, force: true });
}
