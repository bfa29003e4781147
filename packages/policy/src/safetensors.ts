import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { jsonKind, requireJsonObject } from './config.js';

/** Safetensors dtypes we read. Others are reported by name in the error. */
export type SafetensorsDType = 'F32' | 'F16' | 'BF16' | 'I32' | 'I64' | 'U8';

export const SAFETENSORS_DTYPE_BYTES: Record<SafetensorsDType, number> = { F32: 4, F16: 2, BF16: 2, I32: 4, I64: 8, U8: 1 };

export interface TensorInfo {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** Absolute byte range in the file. */
  begin: number;
  end: number;
  file: string;
}

export class CheckpointError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckpointError';
  }
}

/** Header JSON is small; a multi-GB "header" means a corrupt or non-safetensors file. */
const MAX_HEADER_BYTES = 100 << 20;

/**
 * One .safetensors file, opened for random access: the header is parsed and checked up front, and each tensor is
 * read on demand, so loading streams tensor by tensor instead of holding the file in memory.
 */
export class SafetensorsFile {
  private constructor(
    readonly path: string,
    private fd: number,
    readonly tensors: Map<string, TensorInfo>,
    readonly metadata: Record<string, string>,
  ) {}

  static open(path: string): SafetensorsFile {
    if (!existsSync(path)) throw new CheckpointError(`${path}: file not found`);
    if (statSync(path).isDirectory()) throw new CheckpointError(`${path}: is a directory, not a safetensors file`);
    const fd = openSync(path, 'r');
    try {
      const size = fstatSync(fd).size;
      if (size < 8) throw new CheckpointError(`${path}: truncated (${size} bytes, no header)`);
      const lenBuf = Buffer.alloc(8);
      readSync(fd, lenBuf, 0, 8, 0);
      const headerLen = Number(lenBuf.readBigUInt64LE(0));
      if (headerLen > MAX_HEADER_BYTES || 8 + headerLen > size) {
        throw new CheckpointError(`${path}: header length ${headerLen} does not fit a ${size}-byte file (corrupt or truncated)`);
      }
      const headerBuf = Buffer.alloc(headerLen);
      readSync(fd, headerBuf, 0, headerLen, 8);
      let header: unknown;
      try {
        header = JSON.parse(headerBuf.toString('utf8'));
      } catch (e) {
        throw new CheckpointError(`${path}: header is not valid JSON (${(e as Error).message})`);
      }
      requireJsonObject(header, `${path}: header`, CheckpointError);
      const dataStart = 8 + headerLen;
      const tensors = new Map<string, TensorInfo>();
      let metadata: Record<string, string> = {};
      for (const [name, raw] of Object.entries(header)) {
        if (name === '__metadata__') {
          metadata = (raw ?? {}) as Record<string, string>;
          continue;
        }
        tensors.set(name, parseEntry(path, name, raw, dataStart, size));
      }
      checkNoOverlap(path, [...tensors.values()]);
      return new SafetensorsFile(path, fd, tensors, metadata);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /** The tensor's raw little-endian bytes. */
  read(name: string): Uint8Array {
    const info = this.tensors.get(name);
    if (!info) throw new CheckpointError(`${this.path}: no tensor named '${name}'`);
    const buf = new Uint8Array(info.end - info.begin);
    let done = 0;
    while (done < buf.length) {
      const n = readSync(this.fd, buf, done, buf.length - done, info.begin + done);
      if (n === 0) throw new CheckpointError(`${this.path}: unexpected end of file reading '${name}'`);
      done += n;
    }
    return buf;
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

function parseEntry(path: string, name: string, raw: unknown, dataStart: number, fileSize: number): TensorInfo {
  const e = raw as { dtype?: string; shape?: unknown; data_offsets?: unknown };
  const dtype = e?.dtype as SafetensorsDType;
  if (!(dtype in SAFETENSORS_DTYPE_BYTES)) {
    throw new CheckpointError(`${path}: tensor '${name}' has unsupported dtype ${e?.dtype}`);
  }
  const shape = e.shape;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new CheckpointError(`${path}: tensor '${name}' has an invalid shape ${JSON.stringify(shape)}`);
  }
  const off = e.data_offsets;
  if (!Array.isArray(off) || off.length !== 2 || !off.every((o) => Number.isInteger(o) && o >= 0) || off[1] < off[0]) {
    throw new CheckpointError(`${path}: tensor '${name}' has invalid data_offsets ${JSON.stringify(off)}`);
  }
  const expected = shape.reduce((a: number, b: number) => a * b, 1) * SAFETENSORS_DTYPE_BYTES[dtype];
  if (off[1] - off[0] !== expected) {
    throw new CheckpointError(
      `${path}: tensor '${name}' ${dtype}[${shape.join(',')}] needs ${expected} bytes but data_offsets span ${off[1] - off[0]}`,
    );
  }
  const begin = dataStart + off[0];
  const end = dataStart + off[1];
  if (end > fileSize) {
    throw new CheckpointError(`${path}: tensor '${name}' ends at byte ${end} but the file has ${fileSize} (truncated)`);
  }
  return { name, dtype, shape: shape as number[], begin, end, file: path };
}

function checkNoOverlap(path: string, infos: TensorInfo[]): void {
  const sorted = [...infos].sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].begin < sorted[i - 1].end) {
      throw new CheckpointError(`${path}: tensors '${sorted[i - 1].name}' and '${sorted[i].name}' overlap`);
    }
  }
}

