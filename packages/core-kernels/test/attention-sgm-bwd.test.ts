import { describe, it } from 'vitest';
import { roundToF16 } from '../src/index.js';
import { attention } from '../src/kernels/attention.js';
import { attentionBackward } from '../src/kernels/attention-backward.js';
import { attentionBackwardRef, type AttentionDims } from '../src/reference/attention.js';
import { Rng, expectClose, skipShaderOptimization, testGpu } from './helpers.js';

// Test-only kernels (emulated matrix operations), which lavapipe spends most of this file compiling.
skipShaderOptimization();

// A file of its own (attention-sgm.test.ts has the forward), so that a cold shader cache compiles the two sets of
// emulated pipelines in two test processes at once.
interface Case extends AttentionDims {
  causal?: boolean;
  lengths?: number[];
}

// Emulated 4x4x4 fragments with 8-lane subgroups (lavapipe), 2 subgroups, 8-query blocks: padding with GQA,
// causal and not with T != S, and causal with S > T, where key blocks see queries from j - (S - T) on.
const CASES: Case[] = [
  { B: 2, T: 21, S: 21, Hq: 6, Hkv: 2, D: 8, lengths: [21, 13] },
  { B: 1, T: 11, S: 30, Hq: 2, Hkv: 1, D: 8, causal: false },
  { B: 1, T: 11, S: 30, Hq: 4, Hkv: 2, D: 8 },
];

describe('subgroup-matrix attention backward (emulated matrix operations)', () => {
  it('backward (dq and dk/dv kernels) matches the float64 reference: GQA, causal and not, padding, T != S, a cached prefix', async () => {
    const gpu = await testGpu();
    for (const c of CASES) {
      const rng = new Rng(700 + c.T);
      const r = (n: number) => roundToF16(rng.randn(n));
      const x = { q: r(c.B * c.T * c.Hq * c.D), k: r(c.B * c.S * c.Hkv * c.D), v: r(c.B * c.S * c.Hkv * c.D), dO: r(c.B * c.T * c.Hq * c.D) };
      const [q, dO] = [x.q, x.dO].map((a) => gpu.tensor([c.B, c.T, c.Hq, c.D], 'f16', a));
      const [k, v] = [x.k, x.v].map((a) => gpu.tensor([c.B, c.S, c.Hkv, c.D], 'f16', a));
      const lengths = c.lengths ? gpu.tensor([c.B], 'i32', c.lengths) : undefined;
      const opts = { causal: c.causal, lengths };
      const { o, lse } = attention(gpu, q, k, v, { ...opts, path: 'scalar' });
      const g = attentionBackward(gpu, q, k, v, o, lse, dO, { ...opts, sgmBackward: { nsub: 2, bt: 8 }, sgmEmulate: true });
      const ref = attentionBackwardRef(x.q, x.k, x.v, x.dO, c, { causal: c.causal, lengths: c.lengths });
      // P and dS are rounded to f16 before their products, as on the tensor cores; the gradients are f16.
      const tol = { atol: 1e-2, rtol: 2e-2 };
      const what = JSON.stringify(c);
      expectClose(await g.dq.read(), ref.dq, tol, `dq ${what}`);
      expectClose(await g.dk.read(), ref.dk, tol, `dk ${what}`);
      expectClose(await g.dv.read(), ref.dv, tol, `dv ${what}`);
      [q, k, v, dO, lengths, o, lse, g.dq, g.dk, g.dv].forEach((t) => t?.dispose());
    }
  }, 240_000);
});
