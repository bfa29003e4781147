import { AdamW, globalGradNorm, gradNormPartials } from '../kernels/adamw.js';
import { sampleTokens } from '../kernels/sampling.js';
import type { Gpu } from '../runtime/gpu.js';
import type { Tensor } from '../runtime/tensor.js';
import type { BenchCase } from './types.js';
import { benchNormalValues, benchValues } from './data.js';
import { checkAdamwFirstStep, checkGradNorm, checkSample } from './check-optim.js';

const QWEN_V = 152064;

/** LoRA r=16 A/B shapes on all seven linear layers of Qwen2.5-7B: 392 tensors, 40.4M parameters. */
function loraShapes(layers: number, r = 16): number[][] {
  const [H, KV, I] = [3584, 512, 18944];
  const linears: Array<[number, number]> = [[H, H], [H, KV], [H, KV], [H, H], [H, I], [H, I], [I, H]];
  const out: number[][] = [];
  for (let l = 0; l < layers; l++) for (const [inF, outF] of linears) out.push([r, inF], [outF, r]);
  return out;
}

function tensors(gpu: Gpu, shapes: number[][], scale: number, seed: number): Tensor[] {
  return shapes.map((s, i) => gpu.tensor(s, 'f32', benchValues(s[0] * s[1], scale, seed + i)));
}

const size = (shapes: number[][]) => shapes.reduce((a, s) => a + s[0] * s[1], 0);
const torchTensors = (shapes: number[][], what: string) => `[torch.randn(${what},device=dev) for (a,b) in ${JSON.stringify(shapes)}]`;

function adamwCase(name: string, shapes: number[][], sz: 'cpu' | 'gpu'): BenchCase {
  const n = size(shapes);
  return {
    family: 'optim',
    name: `adamw step + clip ${name} (${shapes.length} tensors, ${(n / 1e6).toFixed(1)}M params)`,
    // Reads p, g, m, v, writes p, m, v; plus the norm's read of g.
    bytes: 8 * 4 * n,
    size: sz,
    prepare(gpu) {
      const hyper = { lr: 1e-4, weightDecay: 0.01, maxGradNorm: 1 };
      const params = tensors(gpu, shapes, 1, 1);
      const grads = tensors(gpu, shapes, 0.01, 1000);
      const opt = new AdamW(gpu, params, hyper);
      return {
        run: () => void opt.step(grads),
        dispose: () => {
          opt.dispose();
          for (const t of [...params, ...grads]) t.dispose();
        },
        // The timed steps moved the parameters: a fresh optimizer over fresh copies takes one step.
        check: async () => {
          const fresh = tensors(gpu, shapes, 1, 1);
          const first = new AdamW(gpu, fresh, hyper);
          try {
            return await checkAdamwFirstStep(first, fresh.map((t, i) => benchValues(t.size, 1, 1 + i)), grads);
          } finally {
            first.dispose();
            fresh.forEach((t) => t.dispose());
          }
        },
      };
    },
    torch: {
      setup:
        `ps=${torchTensors(shapes, 'a,b')}\n` +
        `for p in ps: p.requires_grad_(); p.grad=torch.randn_like(p)*0.01\n` +
        `opt=torch.optim.AdamW(ps,lr=1e-4,weight_decay=0.01)`,
      run: 'torch.nn.utils.clip_grad_norm_(ps,1.0); opt.step()',
    },
  };
}

function normCase(name: string, shapes: number[][], sz: 'cpu' | 'gpu'): BenchCase {
  const n = size(shapes);
  return {
    family: 'optim',
    name: `global grad norm ${name} (${shapes.length} tensors, ${(n / 1e6).toFixed(1)}M)`,
    bytes: 4 * n,
    size: sz,
    prepare(gpu) {
      const grads = tensors(gpu, shapes, 0.01, 7);
      const out = gpu.tensor([1], 'f32');
      const partials = gpu.tensor([gradNormPartials(gpu, grads)], 'f32');
      const run = () => void globalGradNorm(gpu, grads, { out, partials });
      return {
        run,
        dispose: () => [...grads, out, partials].forEach((t) => t.dispose()),
        check: () => (run(), checkGradNorm(grads, out)),
      };
    },
    torch: {
      setup: `gs=${torchTensors(shapes, 'a,b')}`,
      run: 'n=torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in gs]))',
    },
  };
}

const SAMPLE_FILTERS = {
  none: { opts: {}, torch: 's=torch.multinomial(torch.softmax(l/0.7,-1),1)' },
  'top-k=50 top-p=0.9': {
    opts: { topK: 50, topP: 0.9 },
    torch: 'v,ix=torch.topk(l/0.7,50,-1); pr=torch.softmax(v,-1); c=pr.cumsum(-1); pr[(c-pr)>0.9]=0; s=ix.gather(-1,torch.multinomial(pr,1))',
  },
  // Hugging Face's way: sort the whole row.
  'top-p=0.9': {
    opts: { topP: 0.9 },
    torch: 'v,ix=torch.sort(l/0.7,-1,descending=True); pr=torch.softmax(v,-1); c=pr.cumsum(-1); pr[(c-pr)>0.9]=0; s=ix.gather(-1,torch.multinomial(pr,1))',
  },
};

function sampleCase(B: number, filter: keyof typeof SAMPLE_FILTERS, sz: 'cpu' | 'gpu'): BenchCase {
  const V = QWEN_V;
  const opts = { temperature: 0.7, ...SAMPLE_FILTERS[filter].opts };
  return {
    family: 'optim',
    name: `sample B=${B} V=${V} T=0.7${filter === 'none' ? '' : ` ${filter}`}`,
    bytes: 4 * B * V,
    size: sz,
    prepare(gpu) {
      // Normal like torch's side (randn * 3), and like real logits: top-k/top-p settle early on them.
      const logits = gpu.tensor([B, V], 'f32', benchNormalValues(B * V, 3, 3));
      const ids = gpu.tensor([B], 'i32');
      const logprobs = gpu.tensor([B], 'f32');
      const tempLogprobs = gpu.tensor([B], 'f32');
      let step = 0;
      const out = { ids, logprobs, tempLogprobs };
      const run = () => void sampleTokens(gpu, logits, { ...opts, seed: 1, step: step++, out });
      return {
        run,
        dispose: () => [logits, ids, logprobs, tempLogprobs].forEach((t) => t.dispose()),
        check: () => (run(), checkSample(logits, opts, out)),
      };
    },
    torch: {
      setup: `l=torch.randn(${B},${V},device=dev)*3`,
      run: SAMPLE_FILTERS[filter].torch,
    },
  };
}

/** Benchmarks for the optimizer and sampling kernels. */
export const optimBenches: BenchCase[] = [
  adamwCase('4x[1024,256]', Array.from({ length: 4 }, () => [1024, 256]), 'cpu'),
  adamwCase('LoRA r=16 all linears 7B', loraShapes(28), 'gpu'),
  normCase('LoRA r=16 one 7B layer', loraShapes(1), 'cpu'),
  normCase('LoRA r=16 all linears 7B', loraShapes(28), 'gpu'),
  sampleCase(1, 'none', 'cpu'),
  sampleCase(1, 'top-k=50 top-p=0.9', 'cpu'),
  sampleCase(1, 'top-p=0.9', 'cpu'),
  sampleCase(1, 'none', 'gpu'),
  sampleCase(1, 'top-k=50 top-p=0.9', 'gpu'),
  sampleCase(1, 'top-p=0.9', 'gpu'),
  sampleCase(16, 'none', 'gpu'),
  sampleCase(16, 'top-k=50 top-p=0.9', 'gpu'),
];
