/** Every failure the runtime raises names the op, the shapes and the sizes involved. */
export interface GpuErrorContext {
  op: string;
  shapes?: string;
  bytes?: number;
}

export class GpuError extends Error {
  readonly op: string;
  readonly shapes: string | undefined;
  readonly bytes: number | undefined;
  constructor(kind: string, message: string, ctx: GpuErrorContext) {
    const where = [`op=${ctx.op}`];
    if (ctx.shapes) where.push(`shapes=${ctx.shapes}`);
    if (ctx.bytes !== undefined) where.push(`bytes=${ctx.bytes} (${formatBytes(ctx.bytes)})`);
    super(`${kind}: ${message} [${where.join(' ')}]`);
    this.name = new.target.name;
    this.op = ctx.op;
    this.shapes = ctx.shapes;
    this.bytes = ctx.bytes;
  }
}

export class GpuOutOfMemoryError extends GpuError {
  constructor(message: string, ctx: GpuErrorContext) {
    super('GPU out of memory', message, ctx);
  }
}

export class GpuValidationError extends GpuError {
  constructor(message: string, ctx: GpuErrorContext) {
    super('GPU validation error', message, ctx);
  }
}

/** A request that exceeds a device limit (binding size, workgroup count, buffer size). */
export class GpuLimitError extends GpuError {
  constructor(message: string, ctx: GpuErrorContext) {
    super('GPU limit exceeded', message, ctx);
  }
}

export class GpuDeviceLostError extends GpuError {
  constructor(message: string, ctx: GpuErrorContext) {
    super('GPU device lost', message, ctx);
  }
}

export class GpuTimeoutError extends GpuError {
  constructor(message: string, ctx: GpuErrorContext) {
    super('GPU timeout', message, ctx);
  }
}

/** Bad arguments to an op: mismatched shapes, wrong dtype, and so on. Raised before any GPU work. */
export class ShapeError extends GpuError {
  constructor(message: string, ctx: GpuErrorContext) {
    super('Invalid op arguments', message, ctx);
  }
}

export class GpuUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GpuUnavailableError';
  }
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(u === 0 ? 0 : 2)} ${units[u]}`;
}
