import { describe, expect, it } from 'vitest';
import {
  ShapeError,
  adamwUpdate,
  add,
  attention,
  attentionBackward,
  attentionDecode,
  embedding,
  embeddingBackward,
  globalGradNorm,
  headForward,
  loraLinear,
  loraLinearBackward,
  matmul,
  matmulBackward,
  rmsnorm,
  rmsnormBackward,
  rope,
  ropeBackward,
  sampleTokens,
  swiglu,
  swigluBackward,
  type Gpu,
} from '../src/index.js';
import { testGpu } from './helpers.js';

/**
 * Every op on zero-sized inputs (no tokens, no rows, K = 0, an empty parameter) either returns (empty outputs, or
 * the value an empty sum gives) or refuses with a ShapeError that says why. WebGPU refuses empty bindings, so an op
 * that dispatches over an empty tensor fails with a validation error instead: that is what this guards against.
 */
describe('ops on empty inputs', () => {
  it('return or name why, and never reach the GPU with an empty binding', async () => {
    const gpu = await testGpu();
    const t = (shape: number[]) => gpu.tensor(shape, 'f32');
    const i32 = (values: number[]) => gpu.tensor([values.length], 'i32', values);
    const cases: [string, (g: Gpu) => unknown][] = [
      ['add', (g) => add(g, t([0, 4]), t([0, 4]))],
      ['rmsnorm, backward', (g) => {
        const { rstd } = rmsnorm(g, t([0, 8]), t([8]));
        return rmsnormBackward(g, t([0, 8]), t([0, 8]), t([8]), rstd);
      }],
      ['rope, backward', (g) => [rope(g, t([1, 0, 2, 8]), { theta: 1e4 }), ropeBackward(g, t([1, 0, 2, 8]), { theta: 1e4 })]],
      ['swiglu, backward', (g) => [swiglu(g, t([0, 8]), t([0, 8])), swigluBackward(g, t([0, 8]), t([0, 8]), t([0, 8]))]],
      ['embedding, backward', (g) => [embedding(g, [], t([10, 8])), embeddingBackward(g, [], t([0, 8]), 10)]],
      ['matmul M = 0, K = 0; backward K = 0', (g) => [matmul(g, t([0, 8]), t([8, 4])), matmul(g, t([3, 0]), t([0, 4])), matmulBackward(g, t([3, 0]), t([0, 4]), t([3, 4]))]],
      ['loraLinear, backward, T = 0', (g) => {
        const [x, W, A, B] = [t([0, 8]), t([6, 8]), t([2, 8]), t([6, 2])];
        const o = { alpha: 4, dropout: 0.1, seed: 1 };
        const { h } = loraLinear(g, x, W, A, B, o);
        return loraLinearBackward(g, x, W, A, B, h, t([0, 6]), o);
      }],
      ['attention T = 0 and B = 0, backward', (g) => {
        const [q, k, v] = [t([0, 3, 2, 8]), t([0, 4, 2, 8]), t([0, 4, 2, 8])];
        const { o, lse } = attention(g, q, k, v);
        return [attention(g, t([1, 0, 2, 8]), t([1, 4, 2, 8]), t([1, 4, 2, 8]), { causal: false }), attentionBackward(g, q, k, v, o, lse, t([0, 3, 2, 8]))];
      }],
      ['attentionDecode B = 0', (g) => attentionDecode(g, t([0, 1, 2, 8]), t([0, 4, 2, 8]), t([0, 4, 2, 8]), gpu.tensor([0], 'i32'))],
      ['sampleTokens B = 0', (g) => sampleTokens(g, t([0, 10]), { temperature: 1, seed: 1 })],
      ['globalGradNorm of an empty tensor, adamwUpdate of an empty parameter', (g) => {
        adamwUpdate(g, t([0]), t([0]), t([0]), t([0]), { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 1 });
        return globalGradNorm(g, [t([0])]);
      }],
      ['headForward T = 0 (refused by name)', (g) => headForward(g, t([0, 8]), t([10, 8]), i32([]))],
    ];
    for (const [name, run] of cases) {
      try {
        run(gpu);
      } catch (e) {
        // Refusing before any GPU work, with the op's reason, is an answer too.
        expect(e, name).toBeInstanceOf(ShapeError);
        continue;
      }
      await expect(gpu.sync(), name).resolves.toBeUndefined();
    }
  });
});
