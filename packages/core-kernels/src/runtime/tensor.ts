import { DTYPE_BYTES, formatShape, shapeSize, toF16Bits, type DType, type HostArray } from './dtype.js';
import { ShapeError } from './errors.js';
import type { Gpu } from './gpu.js';

export type ReadArray<D extends DType> = D extends 'i32' ? Int32Array : D extends 'u32' ? Uint32Array : Float32Array;

/** The tensor that owns each buffer now, so a binding of a bare buffer can be traced to its Gpu and named. */
const bufferOwners = new WeakMap<GPUBuffer, Tensor>();

/** The live or last tensor that owned `buffer`, if a Gpu's allocator made it. */
export function tensorOwning(buffer: GPUBuffer): Tensor | undefined {
  return bufferOwners.get(buffer);
}

/**
 * A dense, row-major tensor in one GPU buffer. `byteOffset` is non-zero only for views made by `rows()`.
 * Tensors own their buffer until `dispose()`, which returns it to the caching allocator. A view (`reshape`, `rows`)
 * owns nothing and dies with the tensor that owns its buffer: the allocator hands that buffer to the next tensor.
 */
export class Tensor<D extends DType = DType> {
  private disposed = false;

  constructor(
    readonly gpu: Gpu,
    readonly buffer: GPUBuffer,
    readonly shape: readonly number[],
    readonly dtype: D,
    readonly byteOffset = 0,
    /** For a view, the tensor that owns the buffer; undefined for that owner. */
    private readonly owner?: Tensor,
  ) {
    if (!owner) bufferOwners.set(buffer, this);
  }

  get size(): number {
    return shapeSize(this.shape);
  }

  get byteLength(): number {
    return this.size * DTYPE_BYTES[this.dtype];
  }

  get rank(): number {
    return this.shape.length;
  }

  /** Disposed itself, or a view whose owner was disposed. */
  get isDisposed(): boolean {
    return this.disposed || (this.owner?.disposed ?? false);
  }

  /**
   * Where the owner's elements end in the buffer. Bytes from here to the buffer's end belong to no tensor, so a
   * write that ends here may pad its last 4-byte word (an odd-length f16 tensor).
   */
  get usedBytes(): number {
    return (this.owner ?? this).byteLength;
  }

  toString(): string {
    return `${this.dtype}${formatShape(this.shape)}`;
  }

  /** Uploads host data. f16 tensors take floats (rounded to f16) or raw f16 bits as a Uint16Array. */
  write(data: HostArray | readonly number[]): this {
    this.assertLive('write');
    if (data.length !== this.size) {
      throw new ShapeError(`write of ${data.length} values into ${this.size} elements`, {
        op: 'tensor.write',
        shapes: this.toString(),
      });
    }
    this.gpu.writeTensor(this, hostBytes(this.dtype, data, this.toString()));
    return this;
  }

  /** Copies the tensor back to the host. f16 is widened to f32. Waits for all recorded work and raises its errors. */
  async read(): Promise<ReadArray<D>> {
    this.assertLive('read');
    return (await this.gpu.readBuffer(this.buffer, this.byteOffset, this.dtype, this.size, this.toString())) as ReadArray<D>;
  }

  /** Same buffer, new shape with the same element count. The view does not own the buffer. */
  reshape(shape: readonly number[]): Tensor<D> {
    this.assertLive('reshape');
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) {
        throw new ShapeError(`invalid dimension ${d} in reshape to ${formatShape(shape)}`, { op: 'reshape', shapes: this.toString() });
      }
    }
    if (shapeSize(shape) !== this.size) {
      throw new ShapeError(`cannot reshape ${this.size} elements to ${formatShape(shape)}`, {
        op: 'reshape',
        shapes: this.toString(),
      });
    }
    return new Tensor(this.gpu, this.buffer, [...shape], this.dtype, this.byteOffset, this.owner ?? this);
  }

  /** A view of rows [start, start+count) along the first dimension. Needs a 16-byte-aligned start for binding. */
  rows(start: number, count: number): Tensor<D> {
    this.assertLive('rows');
    if (this.rank === 0) throw new ShapeError('rows of a scalar: it has no first dimension', { op: 'rows', shapes: this.toString() });
    // A fractional or NaN start would make a byte offset inside an element, or no offset at all.
    if (!Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count < 0 || start + count > this.shape[0]) {
      throw new ShapeError(`rows(${start}, ${count}) is not a range of whole rows in 0..${this.shape[0]}`, { op: 'rows', shapes: this.toString() });
    }
    const rowElems = shapeSize(this.shape.slice(1));
    const offset = this.byteOffset + start * rowElems * DTYPE_BYTES[this.dtype];
    return new Tensor(this.gpu, this.buffer, [count, ...this.shape.slice(1)], this.dtype, offset, this.owner ?? this);
  }

  /** Whether the two share any byte of one buffer (two writable bindings of a dispatch must not). */
  overlaps(other: Tensor): boolean {
    return other.buffer === this.buffer && other.byteOffset < this.byteOffset + this.byteLength && this.byteOffset < other.byteOffset + other.byteLength;
  }

  /** Binding for this tensor's bytes, or a byte window of it (rounded to the 4-byte granularity bindings need). */
  binding(byteStart = 0, byteLength = this.byteLength - byteStart): GPUBufferBinding {
    this.assertLive('bind');
    return { buffer: this.buffer, offset: this.byteOffset + byteStart, size: Math.ceil(byteLength / 4) * 4 };
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (!this.owner) this.gpu.allocator.release(this.buffer);
    this.gpu.forget(this);
  }

  assertLive(op: string): void {
    if (this.disposed) throw new ShapeError('tensor used after dispose()', { op, shapes: this.toString() });
    // The owner's buffer may already hold another tensor's data.
    if (this.owner?.disposed) {
      throw new ShapeError(`tensor used after dispose() of the ${this.owner} tensor it is a view of`, { op, shapes: this.toString() });
    }
  }
}

const INT_RANGES = { i32: [-(2 ** 31), 2 ** 31 - 1], u32: [0, 2 ** 32 - 1] } as const;

/** Typed arrays would truncate fractions and wrap out-of-range values silently (ids, positions, lengths). */
function checkIntegers(dtype: 'i32' | 'u32', data: ArrayLike<number>, shapes: string): void {
  const [lo, hi] = INT_RANGES[dtype];
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (!Number.isInteger(v) || v < lo || v > hi) {
      throw new ShapeError(`value ${v} at index ${i} is not an integer in ${lo}..${hi}, as ${dtype} holds`, { op: 'tensor.write', shapes });
    }
  }
}

/** The bytes to upload for `data` as `dtype`; integer dtypes refuse values they cannot hold (`shapes` names the tensor). */
export function hostBytes(dtype: DType, data: HostArray | readonly number[], shapes: string = dtype): ArrayBufferView {
  if (dtype === 'i32' && !(data instanceof Int32Array)) checkIntegers(dtype, data, shapes);
  if (dtype === 'u32' && !(data instanceof Uint32Array)) checkIntegers(dtype, data, shapes);
  switch (dtype) {
    case 'f32':
      return data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>);
    case 'f16':
      return data instanceof Uint16Array ? data : toF16Bits(data as ArrayLike<number>);
    case 'i32':
      return data instanceof Int32Array ? data : Int32Array.from(data as ArrayLike<number>);
    case 'u32':
      return data instanceof Uint32Array ? data : Uint32Array.from(data as ArrayLike<number>);
  }
}
