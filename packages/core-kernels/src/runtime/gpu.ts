import './globals.js';
import { create } from 'webgpu';
import { BufferAllocator, checkAllocatorOptions, sizeClass, type MemoryStats } from './allocator.js';
import { DTYPE_BYTES, fromF16Bits, formatShape, shapeSize, type DType, type HostArray } from './dtype.js';
import {
  GpuDeviceLostError,
  GpuLimitError,
  GpuOutOfMemoryError,
  GpuTimeoutError,
  GpuUnavailableError,
  GpuValidationError,
  ShapeError,
  type GpuErrorContext,
} from './errors.js';
import { WANTED_FEATURES, chooseVariants, isSoftwareAdapter, readFeatures, type GpuFeatures, type KernelVariants } from './features.js';
import { Tensor, tensorOwning } from './tensor.js';
import { Params } from './params.js';
import { politeWait } from './polite-wait.js';

/** Dawn toggles: unsafe APIs unlock experimental features (subgroup matrices); f16 on NVIDIA Vulkan is opt-in. */
export const DAWN_FLAGS = [
  'enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia',
  'disable-dawn-features=timestamp_quantization',
];

/**
 * One flag per key, as Dawn keeps only the last value of each: the toggle lists of `enable-dawn-features=` and
 * `disable-dawn-features=` are joined in order (a second enable list would otherwise drop `allow_unsafe_apis`, and
 * with it the subgroup matrices); for other keys the last value wins.
 */
export function mergeDawnFlags(flags: string[]): string[] {
  const merged = new Map<string, string>();
  for (const flag of flags) {
    const eq = flag.indexOf('=');
    if (eq <= 0) throw new ShapeError(`Dawn flag "${flag}" is not key=value`, { op: 'Gpu.create' });
    const key = flag.slice(0, eq);
    const value = flag.slice(eq + 1);
    const isList = key === 'enable-dawn-features' || key === 'disable-dawn-features';
    const joined = isList ? [...new Set([...(merged.get(key)?.split(',') ?? []), ...value.split(',')])].filter(Boolean).join(',') : value;
    merged.set(key, joined);
  }
  return [...merged].map(([k, v]) => `${k}=${v}`);
}

function togglesFromEnv(): string[] {
  const raw = process.env.MLAGENT_DAWN_TOGGLES?.trim();
  if (!raw) return [];
  const toggles = raw.split(',').map((t) => t.trim());
  const bad = toggles.find((t) => !/^[a-z0-9_]+$/.test(t));
  if (bad !== undefined) throw new ShapeError(`MLAGENT_DAWN_TOGGLES: "${bad}" is not a Dawn toggle name (lower-case letters, digits and _, comma-separated)`, { op: 'Gpu.create' });
  return [`enable-dawn-features=${toggles.join(',')}`];
}

export interface GpuOptions {
  /** Features to pretend are absent, to exercise fallback variants. Also read from MLAGENT_DISABLE_FEATURES. */
  disableFeatures?: string[];
  /** Memory budget for the caching allocator, in bytes. */
  budgetBytes?: number;
  /** Most bytes the allocator's cache of released buffers keeps (default: the peak in-use bytes less those in use, at
   * least 64 MiB). */
  cacheLimitBytes?: number;
  /**
   * Dispatches recorded before an automatic submit (default 512). Also MLAGENT_DISPATCHES_PER_SUBMIT. Fewer let a
   * GPU start on a long step (a 28-layer decode step records ~480 dispatches) while the rest is still recorded.
   */
  maxDispatchesPerSubmit?: number;
  /**
   * How long a readback may wait before it is declared hung, in ms (default 600000). Also MLAGENT_GPU_TIMEOUT_MS.
   * At most 2147483647 (2^31 - 1, about 24.8 days): Node's timers keep no longer delay, so a longer one is refused.
   */
  timeoutMs?: number;
  /**
   * Extra Dawn flags, e.g. `backend=vulkan`. Their `enable-dawn-features=` and `disable-dawn-features=` lists join
   * ours (see `mergeDawnFlags`). MLAGENT_DAWN_TOGGLES=a,b adds `enable-dawn-features=a,b`, e.g. `disable_robustness`.
   */
  dawnFlags?: string[];
  /** Cap storage bindings below the device's limit, to exercise the large-tensor paths in tests. */
  maxBindingBytes?: number;
}

/** A contiguous slice of elements that fits one binding: elements [start, start+count). */
export interface ElementWindow {
  start: number;
  count: number;
}

export interface DispatchSpec {
  /** Op name, shown in errors and profiles. */
  op: string;
  /** Shapes and sizes, shown in errors and profiles. */
  shapes?: string;
  pipeline: GPUComputePipeline;
  /** Uniform parameters, bound at @binding(0) when present. */
  params?: ArrayBufferView;
  /** Storage bindings in order, at @binding(1..) after params (or from 0 without params); or texture views. */
  bindings: Array<Tensor | GPUBufferBinding | GPUTextureView>;
  workgroups: readonly [number, number?, number?];
}

export interface DispatchTiming {
  op: string;
  shapes: string;
  ms: number;
}

type Command =
  | { kind: 'dispatch'; spec: DispatchSpec; entries: GPUBindGroupEntry[] }
  | { kind: 'copy'; src: GPUBuffer; srcOffset: number; dst: GPUBuffer; dstOffset: number; size: number }
  | { kind: 'clear'; buffer: GPUBuffer; offset: number; size: number }
  | { kind: 'copy-texture'; op: string; source: GPUTexelCopyBufferInfo; destination: GPUTexelCopyTextureInfo; size: GPUExtent3DStrict }
  | { kind: 'copy-from-texture'; op: string; source: GPUTexelCopyTextureInfo; destination: GPUTexelCopyBufferInfo; size: GPUExtent3DStrict };

interface PendingError {
  promise: Promise<GPUError | null>;
  ctx: GpuErrorContext;
}