/**
 * A Hugging Face checkpoint directory: `model.safetensors`, or shards listed in `model.safetensors.index.json`.
 * Tensor names are global; each read opens only the shard that holds the tensor.
 */
export class Checkpoint {
  private constructor(
    readonly dir: string,
    private readonly files: Map<string, SafetensorsFile>,
    private readonly where: Map<string, SafetensorsFile>,
  ) {}

  static open(dir: string): Checkpoint {
    const index = join(dir, 'model.safetensors.index.json');
    const single = join(dir, 'model.safetensors');
    const files = new Map<string, SafetensorsFile>();
    const where = new Map<string, SafetensorsFile>();
    try {
      if (existsSync(index)) {
        let raw: unknown;
        try {
          raw = JSON.parse(readFileSync(index, 'utf8'));
        } catch (e) {
          throw new CheckpointError(`${index}: not valid JSON (${(e as Error).message})`);
        }
        requireJsonObject(raw, index, CheckpointError);
        const weightMap = raw.weight_map;
        if (!weightMap || typeof weightMap !== 'object' || Array.isArray(weightMap)) {
          throw new CheckpointError(`${index}: no weight_map (expected an object of tensor name to shard file, got ${jsonKind(weightMap)})`);
        }
        // Tensors by shard, so a missing shard is reported with what the index expects of it.
        const byShard = new Map<string, string[]>();
        for (const [name, shard] of Object.entries(weightMap)) {
          if (typeof shard !== 'string') throw new CheckpointError(`${index}: weight_map maps '${name}' to ${JSON.stringify(shard)}, not a file name`);
          const names = byShard.get(shard);
          if (names) names.push(name);
          else byShard.set(shard, [name]);
        }
        for (const [shard, names] of byShard) {
          if (!existsSync(join(dir, shard))) {
            throw new CheckpointError(`${index}: weight_map refers to ${shard} for ${names.length} tensor(s) (e.g. '${names[0]}'), but ${join(dir, shard)} does not exist`);
          }
          const file = SafetensorsFile.open(join(dir, shard));
          files.set(shard, file);
          for (const name of names) {
            if (!file.tensors.has(name)) {
              throw new CheckpointError(`${index}: maps '${name}' to ${shard}, which has no such tensor`);
            }
            where.set(name, file);
          }
        }
      } else if (existsSync(single)) {
        const file = SafetensorsFile.open(single);
        files.set('model.safetensors', file);
        for (const name of file.tensors.keys()) where.set(name, file);
      } else {
        throw new CheckpointError(`${dir}: no model.safetensors or model.safetensors.index.json`);
      }
    } catch (e) {
      for (const f of files.values()) f.close();
      throw e;
    }
    return new Checkpoint(dir, files, where);
  }

