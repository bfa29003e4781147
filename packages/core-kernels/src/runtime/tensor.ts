import { DTYPE_BYTES, formatShape, shapeSize, toF16Bits, type DType, type HostArray } from './dtype.js';
import { ShapeError } from './errors.js';
import type { Gpu } from './gpu.js';

export type ReadArray<D extends DType> = D extends 'i32' ? Int32Array : D extends 'u32' ? Uint32Array : Float32Array;

/**
 * A dense, row-major tensor in one GPU buffer. `byteOffset` is non-zero only for views made by `rows()`.
 * Tensors own their buffer until `dispose()`, which returns it to the caching allocator.
 */
export class Tensor<D extends DType = DType> {
  private disposed = false;

  constructor(
    readonly gpu: Gpu,
    readonly buffer: GPUBuffer,
    readonly shape: readonly number[],
    readonly dtype: D,
    readonly byteOffset = 0,
    private readonly owner = true,
  ) {}

  get size(): number {
    return shapeSize(this.shape);
  }

  get byteLength(): number {
    return this.size * DTYPE_BYTES[this.dtype];
  }

  get rank(): number {
    return this.shape.length;
  }

  get isDisposed(): boolean {
    return this.disposed;
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
    this.gpu.writeBuffer(this.buffer, this.byteOffset, hostBytes(this.dtype, data));
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
    if (shapeSize(shape) !== this.size) {
      throw new ShapeError(`cannot reshape ${this.size} elements to ${formatShape(shape)}`, {
        op: 'reshape',
        shapes: this.toString(),
      });
    }
    return new Tensor(this.gpu, this.buffer, [...shape], this.dtype, this.byteOffset, false);
  }

  /** A view of rows [start, start+count) along the first dimension. Needs a 16-byte-aligned start for binding. */
  rows(start: number, count: number): Tensor<D> {
    this.assertLive('rows');
    const rowElems = shapeSize(this.shape.slice(1));
    if (start < 0 || count < 0 || start + count > this.shape[0]) {
      throw new ShapeError(`rows ${start}..${start + count} out of range`, { op: 'rows', shapes: this.toString() });
    }
    const offset = this.byteOffset + start * rowElems * DTYPE_BYTES[this.dtype];
    return new Tensor(this.gpu, this.buffer, [count, ...this.shape.slice(1)], this.dtype, offset, false);
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
    if (this.owner) this.gpu.allocator.release(this.buffer);
    this.gpu.forget(this);
  }

  assertLive(op: string): void {
    if (this.disposed) throw new ShapeError('tensor used after dispose()', { op, shapes: this.toString() });
  }
}

export function hostBytes(dtype: DType, data: HostArray | readonly number[]): ArrayBufferView {
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