const UNIFORM_RING_BYTES = 1 << 20;
/** Bind groups kept for reuse: a decode or training step of the policies here makes a few hundred distinct ones. */
const BIND_GROUP_CACHE = 4096;
/**
 * Readbacks up to this size reuse their mappable staging buffers (a few per allocator size class): a decode step
 * reads back twice, and creating and destroying a buffer for each read took ~0.6 ms of host time a step on lavapipe.
 */
const READBACK_POOL_MAX_BYTES = 1 << 20;
const READBACK_POOL_PER_SIZE = 4;
const liveInstances: GPU[] = [];
/** Devices made by this process, so each has its own label ("mlagent#2") in Dawn's messages. */
let devicesCreated = 0;

/** The longest timeout Node's setTimeout keeps (2^31 - 1 ms, about 24.8 days); past it Node waits 1 ms instead. */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;
const TIMEOUT_TOO_LONG = " (about 24.8 days, the longest delay Node's timers keep: a longer one would fire after 1 ms)";

export interface AdapterSummary {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  backend: string;
  /** The flags Dawn's instance was created with (`mergeDawnFlags`). */
  dawnFlags: string[];
}

/**
 * An option given in code, else its environment variable (if it has one), else undefined (the default); anything
 * that is not an integer in 1..max is named.
 */
function positiveIntOption(name: string, given: number | undefined, env?: string, max = Number.MAX_SAFE_INTEGER, whyMax = ''): number | undefined {
  const raw = given ?? (env === undefined ? undefined : process.env[env]);
  if (raw === undefined || raw === '') return undefined;
  const v = Number(raw);
  const source = given !== undefined ? name : env;
  // JSON for the environment's strings, so "" and spaces show; String() for numbers, as JSON writes NaN as null.
  const shown = typeof raw === 'string' ? JSON.stringify(raw) : String(raw);
  if (!Number.isInteger(v) || v < 1) {
    throw new ShapeError(`${source} must be a positive integer, got ${shown}`, { op: 'Gpu.create' });
  }
  if (v > max) throw new ShapeError(`${source} must be at most ${max}${whyMax}, got ${shown}`, { op: 'Gpu.create' });
  return v;
}

/** Little-endian 4-byte words: the f16 at byte 4w is the low half of word w, the one at 4w + 2 the high half. */
const LOW_HALF = 0x0000ffff;
const HIGH_HALF = 0xffff0000;

/**
 * A non-empty byte range [start, end) of a buffer (even bounds) as whole 4-byte words [bodyStart, bodyEnd) plus
 * the words of which only one half is in the range (at most two): WebGPU writes, clears and copies move whole
 * words only. With `padFree` the bytes after `end` in its word belong to no tensor, so that word counts as whole.
 */
function splitWords(start: number, end: number, padFree: boolean) {
  const headWord = start % 4 === 2 ? start - 2 : undefined;
  const bodyStart = headWord === undefined ? start : start + 2;
  const tailWord = end % 4 === 2 && !padFree ? end - 2 : undefined;
  const bodyEnd = end % 4 === 2 ? (padFree ? end + 2 : end - 2) : end;
  return { headWord, bodyStart, bodyEnd: Math.max(bodyStart, bodyEnd), tailWord };
}

/**
 * The device and everything that runs on it: allocation, pipelines, recording of dispatches into few command
 * buffers, readback, profiling and error reporting. Ops record work with `dispatch()`; it is submitted in batches
 * and its errors surface, typed and named, at the next `sync()` or `read()`.
 */
export class Gpu {
  readonly allocator: BufferAllocator;
  readonly variants: KernelVariants;
  readonly limits: Record<string, number>;
  /** Alignment for storage binding offsets. */
  readonly storageAlign: number;
  /** Largest byte range one storage binding may cover. */
  readonly maxBinding: number;
  readonly maxWorkgroups: number;
  /** lavapipe/llvmpipe or SwiftShader: the "GPU" shares the CPU cores with this process. */
  readonly softwareAdapter: boolean;
  /** The device's label, unique in the process ("mlagent#2"), as Dawn's messages name it. */
  readonly label: string;
  profiling = false;

  private commands: Command[] = [];
  private dispatchCount = 0;
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private pendingErrors: PendingError[] = [];
  private lostInfo: GPUDeviceLostInfo | undefined;
  /** Rejects each wait in progress (withTimeout) if the device is lost; a wait removes its own when it ends. */
  private readonly lostWaiters = new Set<(info: GPUDeviceLostInfo) => void>();
  private readonly uniformRing: GPUBuffer;
  private readonly uniformStaging = new Uint8Array(UNIFORM_RING_BYTES);
  private uniformUsed = 0;
  private readonly uniformAlign: number;
  private readonly maxDispatches: number;
  private readonly timeoutMs: number;
  private timings: Array<Promise<DispatchTiming[]>> = [];
  private readonly scopes: Set<Tensor>[] = [];
  /** Bind groups by pipeline and bound ranges, least recently used first (bindGroupFor). */
  private readonly bindGroups = new Map<string, GPUBindGroup>();
  private readonly objectIds = new WeakMap<object, number>();
  private nextObjectId = 1;
  /** Bind groups made and reused at submit time; a diagnostic for tests and tuning. */
  readonly bindGroupStats = { created: 0, reused: 0 };
  /** Unmapped staging buffers for small readbacks, by size. */
  private readonly readbackPool = new Map<number, GPUBuffer[]>();
  /** Staging buffers made and reused by reads; a diagnostic for tests. */
  readonly readbackStats = { created: 0, reused: 0 };

