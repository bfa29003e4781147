// What handing a value across the lanes of a subgroup costs in llvmpipe, by operation: subgroupShuffle with a
// uniform index that changes each step, subgroupShuffle with a constant index, subgroupBroadcast (constant index;
// WGSL allows no other), and none (the same multiply-adds on the lane's own value). The CPU kernels (matmul-cpu,
// head-cpu, attention-cpu) are built on the shuffle; this probe is why they stay at 8 lanes (docs/BENCHMARKS.md,
// "AVX-512 hosts").
// Run: LP_NUM_THREADS=1 node --import tsx tools/bench/subgroup-probe.ts
//      LP_NUM_THREADS=1 LP_NATIVE_VECTOR_WIDTH=512 node --import tsx tools/bench/subgroup-probe.ts   (16 lanes)
// Each kind: workgroups of one subgroup, every lane doing STEPS rounds of one multiply-add per lane of the
// subgroup; the total lane count is the same at any width, so ns per lane-op compare across widths.
import { Gpu } from '@mlagent/core-kernels';
import { medianDispatchMs } from './probe-dispatch.js';

const STEPS = 4096;
const TOTAL_LANES = 2048;

const gpu = await Gpu.create();
const lanes = gpu.device.adapterInfo.subgroupMaxSize;
if (!gpu.features.subgroups || !lanes || lanes !== gpu.device.adapterInfo.subgroupMinSize) {
  throw new Error(`needs subgroups of one fixed size; this adapter has ${gpu.features.subgroups ? `${gpu.device.adapterInfo.subgroupMinSize}-${lanes}` : 'none'}`);
}
const dev = gpu.device;
const workgroups = TOTAL_LANES / lanes;
const src = dev.createBuffer({ size: TOTAL_LANES * 4, usage: GPUBufferUsage.STORAGE });
const sink = dev.createBuffer({ size: TOTAL_LANES * 4, usage: GPUBufferUsage.STORAGE });
const each = (f: (u: number) => string) => Array.from({ length: lanes }, (_, u) => f(u)).join('\n    ');
const kinds: Record<string, string> = {
  'shuffle, uniform index': each((u) => `acc = fma(subgroupShuffle(x, (k + ${u}u) & ${lanes - 1}u), acc, x);`),
  'shuffle, constant index': each((u) => `acc = fma(subgroupShuffle(x, ${u}u), acc, x);`),
  'broadcast (constant index)': each((u) => `acc = fma(subgroupBroadcast(x, ${u}u), acc, x);`),
  none: each((u) => `acc = fma(x + ${u}.0, acc, x);`),
};

async function time(body: string): Promise<number> {
  const code = `enable subgroups;
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> sink: array<f32>;
@compute @workgroup_size(${lanes})
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  var x = src[wid.x * ${lanes}u + li];
  var acc = 0.0;
  for (var k = 0u; k < ${STEPS}u; k++) {
    ${body}
    x = x * 0.5;
  }
  sink[wid.x * ${lanes}u + li] = acc;
}`;
  return medianDispatchMs(dev, code, [{ buffer: src }, { buffer: sink }], workgroups, 7);
}

console.log(`adapter: ${gpu.adapter.description}; ${lanes} lanes; LP_NUM_THREADS=${process.env.LP_NUM_THREADS ?? '(unset)'}`);
console.log('| kind | median ms | ns per lane-op |\n|---|---:|---:|');
for (const [kind, body] of Object.entries(kinds)) {
  const ms = await time(body);
  console.log(`| ${kind} | ${ms.toFixed(1)} | ${((ms * 1e6) / (TOTAL_LANES * STEPS * lanes)).toFixed(3)} |`);
}
gpu.destroy();
