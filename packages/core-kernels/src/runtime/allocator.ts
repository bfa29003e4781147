import './globals.js';
import { GpuLimitError, GpuOutOfMemoryError, type GpuErrorContext } from './errors.js';

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
}

export interface AllocatorOptions {
  /** Refuse allocations that would take in-use + cached bytes past this. Default: no budget beyond the device's. */
  budgetBytes?: number;
  /** Creates a buffer; the Gpu wraps creation in error scopes so a device-side OOM is traced to the request. */
  create?: (descriptor: GPUBufferDescriptor, ctx: GpuErrorContext) => GPUBuffer;
  /** Buffers may also be bound as uniforms (the CPU-adapter matmul binds 64 KB windows of a packed operand so). */
  uniformUsage?: boolean;
}

/**
 * A caching allocator for storage buffers. Released buffers go to a free list per size class and are handed
 * out again, so steady-state training allocates nothing new. GPU work is queue-ordered, so a buffer released
 * while a recorded dispatch still reads it can be reused by a later dispatch safely.
 */
export class BufferAllocator {
  private readonly free = new Map<number, GPUBuffer[]>();
  private readonly stats: MemoryStats = { inUse: 0, peak: 0, cached: 0, created: 0, reused: 0 };
  budgetBytes: number;

  constructor(
    private readonly device: GPUDevice,
    private readonly maxBufferSize: number,
    private readonly options: AllocatorOptions = {},
  ) {
    this.budgetBytes = options.budgetBytes ?? Number.POSITIVE_INFINITY;
  }

  allocate(bytes: number, ctx: GpuErrorContext): GPUBuffer {
    if (!Number.isFinite(bytes) || bytes < 0) {
      throw new GpuLimitError(`invalid allocation size ${bytes}`, { ...ctx, bytes });
    }
    const size = sizeClass(bytes);
    if (size > this.maxBufferSize) {
      throw new GpuLimitError(`buffer exceeds the device's maxBufferSize of ${this.maxBufferSize}`, { ...ctx, bytes: size });
    }
    const list = this.free.get(size);
    const cachedBuffer = list?.pop();
    if (cachedBuffer) {
      this.stats.cached -= size;
      this.stats.reused++;
      this.track(size);
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
    return buffer;
  }

  release(buffer: GPUBuffer): void {
    const size = buffer.size;
    this.stats.inUse -= size;
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    list.push(buffer);
    this.stats.cached += size;
  }

  /** Destroys every cached buffer, returning its memory to the device. */
  emptyCache(): void {
    for (const list of this.free.values()) for (const b of list) b.destroy();
    this.free.clear();
    this.stats.cached = 0;
  }

  memory(): MemoryStats {
    return { ...this.stats };
  }

  resetPeak(): void {
    this.stats.peak = this.stats.inUse;
  }

  private track(size: number): void {
    this.stats.inUse += size;
    if (this.stats.inUse > this.stats.peak) this.stats.peak = this.stats.inUse;
  }
}
