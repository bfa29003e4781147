import { writeSync } from 'node:fs';

/** Writes all of `data`: writeSync may write only part of it (a disk nearly full) and return without an error. */
export function writeAll(fd: number, data: string | Uint8Array, write: (fd: number, bytes: Uint8Array) => number = writeSync): void {
  let bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  while (bytes.length > 0) {
    const n = write(fd, bytes);
    bytes = bytes.subarray(n);
  }
}
