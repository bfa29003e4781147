// How far the sampler's log-probs (generate(), which PPO records as π_old unless ppo.oldLogprobs is 'actor') lie
// from the training forward's (policyForward, what the PPO ratio's numerator uses), for f32 and f16 weights and KV
// caches: the gap that `oldLogprobs: actor` takes out of the ratio. Sampled at temperature 1 from 4 prompts.
// Run (after `npx nx run-many -t build`): node --import tsx tools/bench/logprob-gap.ts [--model DIR] [--prompt 200]
//   [--new 32]   (default model: init-model's tiny qwen2, random weights, written to a temp dir)
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Gpu } from '@mlagent/core-kernels';
import { QwenModel, generate, initModel, policyForward } from '@mlagent/policy';

const { values } = parseArgs({ options: { model: { type: 'string' }, prompt: { type: 'string', default: '200' }, new: { type: 'string', default: '32' } } });
const tmp = values.model ? undefined : mkdtempSync(join(tmpdir(), 'logprob-gap-'));
const dir = values.model ?? join(tmp!, 'tiny');
if (tmp) initModel({ arch: 'qwen2', preset: 'tiny', outDir: dir, seed: 0 });
const [promptLen, maxNewTokens] = [Number(values.prompt), Number(values.new)];
const gpu = await Gpu.create();
try {
  for (const dtype of gpu.features.shaderF16 ? (['f32', 'f16'] as const) : (['f32'] as const)) {
    const model = await QwenModel.load(gpu, dir, { dtype });
    const V = model.config.vocabSize;
    const prompts = [0, 1, 2, 3].map((b) => Array.from({ length: promptLen + 13 * b }, (_, i) => (i * 7919 + b * 104729) % V));
    for (const kvDtype of gpu.features.shaderF16 ? (['f32', 'f16'] as const) : (['f32'] as const)) {
      const res = await generate(model, prompts, { maxNewTokens, temperature: 1, seed: 3, kvDtype });
      const pass = await policyForward(model, prompts.map((p, b) => [...p, ...res[b].ids]), { grad: false, temperature: 1 });
      const gaps = res.flatMap((r, b) => r.logprobs.map((lp, t) => Math.abs(lp - pass.logprobs[b][prompts[b].length + t])));
      const mean = gaps.reduce((a, g) => a + g, 0) / gaps.length;
      console.log(`weights ${dtype}, KV caches ${kvDtype}: mean |gap| ${mean.toExponential(2)}, largest ${Math.max(...gaps).toExponential(2)} over ${gaps.length} tokens`);
    }
    model.dispose();
  }
} finally {
  gpu.destroy();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
}
