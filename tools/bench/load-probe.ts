// What one 8-lane vec4 load costs in a compute shader, by where the data lives: a storage buffer, a uniform buffer,
// workgroup memory or an rgba32float texture; `scalar` is one f32 from a storage buffer (widened to vec4, so its
// time per load compares with the others' time per 4 values). On lavapipe each is a different code path in
// llvmpipe, and which one a kernel can feed from decides its design (docs/BENCHMARKS.md, lavapipe f32 matmul).
// Run: LP_NUM_THREADS=1 node --import tsx tools/bench/load-probe.ts [--kinds storage,uniform,workgroup,texture,scalar]
// Each kind: 256 workgroups of 8 lanes, each lane summing 4096 vec4 loads at per-lane addresses; median of 9.
import { parseArgs } from 'node:util';
import { Gpu } from '@mlagent/core-kernels';
import { medianDispatchMs } from './probe-dispatch.js';

type Kind = 'storage' | 'uniform' | 'workgroup' | 'texture' | 'scalar';
const KINDS: Kind[] = ['storage', 'uniform', 'workgroup', 'texture', 'scalar'];
const WIDTH = 256; // texels (vec4) per row of the source
const STEPS = 4096; // loads per lane
const WORKGROUPS = 256;

const { values } = parseArgs({ options: { kinds: { type: 'string', default: KINDS.join(',') } } });
const kinds = values.kinds.split(',') as Kind[];
for (const k of kinds) if (!KINDS.includes(k)) throw new Error(`--kinds: unknown kind ${k} (known: ${KINDS.join(', ')})`);

const gpu = await Gpu.create();
const dev = gpu.device;
const data = Float32Array.from({ length: WIDTH * STEPS * 4 }, () => Math.random());
const texture = dev.createTexture({
  size: [WIDTH, STEPS],
  format: 'rgba32float',
  usage: GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.COPY_DST,
});
dev.queue.writeTexture({ texture }, data, { bytesPerRow: WIDTH * 16 }, [WIDTH, STEPS]);
const source = dev.createBuffer({ size: data.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
dev.queue.writeBuffer(source, 0, data);
const sink = dev.createBuffer({ size: WORKGROUPS * 8 * 16, usage: GPUBufferUsage.STORAGE });

// The uniform and workgroup kinds wrap their index into 64 KB / 32 KB, the most a binding or a workgroup may hold.
const shapes: Record<Kind, { decl: string; prologue: string; load: string }> = {
  storage: { decl: 'var<storage, read> src: array<vec4<f32>>;', prologue: '', load: `src[k * ${WIDTH}u + col]` },
  uniform: { decl: 'var<uniform> src: array<vec4<f32>, 4096>;', prologue: '', load: `src[(k * ${WIDTH}u + col) & 4095u]` },
  workgroup: {
    decl: 'var<storage, read> src: array<vec4<f32>>;\nvar<workgroup> tile: array<vec4<f32>, 2048>;',
    prologue: 'for (var i = li; i < 2048u; i += 8u) { tile[i] = src[i]; }\n  workgroupBarrier();',
    load: 'tile[(k * 8u + li) & 2047u]',
  },
  scalar: { decl: 'var<storage, read> src: array<f32>;', prologue: '', load: `vec4<f32>(src[(k * ${WIDTH}u + col) * 4u])` },
  texture: { decl: 'var src: texture_2d<f32>;', prologue: '', load: 'textureLoad(src, vec2<u32>(col, k), 0)' },
};

async function time(kind: Kind): Promise<number> {
  const s = shapes[kind];
  const code = `
@group(0) @binding(0) ${s.decl}
@group(0) @binding(1) var<storage, read_write> sink: array<vec4<f32>>;
@compute @workgroup_size(8)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  ${s.prologue}
  let col = (wid.x * 8u + li) % ${WIDTH}u;
  var acc = vec4<f32>();
  for (var k = 0u; k < ${STEPS}u; k++) { acc += ${s.load}; }
  sink[wid.x * 8u + li] = acc;
}`;
  const resource = kind === 'texture' ? texture.createView() : { buffer: source, ...(kind === 'uniform' ? { size: 65536 } : {}) };
  return medianDispatchMs(dev, code, [resource, { buffer: sink }], WORKGROUPS, 9);
}

console.log(`adapter: ${gpu.adapter.description}; LP_NUM_THREADS=${process.env.LP_NUM_THREADS ?? '(unset)'}`);
console.log('| kind | median ms | ns per 8-lane vec4 load |\n|---|---:|---:|');
for (const kind of kinds) {
  const ms = await time(kind);
  const loads = (WORKGROUPS * 8 * STEPS) / 8;
  console.log(`| ${kind} | ${ms.toFixed(1)} | ${((ms * 1e6) / loads).toFixed(1)} |`);
}
gpu.destroy();
