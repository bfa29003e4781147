// The README's worked example (examples/char-mlp.ts): its gradients against a float64 CPU model whose own backward is
// checked by finite differences, and a short training run that must learn.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Gpu } from '../src/index.js';
import { CharMlp, encodeChars, initCharMlp, trainCharMlp, type CharMlpSizes, type CharMlpWeights } from '../examples/char-mlp.js';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await Gpu.create();
});
afterAll(() => gpu?.destroy());

type Params = { embed: Float64Array; norm: Float64Array; w1: Float64Array; w2: Float64Array };

/** The example's model in float64: the loss and, by hand, its gradients. */
function reference(sizes: CharMlpSizes, p: Params, head: Float64Array, ids: Int32Array, targets: Int32Array) {
  const { vocab: V, hidden: H, inner: I } = sizes;
  const T = ids.length;
  const g = { embed: new Float64Array(V * H), norm: new Float64Array(H), w1: new Float64Array(2 * I * H), w2: new Float64Array(H * I) };
  const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));
  let loss = 0;
  for (let t = 0; t < T; t++) {
    const x = p.embed.slice(ids[t] * H, ids[t] * H + H);
    const rstd = 1 / Math.sqrt(x.reduce((s, v) => s + v * v, 0) / H + 1e-6);
    const h = x.map((v, j) => v * rstd * p.norm[j]);
    const u = Array.from({ length: 2 * I }, (_, o) => h.reduce((s, v, j) => s + v * p.w1[o * H + j], 0));
    const s = Array.from({ length: I }, (_, i) => u[i] * sigmoid(u[i]) * u[I + i]);
    const r = x.map((v, j) => v + s.reduce((acc, si, i) => acc + si * p.w2[j * I + i], 0));
    const logits = Array.from({ length: V }, (_, v) => r.reduce((acc, rj, j) => acc + rj * head[v * H + j], 0));
    const max = Math.max(...logits);
    const lse = max + Math.log(logits.reduce((acc, l) => acc + Math.exp(l - max), 0));
    loss += (lse - logits[targets[t]]) / T;

    const dlogits = logits.map((l, v) => (Math.exp(l - lse) - (v === targets[t] ? 1 : 0)) / T);
    const dr = Array.from({ length: H }, (_, j) => dlogits.reduce((acc, d, v) => acc + d * head[v * H + j], 0));
    const ds = Array.from({ length: I }, (_, i) => dr.reduce((acc, d, j) => acc + d * p.w2[j * I + i], 0));
    for (let j = 0; j < H; j++) for (let i = 0; i < I; i++) g.w2[j * I + i] += dr[j] * s[i];
    const du = new Array<number>(2 * I);
    for (let i = 0; i < I; i++) {
      const sg = sigmoid(u[i]);
      du[i] = ds[i] * u[I + i] * sg * (1 + u[i] * (1 - sg));
      du[I + i] = ds[i] * u[i] * sg;
    }
    const dh = Array.from({ length: H }, (_, j) => du.reduce((acc, d, o) => acc + d * p.w1[o * H + j], 0));
    for (let o = 0; o < 2 * I; o++) for (let j = 0; j < H; j++) g.w1[o * H + j] += du[o] * h[j];
    const dot = x.reduce((acc, v, j) => acc + dh[j] * p.norm[j] * v, 0);
    for (let j = 0; j < H; j++) {
      g.norm[j] += dh[j] * x[j] * rstd;
      g.embed[ids[t] * H + j] += dr[j] + rstd * dh[j] * p.norm[j] - (x[j] * rstd ** 3 * dot) / H;
    }
  }
  return { loss, grads: g };
}

const f64 = (w: CharMlpWeights): Params => ({ embed: Float64Array.from(w.embed), norm: Float64Array.from(w.norm), w1: Float64Array.from(w.w1), w2: Float64Array.from(w.w2) });

describe('examples/char-mlp.ts', () => {
  // Not multiples of any tile: H 10, I 6, V 7, T 9; norm weights away from 1 so their gradient matters.
  const sizes: CharMlpSizes = { vocab: 7, hidden: 10, inner: 6 };
  const weights = initCharMlp(sizes, 3);
  weights.norm = Float32Array.from(weights.norm, (_, j) => 0.5 + j / 10);
  const ids = Int32Array.from([0, 3, 6, 3, 1, 1, 5, 2, 4]);
  const targets = Int32Array.from([3, 6, 3, 1, 1, 5, 2, 4, 0]);
  const head = Float64Array.from(weights.head);

  it('the float64 reference backward matches finite differences of its loss', () => {
    const p = f64(weights);
    const { grads } = reference(sizes, p, head, ids, targets);
    const eps = 1e-6;
    for (const name of ['embed', 'norm', 'w1', 'w2'] as const) {
      for (const i of [0, 7, p[name].length - 1]) {
        const keep = p[name][i];
        p[name][i] = keep + eps;
        const up = reference(sizes, p, head, ids, targets).loss;
        p[name][i] = keep - eps;
        const down = reference(sizes, p, head, ids, targets).loss;
        p[name][i] = keep;
        expect(grads[name][i], `${name}[${i}]`).toBeCloseTo((up - down) / (2 * eps), 7);
      }
    }
  });

  it('the GPU loss and gradients match the float64 reference', async () => {
    const model = new CharMlp(gpu, sizes, weights);
    const { loss, grads } = model.lossAndGrads(ids, targets);
    const ref = reference(sizes, f64(weights), head, ids, targets);
    expect((await loss.read())[0]).toBeCloseTo(ref.loss, 5);
    const names = ['embed', 'norm', 'w1', 'w2'] as const;
    for (let k = 0; k < names.length; k++) {
      const got = await grads[k].read();
      const want = ref.grads[names[k]];
      const scale = Math.max(...want.map(Math.abs));
      expect(scale, names[k]).toBeGreaterThan(1e-3);
      const worst = Math.max(...want.map((w, i) => Math.abs(got[i] - w)));
      expect(worst / scale, names[k]).toBeLessThan(1e-4);
    }
    for (const t of [loss, ...grads]) t.dispose();
    model.dispose();
  });

  it('learns: 60 AdamW steps take the loss on a repetitive text far below a uniform guess', async () => {
    const { ids: text, alphabet } = encodeChars('the quick brown fox jumps over the lazy dog. '.repeat(12));
    const s = { vocab: alphabet.length, hidden: 32, inner: 64 };
    const model = new CharMlp(gpu, s, initCharMlp(s));
    const before = gpu.memory().inUse;
    const losses = await trainCharMlp(model, text, { steps: 60, batch: 48, lr: 1e-2 });
    expect(losses).toHaveLength(60);
    expect(losses.every(Number.isFinite)).toBe(true);
    const last = losses.slice(-5).reduce((a, b) => a + b, 0) / 5;
    // Each character of this text has one or two possible successors: the bigram loss is near 0.1 nats.
    expect(last).toBeLessThan(0.4 * Math.log(alphabet.length));
    expect(last).toBeLessThan(0.4 * losses[0]);
    expect(gpu.memory().inUse).toBe(before); // every step's activations, gradients and optimizer state freed
    model.dispose();
  });
});
