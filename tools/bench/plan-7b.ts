// What the memory planner says of docs/training/qwen2.5-7b-config.yaml on a GPU of --budget GiB (default 80): the
// SFT micro-batch, PPO's generation and update phases at a few prompt lengths, and evaluation's generate() calls,
// with f16 and with f32 KV caches. Planner estimates, not measurements (the planner lands within 3.5% of the
// allocator's peak on lavapipe; packages/*/test/*memory*.test.ts).
// Run (after `npx nx run-many -t build`): node --import tsx tools/bench/plan-7b.ts [--budget 80] [--config FILE]
import { parseArgs } from 'node:util';
import { planMemory, qwen25_7bConfig } from '@mlagent/policy';
import { checkPpoMemory, checkSftMemory, evalBatchFor, loadTrainConfig, planPpoMemory } from '@mlagent/rl';

const { values } = parseArgs({ options: { budget: { type: 'string', default: '80' }, config: { type: 'string', default: 'docs/training/qwen2.5-7b-config.yaml' } } });
const GiB = 2 ** 30;
const gib = (b: number) => `${(b / GiB).toFixed(1)} GiB`;
const cfg = qwen25_7bConfig();
const config = loadTrainConfig(values.config);
const device = { software: false, maxBinding: 2 ** 31 - 4, budgetBytes: Number(values.budget) * GiB };
const c = config.ppo;
console.log(`${values.config} on ${values.budget} GiB (dtype ${config.dtype}, LoRA r=${config.lora.rank}, ppo.generationBatch ${c.generationBatch}, maxNewTokens ${c.maxNewTokens})`);
console.log(checkSftMemory(cfg, config, { batch: config.sft.batchSize, seqLen: config.sft.maxSeqLen }, device).line);
for (const prompt of [2000, 6000, 12000, c.maxPromptTokens ?? 15000]) {
  const shape = { samples: Array.from({ length: c.minibatchSize }, () => ({ prompt, response: c.maxNewTokens })) };
  const r = checkPpoMemory(cfg, config, shape, device, { reference: true });
  console.log(`ppo at ${prompt}-token prompts: micro-batches of ${r.microBatchSize}; ${r.plan.phases.map((p) => `${p.name}: ${gib(p.bytes)}`).join(', ')}`);
}
const atCap = { samples: Array.from({ length: c.minibatchSize }, () => ({ prompt: c.maxPromptTokens ?? 15000, response: c.maxNewTokens })) };
for (const generationBatch of [16, 32, 48, 64]) {
  const phases = planPpoMemory(cfg, { ...config, ppo: { ...c, generationBatch } }, atCap, 1, device, { reference: true }).phases;
  const kvF32 = planMemory(cfg, { batch: generationBatch, seqLen: (c.maxPromptTokens ?? 15000) + c.maxNewTokens, kvCache: true, dtype: config.dtype, kvDtype: 'f32' });
  const kvF16 = planMemory(cfg, { batch: generationBatch, seqLen: (c.maxPromptTokens ?? 15000) + c.maxNewTokens, kvCache: true, dtype: config.dtype, kvDtype: 'f16' });
  console.log(`ppo generation of ${generationBatch} a call at the prompt cap: ${gib(phases[0].bytes)} with f16 KV caches (${gib(kvF16.kvCache)} of caches), ${gib(phases[0].bytes - kvF16.kvCache + kvF32.kvCache)} with f32 ones`);
}
const fits = evalBatchFor(cfg, config, device)!;
for (const prompt of [2000, 5000, 10000, 15000]) console.log(`eval: ${fits(Array.from({ length: 104 }, () => new Array<number>(prompt).fill(1)))} of 104 trajectories a generate() call at ${prompt}-token prompts`);
