import os from 'node:os';
import type { Gpu } from '../runtime/gpu.js';

/*
 * Tiles handed out at run time, for kernels on CPU adapters.
 *
 * llvmpipe splits a dispatch's workgroups among its shader threads up front, in equal runs (Mesa's lp_cs_tpool:
 * iter_per_thread = workgroups / threads). When the OS preempts one thread (Node's main thread, an agent's Python
 * job), the others finish their runs and sleep until it catches up. Instead, a dispatch launches one workgroup
 * per shader thread and each takes tiles from an atomic counter until none are left: a thread that falls behind
 * takes fewer. Measured on the 1024³ matmul in docs/BENCHMARKS.md.
 *
 * The counter returns to zero by itself: each of the W workgroups stops after exactly one ticket past the last
 * tile, so a dispatch makes tiles + W increments in all, and the workgroup that draws the last of them stores 0.
 * No host-side count can drift, even when a dispatch never ran (an earlier error in its batch).
 */

const counters = new WeakMap<Gpu, GPUBuffer>();

/** The per-device counter the ticket loop takes its tiles from: 4 bytes, zero between dispatches. */
export function ticketCounter(gpu: Gpu): GPUBufferBinding {
  let counter = counters.get(gpu);
  if (!counter) {
    // A buffer of its own rather than a tensor: it lives as long as the device, outside scope() (which would
    // dispose it and hand its memory to the next tensor) and outside the allocator's accounting. WebGPU fills new
    // buffers with zeros.
    counter = gpu.device.createBuffer({ label: 'tickets', size: 16, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
    counters.set(gpu, counter);
  }
  return { buffer: counter, offset: 0, size: 4 };
}

/** The counter's value (0 between dispatches; a diagnostic for tests), or undefined before any ticket kernel ran. */
export async function readTicketCounter(gpu: Gpu): Promise<number | undefined> {
  const counter = counters.get(gpu);
  return counter ? (await gpu.readBuffer(counter, 0, 'u32', 1, 'tickets'))[0] : undefined;
}

let threadsSeen: number | undefined;
/**
 * How many shader threads llvmpipe runs: LP_NUM_THREADS when set, else one per online CPU (Mesa's default). An
 * over-estimate only adds workgroups that find the counter empty; an under-estimate would leave threads idle.
 */
export function shaderThreads(): number {
  if (threadsSeen === undefined) {
    const fromEnv = Number(process.env.LP_NUM_THREADS);
    threadsSeen = Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : Math.max(1, Math.min(64, os.cpus().length));
  }
  return threadsSeen;
}

/** Workgroups to launch for `tiles` tiles: one per shader thread, never more than there are tiles. */
export function ticketWorkgroups(tiles: number): number {
  return Math.min(tiles, shaderThreads());
}

/**
 * How the drawn ticket reaches every lane. 'workgroup': through workgroup memory with workgroupUniformLoad (a
 * barrier, which makes llvmpipe split the shader into a coroutine). 'subgroup': subgroupBroadcast from lane 0, for
 * a workgroup that is exactly one subgroup; the module must start with SUBGROUP_UNIFORMITY_OFF, since WGSL cannot
 * prove that a broadcast value is uniform. Which is faster depends on the kernel (docs/BENCHMARKS.md): the matmul
 * ran 1.03-1.09x slower with 'subgroup', the LM head 0.79-1.02x (forward) and 0.83-0.94x (backward) the time of
 * 'workgroup' -- against 1.07-1.59x the time of no tickets at all with 'workgroup'.
 */
export type TicketBroadcast = 'workgroup' | 'subgroup';

/** For modules using the 'subgroup' ticket loop: the tile is uniform across the one subgroup by construction. */
export const SUBGROUP_UNIFORMITY_OFF = 'diagnostic(off, subgroup_uniformity);';

/**
 * WGSL for the ticket loop. `decl(binding)` goes at module scope. `open` starts a loop whose body sees `tile`
 * (uniform, < tiles) and ends with `close`; `tiles` and `workgroups` are WGSL u32 expressions (usually params)
 * equal to the host's tile count and ticketWorkgroups(tiles). Needs `li`, the local invocation index, in scope.
 */
export function ticketWgsl(broadcast: TicketBroadcast) {
  // The last of the dispatch's tiles + workgroups increments puts the counter back for the next dispatch.
  const draw = (tiles: string, workgroups: string, into: string) => `if (li == 0u) {
    let t = atomicAdd(&tickets[0], 1u);
    if (t == ${tiles} + ${workgroups} - 1u) { atomicStore(&tickets[0], 0u); }
    ${into} = t;
  }`;
  const counter = (binding: number) => `@group(0) @binding(${binding}) var<storage, read_write> tickets: array<atomic<u32>>;`;
  if (broadcast === 'subgroup') {
    return {
      decl: counter,
      open: (tiles: string, workgroups: string) => `loop {
  var drawn = 0u;
  ${draw(tiles, workgroups, 'drawn')}
  let tile = subgroupBroadcast(drawn, 0u);
  if (tile >= ${tiles}) { break; }`,
      close: '}',
    };
  }
  return {
    decl: (binding: number) => `${counter(binding)}\nvar<workgroup> ticket: u32;`,
    open: (tiles: string, workgroups: string) => `loop {
  ${draw(tiles, workgroups, 'ticket')}
  let tile = workgroupUniformLoad(&ticket);
  if (tile >= ${tiles}) { break; }`,
    close: '}',
  };
}
