import './globals.js';
import { GpuLimitError, GpuOutOfMemoryError, ShapeError, type GpuErrorContext } from './errors.js';

const STORAGE_USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** Rounds a request up to a size class so freed buffers are reusable: 256 B granularity, 1/8 of a power of two. */
export function sizeClass(bytes: number): number {
  const b = Math.max(256, Math.ceil(bytes / 256) * 256);
  if (b <= 4096) return b;
  const step = 2 ** (Math.floor(Math.log2(b)) - 3);
  return Math.ceil(b / step) * step;
}

export interface MemoryStats {
  /** Bytes in buffers handed out and not yet released. */
  inUse: number;
  /** Highest `inUse` since creation or the last `resetPeak()`. */
  peak: number;
  /** Bytes in released buffers kept for reuse. */
  cached: number;
  /** Buffers created on the device over the allocator's life. */
  created: number;
  /** Allocations served from the cache. */
  reused: number;
  /** Cached buffers destroyed to keep the cache under its limit (or for the budget). */
  evicted: number;
}

/** The cache's limit when none is given follows the peak in-use bytes, but is never below this. */
export const MIN_CACHE_LIMIT_BYTES = 64 * 2 ** 20;

export interface AllocatorOptions {
  /** Refuse allocations that would take in-use + cached bytes past this. Default: no budget beyond the device's. */
  budgetBytes?: number;
  /** Creates a buffer; the Gpu wraps creation in error scopes so a device-side OOM is traced to the request. */
  create?: (descriptor: GPUBufferDescriptor, ctx: GpuErrorContext) => GPUBuffer;
  /** Buffers may also be bound as uniforms (the CPU-adapter matmul binds 64 KB windows of a packed operand so). */
  uniformUsage?: boolean;
  /**
   * Most bytes the cache keeps. Default: the peak in-use bytes so far less those in use now (at least
   * MIN_CACHE_LIMIT_BYTES), so in-use plus cached bytes stay within the largest working set seen, where a run whose
   * shapes keep changing (PPO's sequence lengths) used to cache a buffer of every size it ever used. Past the
   * limit the least recently released buffers are destroyed.
   */
  cacheLimitBytes?: number;
  /** Submits recorded work; called before cached buffers are destroyed at once (emptyCache), since recorded
   * commands may still bind them. */
  submitPending?: () => void;
}

/**
 * Refuses a budget or cache limit that is not a number of bytes: a NaN budget would silently mean no budget (every
 * comparison with NaN is false), and a NaN cache limit an empty cache. Infinity is allowed: no limit.
 */
export function checkAllocatorOptions(options: Pick<AllocatorOptions, 'budgetBytes' | 'cacheLimitBytes'>, op: string): void {
  const { budgetBytes, cacheLimitBytes } = options;
  if (budgetBytes !== undefined && !(typeof budgetBytes === 'number' && budgetBytes > 0)) {
    throw new ShapeError(`budgetBytes must be a positive number of bytes (Infinity for none), got ${String(budgetBytes)}`, { op });
  }
  if (cacheLimitBytes !== undefined && !(typeof cacheLimitBytes === 'number' && cacheLimitBytes >= 0)) {
    throw new ShapeError(`cacheLimitBytes must be a number of bytes, 0 or more, got ${String(cacheLimitBytes)}`, { op });
  }
}

/**
 * A caching allocator for storage buffers. Released buffers go to a free list per size class and are handed
 * out again, so steady-state training allocates nothing new. GPU work is queue-ordered, so a buffer released
 * while a recorded dispatch still reads it can be reused by a later dispatch safely.
 */
export class BufferAllocator {
  private readonly free = new Map<number, GPUBuffer[]>();
  /** The cached buffers, least recently released first (a Set keeps insertion order). */
  private readonly released = new Set<GPUBuffer>();
  /** Evicted buffers that recorded commands may still bind: destroyed once those are submitted (destroyRetired). */
  private retired: GPUBuffer[] = [];
  private readonly stats: MemoryStats = { inUse: 0, peak: 0, cached: 0, created: 0, reused: 0, evicted: 0 };
  budgetBytes: number;
  cacheLimitBytes: number | undefined;