  names(): string[] {
    return [...this.where.keys()];
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  info(name: string): TensorInfo {
    const f = this.where.get(name);
    if (!f) throw new CheckpointError(`${this.dir}: checkpoint has no tensor '${name}'`);
    return f.tensors.get(name)!;
  }

  read(name: string): Uint8Array {
    const f = this.where.get(name);
    if (!f) throw new CheckpointError(`${this.dir}: checkpoint has no tensor '${name}'`);
    return f.read(name);
  }

  close(): void {
    for (const f of this.files.values()) f.close();
  }
}

/** Bits of an exponent of all ones (infinity or NaN) in each float dtype. */
const NON_FINITE_EXPONENT = { F32: 0x7f800000, F16: 0x7c00, BF16: 0x7f80 } as const;

/**
 * Names of the checkpoint's float tensors that hold a NaN or an infinity. Reads every tensor, so it is for
 * explaining non-finite outputs after the fact (a load-time check would cost every load a pass over the weights).
 */
export function nonFiniteTensors(ck: Checkpoint): string[] {
  const bad: string[] = [];
  for (const name of ck.names()) {
    const dtype = ck.info(name).dtype;
    if (!(dtype in NON_FINITE_EXPONENT)) continue;
    const mask = NON_FINITE_EXPONENT[dtype as keyof typeof NON_FINITE_EXPONENT];
    const bytes = ck.read(name); // a fresh buffer at offset 0, so aligned for the views below
    const words = dtype === 'F32' ? new Uint32Array(bytes.buffer, 0, bytes.length / 4) : new Uint16Array(bytes.buffer, 0, bytes.length / 2);
    if (words.some((w) => (w & mask) === mask)) bad.push(name);
  }
  return bad;
}

export interface TensorToWrite {
  dtype: SafetensorsDType;
  shape: number[];
  /** Raw little-endian bytes, typed data of the matching width, or a function producing either when written. */
  data: TensorData | (() => TensorData);
}

type TensorData = Uint8Array | Float32Array | Uint16Array | Int32Array;

/**
 * Writes a .safetensors file: tensors in name order after an 8-byte-aligned JSON header, as HF's writer does.
 * Data is written tensor by tensor (lazy data is produced just then), so a large checkpoint never sits in memory.
 * The file appears under its name only when complete.
 */
export function writeSafetensors(path: string, tensors: Record<string, TensorToWrite>, metadata: Record<string, string> = {}): void {
  const names = Object.keys(tensors).sort();
  if (names.includes('__metadata__')) throw new CheckpointError(`writeSafetensors: '__metadata__' is the header's metadata entry, not a tensor name`);
  // No prototype: a tensor named '__proto__' would set it instead of becoming a header entry, so its data would be
  // written with no entry naming it.
  const header: Record<string, unknown> = Object.create(null);
  header.__metadata__ = metadata;
  let offset = 0;
  for (const name of names) {
    const t = tensors[name];
    const bytes = t.shape.reduce((a, b) => a * b, 1) * SAFETENSORS_DTYPE_BYTES[t.dtype];
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(headerBytes.length));
  if (!existsSync(dirname(path))) throw new CheckpointError(`writeSafetensors: directory ${dirname(path)} does not exist`);
  const tmp = `${path}.partial`;
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, len);
    writeSync(fd, headerBytes);
    for (const name of names) {
      const t = tensors[name];
      const data = typeof t.data === 'function' ? t.data() : t.data;
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      const expected = (header[name] as { data_offsets: number[] }).data_offsets;
      if (bytes.byteLength !== expected[1] - expected[0]) {
        throw new CheckpointError(
          `writeSafetensors: '${name}' ${t.dtype}[${t.shape.join(',')}] needs ${expected[1] - expected[0]} bytes, got ${bytes.byteLength}`,
        );
      }
      writeSync(fd, bytes);
    }
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, path);
}
