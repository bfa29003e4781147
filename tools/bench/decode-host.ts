// What a decode step costs the host, apart from the GPU: a Qwen2.5-7B-shaped stack of layers (28 by default, 7B's
// heads and layer structure, but narrow so that it runs anywhere; random weights) generating greedy tokens at
// batch 1. Per decode step: the dispatches it records (by op), the JS time to record them (the step's outermost
// gpu.scope), and the time spent in gpu.flush (encoder.finish + queue.submit, where Dawn turns the recorded passes
// into Vulkan commands). On a GPU these add to each token's latency unless they overlap the GPU's work, which the
// GPU cannot start before the first submit (MLAGENT_DISPATCHES_PER_SUBMIT). Fewer dispatches a step cut both.
// Run (after `npx nx run-many -t build`): node --import tsx tools/bench/decode-host.ts [--layers 28] [--hidden 256]
//   [--new 40] [--runs 2]
import { parseArgs } from 'node:util';
import { Gpu } from '@mlagent/core-kernels';
import { QWEN25_7B_CONFIG, generate, parseQwenConfig, randomModel } from '@mlagent/policy';

const { values } = parseArgs({
  options: {
    layers: { type: 'string', default: '28' },
    hidden: { type: 'string', default: '256' },
    new: { type: 'string', default: '40' },
    runs: { type: 'string', default: '2' },
  },
});
const count = (name: string, v: string | undefined, min = 1) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}, got ${v}`);
  return n;
};
const layers = count('layers', values.layers);
const hidden = count('hidden', values.hidden, 64);
if (hidden % 64) throw new Error(`--hidden must be a multiple of 64 (4 heads of 16+), got ${hidden}`);
const newTokens = count('new', values.new, 3);
const runs = count('runs', values.runs);

const gpu = await Gpu.create();
const cfg = parseQwenConfig({
  ...QWEN25_7B_CONFIG,
  hidden_size: hidden,
  intermediate_size: 2 * hidden,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 1024,
  num_hidden_layers: layers,
});
const model = await randomModel(gpu, cfg, { dtype: 'f32' });

// Instruments the three runtime entry points; only the outermost scope is a step (layers open their own).
interface Hooks {
  scope<T>(fn: () => T): T;
  dispatch(spec: { op: string }): void;
  flush(): void;
}
const hooks = gpu as unknown as Hooks;
const original = { scope: hooks.scope.bind(gpu), dispatch: hooks.dispatch.bind(gpu), flush: hooks.flush.bind(gpu) };
interface Step {
  recordMs: number;
  flushMs: number;
  ops: Map<string, number>;
}
let steps: Step[] = [];
let current: Step | undefined;
let depth = 0;
hooks.scope = <T>(fn: () => T): T => {
  if (depth > 0) return original.scope(fn);
  current = { recordMs: 0, flushMs: 0, ops: new Map() };
  steps.push(current);
  depth++;
  const t0 = performance.now();
  try {
    return original.scope(fn);
  } finally {
    depth--;
    current.recordMs = performance.now() - t0;
  }
};
hooks.dispatch = (spec) => {
  current?.ops.set(spec.op, (current.ops.get(spec.op) ?? 0) + 1);
  original.dispatch(spec as Parameters<typeof original.dispatch>[0]);
};
hooks.flush = () => {
  const t0 = performance.now();
  try {
    original.flush();
  } finally {
    if (current) current.flushMs += performance.now() - t0;
  }
};

const median = (a: number[]) => [...a].sort((p, q) => p - q)[a.length >> 1];
console.log(`decode-host: ${layers} layers, hidden ${hidden}, batch 1, ${newTokens} greedy tokens, on ${gpu.adapter.description || gpu.adapter.vendor}`);
for (let run = 0; run < runs; run++) {
  steps = [];
  const groups = { ...gpu.bindGroupStats };
  const t0 = performance.now();
  await generate(model, [[1, 2, 3, 4, 5, 6, 7, 8]], { maxNewTokens: newTokens, temperature: 0 });
  const wall = performance.now() - t0;
  // Step 0 is the prefill; the rest decode one token each. A step's flushes are those from its scope to the next
  // step's: the submit of its dispatches happens when the sampled token is read back.
  const decode = steps.slice(1);
  const dispatches = decode.map((s) => [...s.ops.values()].reduce((a, b) => a + b, 0));
  console.log(
    `run ${run + 1}${run === 0 ? ' (compiles)' : ''}: ${(wall / newTokens).toFixed(1)} ms a token (wall); a decode step: ` +
      `${median(dispatches)} dispatches, recording ${median(decode.map((s) => s.recordMs)).toFixed(2)} ms, ` +
      `flushes ${median(decode.map((s) => s.flushMs)).toFixed(2)} ms (medians over ${decode.length} steps); ` +
      `bind groups made ${gpu.bindGroupStats.created - groups.created}, reused ${gpu.bindGroupStats.reused - groups.reused}`,
  );
  if (run === runs - 1) {
    const last = decode[decode.length - 1];
    console.log([...last.ops.entries()].sort((a, b) => b[1] - a[1]).map(([op, n]) => `  ${op}: ${n}`).join('\n'));
  }
}
model.dispose();
gpu.destroy();
