/**
 * Builds a uniform block field by field. Fields are 4-byte scalars laid out in call order, matching a WGSL
 * struct of u32/i32/f32 members declared in the same order.
 */
export class Params {
  private readonly view: DataView;
  private offset = 0;

  constructor(maxFields = 32) {
    this.view = new DataView(new ArrayBuffer(maxFields * 4));
  }

  u32(v: number): this {
    this.view.setUint32(this.offset, v >>> 0, true);
    this.offset += 4;
    return this;
  }

  i32(v: number): this {
    this.view.setInt32(this.offset, v | 0, true);
    this.offset += 4;
    return this;
  }

  f32(v: number): this {
    this.view.setFloat32(this.offset, v, true);
    this.offset += 4;
    return this;
  }

  /** The bytes written, padded to 16 for the uniform address space. */
  bytes(): Uint8Array {
    const len = Math.max(16, Math.ceil(this.offset / 16) * 16);
    return new Uint8Array(this.view.buffer, 0, len);
  }
}