  private constructor(
    readonly device: GPUDevice,
    readonly adapter: AdapterSummary,
    readonly features: GpuFeatures,
    options: GpuOptions,
  ) {
    const l: Record<string, number> = {};
    for (const k in device.limits) {
      const v = (device.limits as unknown as Record<string, unknown>)[k];
      if (typeof v === 'number') l[k] = v;
    }
    this.limits = l;
    this.storageAlign = device.limits.minStorageBufferOffsetAlignment;
    this.uniformAlign = device.limits.minUniformBufferOffsetAlignment;
    this.maxBinding = Math.min(device.limits.maxStorageBufferBindingSize, options.maxBindingBytes ?? Infinity);
    this.label = device.label;
    this.maxWorkgroups = device.limits.maxComputeWorkgroupsPerDimension;
    this.variants = chooseVariants(features);
    this.softwareAdapter = isSoftwareAdapter(adapter);
    this.maxDispatches = options.maxDispatchesPerSubmit ?? 512;
    this.timeoutMs = options.timeoutMs ?? 600_000;
    this.allocator = new BufferAllocator(device, device.limits.maxBufferSize, {
      budgetBytes: options.budgetBytes,
      cacheLimitBytes: options.cacheLimitBytes,
      submitPending: () => this.flush(),
      uniformUsage: this.softwareAdapter,
      create: (descriptor, ctx) => {
        this.device.pushErrorScope('out-of-memory');
        const buffer = this.device.createBuffer(descriptor);
        this.pendingErrors.push({ promise: this.device.popErrorScope(), ctx });
        return buffer;
      },
    });
    void device.lost.then((info) => {
      this.lostInfo = info;
      for (const reject of this.lostWaiters) reject(info);
    });
    this.uniformRing = device.createBuffer({
      size: UNIFORM_RING_BYTES,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      label: 'uniform ring',
    });
  }

  static async create(options: GpuOptions = {}): Promise<Gpu> {
    // Checked before any device exists, so a bad value leaks nothing.
    options = {
      ...options,
      maxDispatchesPerSubmit: positiveIntOption('maxDispatchesPerSubmit', options.maxDispatchesPerSubmit, 'MLAGENT_DISPATCHES_PER_SUBMIT'),
      timeoutMs: positiveIntOption('timeoutMs', options.timeoutMs, 'MLAGENT_GPU_TIMEOUT_MS', MAX_TIMEOUT_MS, TIMEOUT_TOO_LONG),
      maxBindingBytes: positiveIntOption('maxBindingBytes', options.maxBindingBytes),
    };
    checkAllocatorOptions(options, 'Gpu.create');
    if (!process.env.XDG_RUNTIME_DIR) process.env.XDG_RUNTIME_DIR = '/tmp';
    const dawnFlags = mergeDawnFlags([...DAWN_FLAGS, ...(options.dawnFlags ?? []), ...togglesFromEnv()]);
    const instance = create(dawnFlags);
    // The device does not keep Dawn's instance alive: if the instance is collected, Dawn's event processing
    // aborts the process on a destroyed mutex. Keep it for as long as the process lives.
    liveInstances.push(instance);
    const adapter = await instance.requestAdapter({ powerPreference: 'high-performance' });
    if (!adapter) {
      throw new GpuUnavailableError(
        'No WebGPU adapter. On a machine without a GPU, install Mesa >= 24 lavapipe and libvulkan1 ' +
          '(scripts/setup.sh does: apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1).',
      );
    }
    const disabled = new Set([
      ...(options.disableFeatures ?? []),
      ...(process.env.MLAGENT_DISABLE_FEATURES ?? '').split(',').filter(Boolean),
    ]);
    const features = readFeatures(adapter, disabled);
    const requiredFeatures = WANTED_FEATURES.filter((f) => adapter.features.has(f) && !disabled.has(f));
    const requiredLimits: Record<string, number> = {};
    for (const k in adapter.limits) {
      const v = (adapter.limits as unknown as Record<string, unknown>)[k];
      if (typeof v === 'number') requiredLimits[k] = v;
    }
    let device: GPUDevice;
    try {
      device = await adapter.requestDevice({
        requiredFeatures: requiredFeatures as GPUFeatureName[],
        requiredLimits,
        label: `mlagent#${++devicesCreated}`,
      });
    } catch (e) {
      throw new GpuUnavailableError(`requestDevice failed: ${(e as Error).message}`);
    }
    const info = adapter.info;
    const summary: AdapterSummary = {
      vendor: info.vendor,
      architecture: info.architecture,
      device: info.device,
      description: info.description,
      backend: (info as unknown as { backend?: string }).backend ?? 'unknown',
      dawnFlags,
    };
    return new Gpu(device, summary, features, options);
  }

  // ---------------------------------------------------------------- tensors

