// What a dispatch costs beyond its work: N dispatches of a trivial kernel (each workgroup adds one number per lane)
// recorded in one compute pass and submitted once; recording and total time per dispatch. On lavapipe this bounds
// designs that need many dispatches, e.g. binding A through 64 KB uniform windows as well (docs/BENCHMARKS.md).
// Run: node --import tsx tools/bench/dispatch-overhead.ts [--dispatches 500]
import { parseArgs } from 'node:util';
import { Gpu } from '@mlagent/core-kernels';

const { values } = parseArgs({ options: { dispatches: { type: 'string', default: '500' } } });
const n = Number(values.dispatches);
if (!Number.isInteger(n) || n < 1) throw new Error(`--dispatches must be a positive integer, got ${values.dispatches}`);

const gpu = await Gpu.create();
const dev = gpu.device;
const code = `
@group(0) @binding(0) var<uniform> u: vec4<f32>;
@group(0) @binding(1) var<storage, read_write> o: array<f32>;
@compute @workgroup_size(8)
fn main(@builtin(global_invocation_id) g: vec3<u32>) { o[g.x] = o[g.x] + u.x; }`;
const pipeline = dev.createComputePipeline({ layout: 'auto', compute: { module: dev.createShaderModule({ code }), entryPoint: 'main' } });
const uniforms = dev.createBuffer({ size: 4 * 65536, usage: GPUBufferUsage.UNIFORM });
const out = dev.createBuffer({ size: 1 << 16, usage: GPUBufferUsage.STORAGE });
const bindGroup = (i: number) =>
  dev.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [
      { binding: 0, resource: { buffer: uniforms, offset: (i % 4) * 65536, size: 65536 } },
      { binding: 1, resource: { buffer: out } },
    ],
  });

console.log(`adapter: ${gpu.adapter.description}`);
console.log('| workgroups per dispatch | bind groups | recording µs per dispatch | total µs per dispatch |\n|---:|---|---:|---:|');
for (const [workgroups, fresh] of [
  [2, true],
  [2, false],
  [16, true],
] as const) {
  const fixed = bindGroup(0);
  let record = 0;
  let total = 0;
  // The first round compiles and warms up; the last is reported.
  for (let round = 0; round < 3; round++) {
    const t0 = performance.now();
    const encoder = dev.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    for (let i = 0; i < n; i++) {
      pass.setBindGroup(0, fresh ? bindGroup(i) : fixed);
      pass.dispatchWorkgroups(workgroups);
    }
    pass.end();
    dev.queue.submit([encoder.finish()]);
    const t1 = performance.now();
    await dev.queue.onSubmittedWorkDone();
    record = ((t1 - t0) * 1000) / n;
    total = ((performance.now() - t0) * 1000) / n;
  }
  console.log(`| ${workgroups} | ${fresh ? 'one per dispatch' : 'one for all'} | ${record.toFixed(1)} | ${total.toFixed(1)} |`);
}
gpu.destroy();
