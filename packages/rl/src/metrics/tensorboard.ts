import { closeSync, fsyncSync, openSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { makeDirs } from '@mlagent/policy';
import { maskedCrc32c } from './crc32c.js';
import { writeAll } from './write-all.js';

/**
 * TensorBoard event files without TensorFlow: a TFRecord stream of `Event` protobufs, encoded by hand.
 *
 *   record = uint64 length (LE) | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)
 *   Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; SessionLog session_log = 7; }
 *   Summary { repeated Value value = 1; }   Value { string tag = 1; float simple_value = 2; }
 *   SessionLog { SessionStatus status = 1; }   (START = 1)
 *
 * The first record of a file is an Event with file_version "brain.Event:2", as TensorBoard expects. A SessionLog
 * START at step N makes TensorBoard drop the events of earlier files with step >= N: what a resumed run logs again.
 */

/** Writes scalar summaries to `events.out.tfevents.<seconds>.<host>` in `dir`; every record is flushed to disk. */
export class EventFileWriter {
  readonly path: string;
  private fd: number | null;

  /** `restartAt`: the first step a resumed run logs; TensorBoard then drops the killed run's points from there on. */
  constructor(dir: string, now = Date.now(), restartAt?: number) {
    makeDirs(dir);
    this.path = join(dir, `events.out.tfevents.${Math.floor(now / 1000)}.${hostname()}`);
    this.fd = openSync(this.path, 'a');
    this.writeRecord(encodeEvent({ wallTime: now / 1000, step: 0, fileVersion: 'brain.Event:2' }));
    if (restartAt !== undefined) this.writeRecord(encodeEvent({ wallTime: now / 1000, step: restartAt, sessionStart: true }));
  }

  /** One Event holding every scalar of this step, tagged by name. */
  addScalars(step: number, scalars: Record<string, number>, wallTime = Date.now() / 1000): void {
    const values = Object.entries(scalars).filter(([, v]) => Number.isFinite(v));
    if (values.length === 0) return;
    this.writeRecord(encodeEvent({ wallTime, step, summary: values.map(([tag, value]) => ({ tag, value })) }));
  }

  close(): void {
    if (this.fd === null) return;
    fsyncSync(this.fd);
    closeSync(this.fd);
    this.fd = null;
  }

  private writeRecord(data: Uint8Array): void {
    if (this.fd === null) throw new Error(`EventFileWriter: ${this.path} is closed`);
    writeAll(this.fd, tfRecord(data));
  }
}

/** Frames one record: length, masked CRC of the length, data, masked CRC of the data. */
export function tfRecord(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length + 4);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(data.length), true);
  view.setUint32(8, maskedCrc32c(out.subarray(0, 8)), true);
  out.set(data, 12);
  view.setUint32(12 + data.length, maskedCrc32c(data), true);
  return out;
}

export interface EventFields {
  wallTime: number;
  step: number;
  fileVersion?: string;
  summary?: { tag: string; value: number }[];
  /** A SessionLog with status START. */
  sessionStart?: boolean;
}

export function encodeEvent(e: EventFields): Uint8Array {
  const w = new ProtoWriter();
  w.double(1, e.wallTime);
  w.varintField(2, e.step);
  if (e.fileVersion !== undefined) w.bytes(3, new TextEncoder().encode(e.fileVersion));
  if (e.summary) {
    const summary = new ProtoWriter();
    for (const { tag, value } of e.summary) {
      const v = new ProtoWriter();
      v.bytes(1, new TextEncoder().encode(tag));
      v.float(2, value);
      summary.bytes(1, v.finish());
    }
    w.bytes(5, summary.finish());
  }
  if (e.sessionStart) {
    const log = new ProtoWriter();
    log.varintField(1, 1);
    w.bytes(7, log.finish());
  }
  return w.finish();
}

/** Protobuf wire format: key = (field << 3) | wire type; 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32. */
class ProtoWriter {
  private chunks: number[] = [];

  varintField(field: number, value: number): void {
    this.varint((field << 3) | 0);
    this.varint(value);
  }
  double(field: number, value: number): void {
    this.varint((field << 3) | 1);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, value, true);
    this.chunks.push(...b);
  }
  float(field: number, value: number): void {
    this.varint((field << 3) | 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.chunks.push(...b);
  }
  bytes(field: number, data: Uint8Array): void {
    this.varint((field << 3) | 2);
    this.varint(data.length);
    this.chunks.push(...data);
  }
  finish(): Uint8Array {
    return Uint8Array.from(this.chunks);
  }

  private varint(value: number): void {
    if (!Number.isSafeInteger(value) || value < 0) throw new Error(`protobuf varint: ${value} is not a non-negative safe integer`);
    let v = BigInt(value);
    do {
      let byte = Number(v & 0x7fn);
      v >>= 7n;
      if (v > 0n) byte |= 0x80;
      this.chunks.push(byte);
    } while (v > 0n);
  }
}