  tensor<D extends DType>(shape: readonly number[], dtype: D, data?: HostArray | readonly number[], op = 'tensor'): Tensor<D> {
    this.assertAlive(op);
    if (!Object.hasOwn(DTYPE_BYTES, dtype)) {
      throw new ShapeError(`unknown dtype ${String(dtype)}: one of ${Object.keys(DTYPE_BYTES).join(', ')}`, { op, shapes: formatShape(shape) });
    }
    if (dtype === 'f16' && !this.features.shaderF16) {
      throw new ShapeError('f16 tensors need the shader-f16 feature, which this adapter lacks; use f32', {
        op,
        shapes: `f16${formatShape(shape)}`,
      });
    }
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) {
        throw new ShapeError(`invalid dimension ${d}`, { op, shapes: formatShape(shape) });
      }
    }
    const bytes = Math.max(4, shapeSize(shape) * DTYPE_BYTES[dtype]);
    // The shapes string is only read for a new buffer's label or an error; a pooled buffer needs neither.
    const buffer = this.allocator.allocate(bytes, {
      op,
      get shapes() {
        return `${dtype}${formatShape(shape)}`;
      },
      bytes,
    });
    const t = new Tensor(this, buffer, [...shape], dtype);
    this.scopes[this.scopes.length - 1]?.add(t);
    if (data) {
      try {
        t.write(data);
      } catch (e) {
        t.dispose(); // refused data (wrong length, a value an integer dtype cannot hold) leaks no buffer
        throw e;
      }
    }
    return t;
  }

  /** A tensor of zeros, cleared on the GPU. */
  zeros<D extends DType>(shape: readonly number[], dtype: D, op = 'zeros'): Tensor<D> {
    const t = this.tensor(shape, dtype, undefined, op);
    this.clear(t);
    return t;
  }

  /** Sets the tensor's bytes to zero, and no others: an f16 view's half of a shared 4-byte word is cleared alone. */
  clear(t: Tensor): void {
    this.assertOwnTensor(t, 'clear');
    t.assertLive('clear');
    if (t.byteLength === 0) return;
    const end = t.byteOffset + t.byteLength;
    const words = splitWords(t.byteOffset, end, end >= t.usedBytes);
    if (words.bodyEnd > words.bodyStart) {
      this.commands.push({ kind: 'clear', buffer: t.buffer, offset: words.bodyStart, size: words.bodyEnd - words.bodyStart });
    }
    if (words.headWord !== undefined) this.patchWord(t.buffer, words.headWord, LOW_HALF, 0, 'clear');
    if (words.tailWord !== undefined) this.patchWord(t.buffer, words.tailWord, HIGH_HALF, 0, 'clear');
  }

  /**
   * Runs `fn`, then disposes every tensor created inside it that is not returned (directly, or in an array or
   * object). Like tf.tidy: intermediate results do not leak.
   */
  scope<T>(fn: () => T): T {
    const set = new Set<Tensor>();
    this.scopes.push(set);
    let result: T;
    try {
      result = fn();
    } finally {
      this.scopes.pop();
    }
    if (isThenable(result)) {
      // The scope ends when fn returns, at its first await: what it makes after that is not the scope's, and what it
      // returns would be disposed. Its tensors so far are disposed as the scope promises; the rest of fn then fails
      // on them, and that rejection is caught here, as this error already reports the mistake.
      for (const t of set) t.dispose();
      result.then(undefined, () => {});
      throw new ShapeError('scope() takes a synchronous function, but this one returned a Promise (an async function?)', { op: 'scope' });
    }
    const keep = new Set<Tensor>();
    collectTensors(result, keep);
    const parent = this.scopes[this.scopes.length - 1];
    for (const t of set) {
      if (keep.has(t)) parent?.add(t);
      else t.dispose();
    }
    return result;
  }

  /** Takes a tensor out of every open `scope()`, so it outlives them (caches, tables built on first use). */
  keep<T extends Tensor>(t: T): T {
    for (const s of this.scopes) s.delete(t);
    return t;
  }

  /** Called by Tensor.dispose. */
  forget(t: Tensor): void {
    this.keep(t);
  }

  memory(): MemoryStats {
    return this.allocator.memory();
  }

  // ---------------------------------------------------------------- pipelines

  /** A compute pipeline from the cache, keyed by everything that specializes its WGSL. */
  pipeline(key: string, code: () => string, entryPoint = 'main'): GPUComputePipeline {
    const hit = this.pipelines.get(key);
    if (hit) return hit;
    this.assertAlive(key);
    const source = code();
    this.device.pushErrorScope('validation');
    const module = this.device.createShaderModule({ code: source, label: key });
    const pipeline = this.device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint }, label: key });
    this.pendingErrors.push({ promise: this.device.popErrorScope(), ctx: { op: `compile ${key}` } });
    this.pipelines.set(key, pipeline);
    return pipeline;
  }

  /** Compiles a pipeline and waits for its errors, for tests and tooling that want them at once. */
  async checkPipeline(key: string, code: () => string, entryPoint = 'main'): Promise<GPUComputePipeline> {
    const p = this.pipeline(key, code, entryPoint);
    await this.sync();
    return p;
  }

  get pipelineCount(): number {
    return this.pipelines.size;
  }

  // ---------------------------------------------------------------- recording

  /** Splits a linear workgroup count over x and y so neither exceeds the per-dimension limit. */
  grid(workgroups: number): [number, number, number] {
    if (workgroups <= this.maxWorkgroups) return [Math.max(1, workgroups), 1, 1];
    const y = Math.ceil(workgroups / this.maxWorkgroups);
    return [Math.ceil(workgroups / y), y, 1];
  }

  /**
   * Splits `count` elements (in units of `granule` elements that must stay together, e.g. a row) into windows
   * that each fit one storage binding and start on a bindable offset. No elements, no windows: WebGPU refuses an
   * empty binding, so an op that dispatches once a window does nothing for an empty tensor.
   */
  windows(count: number, elemBytes: number, granule = 1): ElementWindow[] {
    if (count === 0) return [];
    const unit = granule * elemBytes;
    if (count * elemBytes <= this.maxBinding) return [{ start: 0, count }];
    // Units per window: as many as fit, rounded down so each window's byte start stays aligned.
    const alignUnits = this.storageAlign / gcd(this.storageAlign, unit);
    let per = Math.floor(this.maxBinding / unit);
    per -= per % alignUnits;
    if (per <= 0) {
      throw new GpuLimitError(`one unit of ${unit} bytes does not fit a binding of ${this.maxBinding}`, { op: 'windows', bytes: unit });
    }
    const out: ElementWindow[] = [];
    const units = Math.ceil(count / granule);
    for (let u = 0; u < units; u += per) {
      const start = u * granule;
      out.push({ start, count: Math.min(per * granule, count - start) });
    }
    return out;
  }

  dispatch(spec: DispatchSpec): void {
    this.assertAlive(spec.op, spec.shapes);
    for (const w of spec.workgroups) {
      if (w !== undefined && (w > this.maxWorkgroups || w < 0 || !Number.isInteger(w))) {
        throw new GpuLimitError(`workgroup count ${w} outside 0..${this.maxWorkgroups}`, { op: spec.op, shapes: spec.shapes });
      }
    }
    const entries: GPUBindGroupEntry[] = [];
    if (spec.params) {
      const size = Math.ceil(spec.params.byteLength / 16) * 16;
      if (this.uniformUsed + size > UNIFORM_RING_BYTES) this.flush();
      const offset = this.uniformUsed;
      this.uniformStaging.set(new Uint8Array(spec.params.buffer, spec.params.byteOffset, spec.params.byteLength), offset);
      this.uniformUsed = Math.ceil((offset + size) / this.uniformAlign) * this.uniformAlign;
      entries.push({ binding: 0, resource: { buffer: this.uniformRing, offset, size } });
    }
    spec.bindings.forEach((b, i) => {
      if (isTextureView(b)) {
        entries.push({ binding: entries.length, resource: b });
        return;
      }
      if (b instanceof Tensor) this.assertOwnTensor(b, spec.op, `binding ${i}`);
      else this.assertOwnBuffer(b.buffer, spec.op, `binding ${i}`);
      const resource = b instanceof Tensor ? b.binding() : b;
      const size = resource.size ?? resource.buffer.size - (resource.offset ?? 0);
      if (size > this.maxBinding) {
        throw new GpuLimitError(`binding ${i} covers ${size} bytes, over maxStorageBufferBindingSize ${this.maxBinding}`, {
          op: spec.op,
          shapes: spec.shapes,
          bytes: size,
        });
      }
      if ((resource.offset ?? 0) % this.storageAlign !== 0) {
        throw new GpuLimitError(`binding ${i} offset ${resource.offset} not aligned to ${this.storageAlign}`, {
          op: spec.op,
          shapes: spec.shapes,
        });
      }
      entries.push({ binding: entries.length, resource });
    });
    this.commands.push({ kind: 'dispatch', spec, entries });
    if (++this.dispatchCount >= this.maxDispatches) this.flush();
  }

  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): void {
    this.assertOwnBuffer(src, 'copy', 'source');
    this.assertOwnBuffer(dst, 'copy', 'destination');
    this.commands.push({ kind: 'copy', src, srcOffset, dst, dstOffset, size });
  }

  /** Records a buffer-to-texture copy in order with the dispatches around it; `op` names it in profiles. */
  copyToTexture(op: string, source: GPUTexelCopyBufferInfo, destination: GPUTexelCopyTextureInfo, size: GPUExtent3DStrict): void {
    this.commands.push({ kind: 'copy-texture', op, source, destination, size });
  }

  /** Records a texture-to-buffer copy, in order with the dispatches; `op` names it in profiles. */
  copyFromTexture(op: string, source: GPUTexelCopyTextureInfo, destination: GPUTexelCopyBufferInfo, size: GPUExtent3DStrict): void {
    this.commands.push({ kind: 'copy-from-texture', op, source, destination, size });
  }

  /**
   * Tensor-to-tensor copy of the first `bytes` of `src` (default all of it) to the start of `dst`, changing no
   * other byte of dst's buffer. f16 views whose byte offsets differ by 2 modulo 4 are refused: a buffer copy moves
   * whole 4-byte words, so their halves would need shifting.
   */
  copyTensor(src: Tensor, dst: Tensor, bytes = src.byteLength): void {
    const shapes = `${src} -> ${dst}`;
    this.assertOwnTensor(src, 'copyTensor', 'source');
    this.assertOwnTensor(dst, 'copyTensor', 'destination');
    src.assertLive('copyTensor');
    dst.assertLive('copyTensor');
    if (!Number.isInteger(bytes) || bytes < 0 || bytes % 2 !== 0 || bytes > src.byteLength || bytes > dst.byteLength) {
      throw new ShapeError(`copy of ${bytes} bytes: needs an even count of at most both tensors' ${src.byteLength} and ${dst.byteLength}`, {
        op: 'copyTensor',
        shapes,
      });
    }
    if (bytes === 0) return;
    if ((src.byteOffset - dst.byteOffset) % 4 !== 0) {
      throw new ShapeError(
        `source byte offset ${src.byteOffset} and destination byte offset ${dst.byteOffset} differ by 2 modulo 4: a buffer copy moves whole 4-byte words, so it cannot shift f16 halves; copy from or to a tensor at an offset of the other's parity`,
        { op: 'copyTensor', shapes },
      );
    }
    const end = dst.byteOffset + bytes;
    const words = splitWords(dst.byteOffset, end, end >= dst.usedBytes);
    const shift = src.byteOffset - dst.byteOffset;
    if (words.bodyEnd > words.bodyStart) this.copy(src.buffer, words.bodyStart + shift, dst.buffer, words.bodyStart, words.bodyEnd - words.bodyStart);
    if (words.headWord !== undefined) this.copyHalfWord(src.buffer, words.headWord + shift, dst.buffer, words.headWord, LOW_HALF);
    if (words.tailWord !== undefined) this.copyHalfWord(src.buffer, words.tailWord + shift, dst.buffer, words.tailWord, HIGH_HALF);
  }

  /** Uploads after submitting recorded work, so the write cannot overtake dispatches recorded before it. */
  writeBuffer(buffer: GPUBuffer, offset: number, data: ArrayBufferView): void {
    this.assertAlive('write');
    // Dawn would drop such a write and only print a warning.
    if (offset % 4 !== 0) throw new ShapeError(`write at byte offset ${offset}: buffer writes start on a 4-byte word`, { op: 'write' });
    this.flush();
    let bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (bytes.byteLength % 4 !== 0) {
      const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
      padded.set(bytes);
      bytes = padded;
    }
    this.device.queue.writeBuffer(buffer, offset, bytes);
  }

  /**
   * Uploads `data`, the bytes of all of `t`, changing no other byte of its buffer: an f16 view's half of a 4-byte
   * word shared with a neighbour is merged into that word on the GPU, in order with the work around it.
   */
  writeTensor(t: Tensor, data: ArrayBufferView): void {
    this.assertAlive('write');
    this.assertOwnTensor(t, 'tensor.write');
    t.assertLive('tensor.write');
    if (data.byteLength !== t.byteLength) {
      throw new ShapeError(`write of ${data.byteLength} bytes into ${t.byteLength}`, { op: 'tensor.write', shapes: t.toString() });
    }
    if (data.byteLength === 0) return;
    const end = t.byteOffset + data.byteLength;
    const words = splitWords(t.byteOffset, end, end >= t.usedBytes);
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const at = (byte: number) => bytes[byte - t.byteOffset] | (bytes[byte - t.byteOffset + 1] << 8);
    if (words.bodyEnd > words.bodyStart) {
      const body = bytes.subarray(words.bodyStart - t.byteOffset, Math.min(words.bodyEnd, end) - t.byteOffset);
      this.writeBuffer(t.buffer, words.bodyStart, body);
    } else {
      this.flush(); // the merges below come after the work recorded before this write, as a buffer write does
    }
    if (words.headWord !== undefined) this.patchWord(t.buffer, words.headWord, LOW_HALF, at(words.headWord + 2) << 16, 'write');
    if (words.tailWord !== undefined) this.patchWord(t.buffer, words.tailWord, HIGH_HALF, at(words.tailWord), 'write');
  }

  /** Sets word `byte / 4` of `buffer` to (word & keep) | bits, on the GPU in order with the recorded work. */
  private patchWord(buffer: GPUBuffer, byte: number, keep: number, bits: number, op: string): void {
    const window = this.wordWindow(buffer, byte);
    const pipeline = this.pipeline(
      'runtime-patch-word',
      () => `
struct P { word: u32, keep: u32, bits: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@compute @workgroup_size(1) fn main() { dst[p.word] = (dst[p.word] & p.keep) | (p.bits & ~p.keep); }`,
    );
    const params = new Params().u32(window.word).u32(keep).u32(bits >>> 0).bytes();
    this.dispatch({ op: `${op} (f16 half word)`, pipeline, params, bindings: [window.binding], workgroups: [1] });
  }

  /** Copies the half of word `srcByte / 4` that `keep` does not keep into word `dstByte / 4` of `dst`. */
  private copyHalfWord(src: GPUBuffer, srcByte: number, dst: GPUBuffer, dstByte: number, keep: number): void {
    // Through a word of scratch: src and dst may be one buffer, which one dispatch cannot bind read and read-write.
    const scratch = this.allocator.allocate(4, { op: 'copyTensor (f16 half word)' });
    this.copy(src, srcByte, scratch, 0, 4);
    const window = this.wordWindow(dst, dstByte);
    const pipeline = this.pipeline(
      'runtime-copy-half-word',
      () => `
struct P { word: u32, keep: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<storage, read> src: array<u32>;
@compute @workgroup_size(1) fn main() { dst[p.word] = (dst[p.word] & p.keep) | (src[0] & ~p.keep); }`,
    );
    const params = new Params().u32(window.word).u32(keep).bytes();
    this.dispatch({
      op: 'copyTensor (f16 half word)',
      pipeline,
      params,
      bindings: [window.binding, { buffer: scratch, offset: 0, size: 4 }],
      workgroups: [1],
    });
    // Work runs in queue order, so a later user of this buffer writes it only after the dispatch has read it.
    this.allocator.release(scratch);
  }

  /** A binding that ends with the word at `byte` and starts on a bindable offset, and the word's index in it. */
  private wordWindow(buffer: GPUBuffer, byte: number): { binding: GPUBufferBinding; word: number } {
    const offset = byte - (byte % this.storageAlign);
    return { binding: { buffer, offset, size: byte + 4 - offset }, word: (byte - offset) / 4 };
  }

  /** Tensors of another Gpu live on another device, where Dawn would fail the whole batch at the next read. */
  private assertOwnTensor(t: Tensor, op: string, role = 'tensor'): void {
    if (t.gpu !== this) {
      throw new ShapeError(`${role} ${t} belongs to another Gpu (device "${t.gpu.label}"), not this one ("${this.label}")`, { op, shapes: t.toString() });
    }
  }

  /** As assertOwnTensor, for a bare buffer: one of another Gpu's tensors is named; others are left to Dawn. */
  private assertOwnBuffer(buffer: GPUBuffer, op: string, role: string): void {
    const owner = tensorOwning(buffer);
    if (owner && owner.gpu !== this) this.assertOwnTensor(owner, op, `${role}: the buffer of`);
  }

  /** Submits everything recorded so far. Errors are collected and raised by `sync()`. */
  flush(): void {
    if (this.commands.length === 0) {
      this.allocator.destroyRetired();
      return;
    }
    const commands = this.commands;
    this.commands = [];
    this.dispatchCount = 0;
    if (this.uniformUsed > 0) {
      this.device.queue.writeBuffer(this.uniformRing, 0, this.uniformStaging, 0, this.uniformUsed);
      this.uniformUsed = 0;
    }
    this.device.pushErrorScope('out-of-memory');
    this.device.pushErrorScope('validation');
    this.device.pushErrorScope('internal');
    const encoder = this.device.createCommandEncoder();
    const profiled = this.profiling && this.features.timestampQuery ? this.beginProfile(commands) : undefined;
    let pass: GPUComputePassEncoder | undefined;
    // With profiling every command gets a pair of timestamps: a dispatch from its own pass, a copy or clear from
    // empty passes just before and after it (timestamps are written only at pass boundaries).
    const stamp = (index: 'beginningOfPassWriteIndex' | 'endOfPassWriteIndex', i: number) => {
      if (profiled) encoder.beginComputePass({ timestampWrites: { querySet: profiled.querySet, [index]: i } }).end();
    };
    commands.forEach((c, i) => {
      if (c.kind === 'dispatch') {
        if (profiled) {
          pass = encoder.beginComputePass({
            timestampWrites: { querySet: profiled.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 },
          });
        } else if (!pass) {
          pass = encoder.beginComputePass();
        }
        pass.setPipeline(c.spec.pipeline);
        // Bind groups are made here, inside the error scopes, so a bad binding is reported with its batch.
        const bindGroup = this.bindGroupFor(c.spec, c.entries);
        pass.setBindGroup(0, bindGroup);
        const [x, y = 1, z = 1] = c.spec.workgroups;
        pass.dispatchWorkgroups(x, y, z);
        if (profiled) {
          pass.end();
          pass = undefined;
        }
      } else {
        pass?.end();
        pass = undefined;
        stamp('beginningOfPassWriteIndex', 2 * i);
        if (c.kind === 'copy') encoder.copyBufferToBuffer(c.src, c.srcOffset, c.dst, c.dstOffset, c.size);
        else if (c.kind === 'copy-texture') encoder.copyBufferToTexture(c.source, c.destination, c.size);
        else if (c.kind === 'copy-from-texture') encoder.copyTextureToBuffer(c.source, c.destination, c.size);
        else encoder.clearBuffer(c.buffer, c.offset, c.size);
        stamp('endOfPassWriteIndex', 2 * i + 1);
      }
    });
    pass?.end();
    if (profiled) profiled.resolve(encoder);
    this.device.queue.submit([encoder.finish()]);
    // Buffers evicted from the cache may be bound by what was just submitted; WebGPU frees them after that work.
    this.allocator.destroyRetired();
    if (profiled) this.timings.push(profiled.collect());
    // Named only when an error needs it: building the summary cost ~0.3 ms a decode step (396 dispatches).
    let ops: string | undefined;
    const ctx: GpuErrorContext = {
      get op() {
        return (ops ??= summarizeOps(commands));
      },
    };
    for (let i = 0; i < 3; i++) this.pendingErrors.push({ promise: this.device.popErrorScope(), ctx });
  }

  private objectId(o: object): number {
    let id = this.objectIds.get(o);
    if (id === undefined) {
      id = this.nextObjectId++;
      this.objectIds.set(o, id);
    }
    return id;
  }

  /**
   * The dispatch's bind group, reused when the same pipeline binds the same buffer ranges again: a decode step or a
   * training step repeats its dispatches with the same pooled buffers and uniform-ring offsets, and creating a bind
   * group cost ~20 of the ~30 µs lavapipe spent submitting a small dispatch (session 13). Texture views are not
   * cached. Holding a destroyed buffer's groups is harmless: a new buffer never has its id.
   */
  private bindGroupFor(spec: DispatchSpec, entries: GPUBindGroupEntry[]): GPUBindGroup {
    const create = () => {
      this.bindGroupStats.created++;
      return this.device.createBindGroup({ layout: spec.pipeline.getBindGroupLayout(0), entries, label: `${spec.op} ${spec.shapes ?? ''}` });
    };
    let key = String(this.objectId(spec.pipeline));
    for (const e of entries) {
      // dispatch() binds buffer ranges and texture views only.
      const r = e.resource as GPUBufferBinding | GPUTextureView;
      if (isTextureView(r)) return create();
      key += `|${this.objectId(r.buffer)}:${r.offset ?? 0}:${r.size ?? -1}`;
    }
    const hit = this.bindGroups.get(key);
    if (hit) {
      this.bindGroupStats.reused++;
      this.bindGroups.delete(key);
      this.bindGroups.set(key, hit);
      return hit;
    }
    const group = create();
    this.bindGroups.set(key, group);
    if (this.bindGroups.size > BIND_GROUP_CACHE) this.bindGroups.delete(this.bindGroups.keys().next().value!);
    return group;
  }

  /** Submits and waits for all work, then raises the first error any of it produced. */
  async sync(): Promise<void> {
    this.flush();
    await this.withTimeout(this.device.queue.onSubmittedWorkDone(), 'sync');
    await this.raisePendingErrors();
  }

  async readBuffer(buffer: GPUBuffer, offset: number, dtype: DType, count: number, label: string): Promise<HostArray> {
    this.assertAlive('read', label);
    const bytes = count * DTYPE_BYTES[dtype];
    const start = Math.floor(offset / 4) * 4;
    const end = Math.ceil((offset + bytes) / 4) * 4;
    const staging = this.takeStaging(Math.max(4, end - start), label);
    let reusable = false;
    try {
      if (end > start) this.copy(buffer, start, staging, 0, end - start);
      this.flush();
      await this.raisePendingErrors();
      await this.withTimeout(staging.mapAsync(GPUMapMode.READ), `read ${label}`);
      const raw = staging.getMappedRange().slice(offset - start, offset - start + bytes);
      staging.unmap();
      reusable = true;
      return hostArray(raw, dtype);
    } finally {
      // Only an unmapped buffer whose read went through goes back to the pool; after an error it is destroyed.
      if (!reusable || !this.returnStaging(staging)) staging.destroy();
    }
  }

  /** A mappable staging buffer of at least `bytes`: from the pool when small (rounded to its size class), else new. */
  private takeStaging(bytes: number, label: string): GPUBuffer {
    const pooled = bytes <= READBACK_POOL_MAX_BYTES;
    const size = pooled ? sizeClass(bytes) : bytes;
    const reused = this.readbackPool.get(size)?.pop();
    if (reused) {
      this.readbackStats.reused++;
      return reused;
    }
    this.readbackStats.created++;
    const name = pooled ? `readback ${size} B (pooled)` : `readback ${label}`;
    return this.device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, label: name });
  }

  /** Keeps a staging buffer for the next read of its size; false when it is not kept. */
  private returnStaging(staging: GPUBuffer): boolean {
    if (staging.size > READBACK_POOL_MAX_BYTES) return false;
    let free = this.readbackPool.get(staging.size);
    if (!free) this.readbackPool.set(staging.size, (free = []));
    if (free.length >= READBACK_POOL_PER_SIZE) return false;
    free.push(staging);
    return true;
  }

  /** GPU times of each dispatch, copy and clear recorded while `profiling` was on, since the last call. */
  async takeTimings(): Promise<DispatchTiming[]> {
    this.flush();
    const all = await Promise.all(this.timings);
    this.timings = [];
    return all.flat();
  }

  destroy(): void {
    this.allocator.emptyCache();
    for (const free of this.readbackPool.values()) for (const b of free) b.destroy();
    this.readbackPool.clear();
    this.uniformRing.destroy();
    this.device.destroy();
  }

  get isLost(): boolean {
    return this.lostInfo !== undefined;
  }

  // ---------------------------------------------------------------- internals

  private assertAlive(op: string, shapes?: string): void {
    if (this.lostInfo) {
      throw new GpuDeviceLostError(`${this.lostInfo.reason}: ${this.lostInfo.message}`, { op, shapes });
    }
  }

  private async raisePendingErrors(): Promise<void> {
    const pending = this.pendingErrors;
    this.pendingErrors = [];
    const results = await this.withTimeout(
      Promise.all(pending.map(async (p) => ({ err: await p.promise, ctx: p.ctx }))),
      'error scopes',
    );
    for (const { err, ctx } of results) {
      if (!err) continue;
      if (err instanceof GPUOutOfMemoryError || err.constructor.name === 'GPUOutOfMemoryError') {
        throw new GpuOutOfMemoryError(err.message, ctx);
      }
      throw new GpuValidationError(err.message, ctx);
    }
    this.assertAlive('sync');
  }

  /**
   * `p`, or a typed error once the timeout passes or the device is lost. Nothing of the wait outlives it. (It used
   * to race `p` against a handler chained onto the device's lost promise, which never settles while the device
   * lives: every wait's result stayed reachable from it, and with the error contexts every flush's commands and
   * the tensors they bound, about 1.2 KB a dispatch for the life of the device.)
   */
  private async withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    let onLost: ((info: GPUDeviceLostInfo) => void) | undefined;
    const failure = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new GpuTimeoutError(`no answer from the GPU after ${this.timeoutMs} ms`, { op: what })),
        this.timeoutMs,
      );
      onLost = (info) => reject(new GpuDeviceLostError(`${info.reason}: ${info.message}`, { op: what }));
      if (this.lostInfo) onLost(this.lostInfo);
      else this.lostWaiters.add(onLost);
    });
    try {
      const race = Promise.race([p, failure]);
      // Only a CPU adapter's shader threads compete with Dawn's polling loop for cores; a GPU keeps its latency.
      return await (this.softwareAdapter ? politeWait(race) : race);
    } finally {
      clearTimeout(timer);
      if (onLost) this.lostWaiters.delete(onLost);
    }
  }

  private beginProfile(commands: Command[]) {
    const count = Math.max(2, commands.length * 2);
    const querySet = this.device.createQuerySet({ type: 'timestamp', count });
    const resolveBuf = this.device.createBuffer({
      size: count * 8,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    const readBuf = this.device.createBuffer({ size: count * 8, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    return {
      querySet,
      resolve: (encoder: GPUCommandEncoder) => {
        encoder.resolveQuerySet(querySet, 0, count, resolveBuf, 0);
        encoder.copyBufferToBuffer(resolveBuf, 0, readBuf, 0, count * 8);
      },
      collect: async (): Promise<DispatchTiming[]> => {
        await this.withTimeout(readBuf.mapAsync(GPUMapMode.READ), 'timestamps');
        const ts = new BigInt64Array(readBuf.getMappedRange().slice(0));
        readBuf.unmap();
        readBuf.destroy();
        resolveBuf.destroy();
        querySet.destroy();
        return commands.map((c, i) => ({
          op: c.kind === 'dispatch' ? c.spec.op : c.kind === 'copy-texture' || c.kind === 'copy-from-texture' ? c.op : c.kind,
          shapes: c.kind === 'dispatch' ? (c.spec.shapes ?? '') : '',
          ms: Number(ts[2 * i + 1] - ts[2 * i]) / 1e6,
        }));
      },
    };
  }
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}

function isTextureView(b: Tensor | GPUBufferBinding | GPUTextureView): b is GPUTextureView {
  return !(b instanceof Tensor) && !('buffer' in b);
}

function summarizeOps(commands: Command[]): string {
  const names: string[] = [];
  for (const c of commands) {
    if (c.kind !== 'dispatch') continue;
    const s = c.spec.shapes ? `${c.spec.op}(${c.spec.shapes})` : c.spec.op;
    if (names[names.length - 1] !== s) names.push(s);
  }
  if (names.length === 0) return 'copy/clear';
  return names.length > 6 ? `${names.slice(0, 3).join(', ')}, ... ${names.slice(-3).join(', ')}` : names.join(', ');
}

function collectTensors(value: unknown, out: Set<Tensor>, depth = 0): void {
  if (depth > 4 || value === null || typeof value !== 'object') return;
  if (value instanceof Tensor) {
    out.add(value);
    return;
  }
  if (Array.isArray(value)) for (const v of value) collectTensors(v, out, depth + 1);
  else for (const v of Object.values(value)) collectTensors(v, out, depth + 1);
}

/** Host array of `dtype` over read-back bytes (f16 widened to f32). */
function hostArray(raw: ArrayBuffer, dtype: DType): HostArray {
  switch (dtype) {
    case 'f32':
      return new Float32Array(raw);
    case 'f16':
      return fromF16Bits(new Uint16Array(raw));
    case 'i32':
      return new Int32Array(raw);
    case 'u32':
      return new Uint32Array(raw);
  }
}
