import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SeededRng } from '@mlagent/core-kernels';
import { loadQwenConfig, moduleShape, peftTensorName, writeSafetensors, type LoraModule, type TensorToWrite } from '@mlagent/policy';

export const PEFT_TARGETS: LoraModule[] = ['q_proj', 'v_proj', 'down_proj'];

/**
 * A PEFT adapter (r = 4, alpha = 8) for `model`, written by hand, with random A and B large enough to move its
 * logprobs (and so what it generates); `seed` picks the weights.
 */
export function writePeftAdapter(dir: string, model: string, seed = 9): string {
  mkdirSync(dir, { recursive: true });
  const cfg = loadQwenConfig(model);
  writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 4, lora_alpha: 8, lora_dropout: 0, bias: 'none', target_modules: PEFT_TARGETS }));
  const rng = new SeededRng(seed);
  const tensors: Record<string, TensorToWrite> = {};
  for (let l = 0; l < cfg.numLayers; l++) {
    for (const m of PEFT_TARGETS) {
      const [outF, inF] = moduleShape(cfg, m);
      tensors[peftTensorName(l, m, 'A')] = { dtype: 'F32', shape: [4, inF], data: () => rng.fillNormal(new Float32Array(4 * inF), 0.5) };
      tensors[peftTensorName(l, m, 'B')] = { dtype: 'F32', shape: [outF, 4], data: () => rng.fillNormal(new Float32Array(outF * 4), 0.5) };
    }
  }
  writeSafetensors(join(dir, 'adapter_model.safetensors'), tensors, { format: 'pt' });
  return dir;
}