  constructor(
    private readonly device: GPUDevice,
    private readonly maxBufferSize: number,
    private readonly options: AllocatorOptions = {},
  ) {
    checkAllocatorOptions(options, 'BufferAllocator');
    this.budgetBytes = options.budgetBytes ?? Number.POSITIVE_INFINITY;
    this.cacheLimitBytes = options.cacheLimitBytes;
  }

  allocate(bytes: number, ctx: GpuErrorContext): GPUBuffer {
    if (!Number.isFinite(bytes) || bytes < 0) {
      throw new GpuLimitError(`invalid allocation size ${bytes}`, { ...ctx, bytes });
    }
    const size = sizeClass(bytes);
    if (size > this.maxBufferSize) {
      throw new GpuLimitError(`buffer exceeds the device's maxBufferSize of ${this.maxBufferSize}`, { ...ctx, bytes: size });
    }
    const cachedBuffer = this.takeCached(size);
    if (cachedBuffer) {
      this.released.delete(cachedBuffer);
      this.stats.cached -= cachedBuffer.size;
      this.stats.reused++;
      this.track(cachedBuffer.size);
      return cachedBuffer;
    }
    if (this.stats.inUse + this.stats.cached + size > this.budgetBytes) this.emptyCache();
    if (this.stats.inUse + size > this.budgetBytes) {
      throw new GpuOutOfMemoryError(
        `would exceed the memory budget of ${this.budgetBytes} bytes with ${this.stats.inUse} already in use`,
        { ...ctx, bytes: size },
      );
    }
    const usage = this.options.uniformUsage ? STORAGE_USAGE | GPUBufferUsage.UNIFORM : STORAGE_USAGE;
    const descriptor = { size, usage, label: `${ctx.op} ${ctx.shapes ?? ''}`.trim() };
    const buffer = this.options.create
      ? this.options.create(descriptor, { ...ctx, bytes: size })
      : this.device.createBuffer(descriptor);
    this.stats.created++;
    this.track(size);
    this.trim(this.cacheLimit());
    return buffer;
  }

  release(buffer: GPUBuffer): void {
    const size = buffer.size;
    this.stats.inUse -= size;
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    list.push(buffer);
    this.released.add(buffer);
    this.stats.cached += size;
    this.trim(this.cacheLimit());
  }

  /** The cache's current limit in bytes. */
  cacheLimit(): number {
    return this.cacheLimitBytes ?? Math.max(MIN_CACHE_LIMIT_BYTES, this.stats.peak - this.stats.inUse);
  }

  /** Destroys every cached buffer, returning its memory to the device (recorded work is submitted first). */
  emptyCache(): void {
    this.trim(0);
    if (this.retired.length > 0) this.options.submitPending?.();
    this.destroyRetired();
  }

  /** Destroys the buffers evicted from the cache; the owner calls it once the commands that bound them are submitted. */
  destroyRetired(): void {
    if (this.retired.length === 0) return;
    for (const b of this.retired) b.destroy();
    this.retired = [];
  }

  memory(): MemoryStats {
    return { ...this.stats };
  }

  resetPeak(): void {
    this.stats.peak = this.stats.inUse;
  }

  /** A cached buffer of the request's size class, else of one of the next two classes (at most 25% larger). */
  private takeCached(size: number): GPUBuffer | undefined {
    let c = size;
    for (let i = 0; i < 3; i++, c = sizeClass(c + 1)) {
      const list = this.free.get(c);
      const b = list?.pop();
      if (b) {
        if (list!.length === 0) this.free.delete(c);
        return b;
      }
    }
    return undefined;
  }

  /** Evicts the least recently released buffers until the cache holds at most `limit` bytes. */
  private trim(limit: number): void {
    for (const buffer of this.released) {
      if (this.stats.cached <= limit) break;
      const size = buffer.size;
      const list = this.free.get(size)!;
      list.splice(list.indexOf(buffer), 1);
      if (list.length === 0) this.free.delete(size);
      this.released.delete(buffer);
      this.stats.cached -= size;
      this.stats.evicted++;
      this.retired.push(buffer);
    }
  }

  private track(size: number): void {
    this.stats.inUse += size;
    if (this.stats.inUse > this.stats.peak) this.stats.peak = this.stats.inUse;
  }
}
