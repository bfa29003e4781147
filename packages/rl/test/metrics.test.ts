import { appendFileSync, closeSync, mkdtempSync, openSync, readFileSync, readdirSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeAll } from '../src/metrics/write-all.js';
import { crc32c, maskedCrc32c } from '../src/metrics/crc32c.js';
import { MetricsLogger, readMetrics, truncateMetricsAfter } from '../src/metrics/jsonl.js';
import { ProgressMeter, formatDuration, formatProgress } from '../src/metrics/progress.js';
import { EventFileWriter } from '../src/metrics/tensorboard.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'rl-metrics-'));

// An independent reader: TFRecord frames and the three protobuf messages, decoded field by field.
function readRecords(bytes: Uint8Array): Uint8Array[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Uint8Array[] = [];
  let p = 0;
  while (p < bytes.length) {
    const len = Number(view.getBigUint64(p, true));
    expect(view.getUint32(p + 8, true)).toBe(maskedCrc32c(bytes.subarray(p, p + 8)));
    const data = bytes.subarray(p + 12, p + 12 + len);
    expect(view.getUint32(p + 12 + len, true)).toBe(maskedCrc32c(data));
    out.push(data);
    p += 12 + len + 4;
  }
  expect(p).toBe(bytes.length);
  return out;
}

type Fields = Map<number, (number | bigint | Uint8Array)[]>;
function decodeMessage(b: Uint8Array): Fields {
  const fields: Fields = new Map();
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let p = 0;
  const varint = () => {
    let v = 0n;
    let shift = 0n;
    for (;;) {
      const byte = b[p++];
      v |= BigInt(byte & 0x7f) << shift;
      shift += 7n;
      if (!(byte & 0x80)) return v;
    }
  };
  while (p < b.length) {
    const key = Number(varint());
    const field = key >> 3;
    let value: number | bigint | Uint8Array;
    switch (key & 7) {
      case 0:
        value = varint();
        break;
      case 1:
        value = view.getFloat64(p, true);
        p += 8;
        break;
      case 2: {
        const n = Number(varint());
        value = b.subarray(p, p + n);
        p += n;
        break;
      }
      case 5:
        value = view.getFloat32(p, true);
        p += 4;
        break;
      default:
        throw new Error(`wire type ${key & 7}`);
    }
    fields.set(field, [...(fields.get(field) ?? []), value]);
  }
  return fields;
}

describe('CRC-32C', () => {
  it('matches the standard check values', () => {
    expect(crc32c(new TextEncoder().encode('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa); // RFC 3720 B.4: 32 bytes of zeros
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
  });
});

describe('TensorBoard event file', () => {
  it('writes framed, checksummed Events: a version record, then scalar summaries', () => {
    const dir = tmp();
    const w = new EventFileWriter(dir, 1_700_000_000_123);
    w.addScalars(3, { 'train/loss': 1.25, reward: -0.5, skipped: NaN }, 1_700_000_001.5);
    w.addScalars(300, { reward: 0.75 }, 1_700_000_002);
    w.close();
    expect(w.path).toMatch(/events\.out\.tfevents\.1700000000\./);
    const records = readRecords(readFileSync(w.path)).map(decodeMessage);
    expect(records).toHaveLength(3);
    expect(records[0].get(1)).toEqual([1_700_000_000.123]);
    expect(new TextDecoder().decode(records[0].get(3)![0] as Uint8Array)).toBe('brain.Event:2');

    const scalarsOf = (event: Fields) =>
      (decodeMessage(event.get(5)![0] as Uint8Array).get(1) as Uint8Array[]).map((v) => {
        const value = decodeMessage(v);
        return [new TextDecoder().decode(value.get(1)![0] as Uint8Array), value.get(2)![0]];
      });
    expect(records[1].get(1)).toEqual([1_700_000_001.5]);
    expect(records[1].get(2)).toEqual([3n]);
    expect(scalarsOf(records[1])).toEqual([
      ['train/loss', 1.25],
      ['reward', -0.5],
    ]);
    expect(records[2].get(2)).toEqual([300n]); // a two-byte varint
    expect(scalarsOf(records[2])).toEqual([['reward', 0.75]]);
  });
});

describe('TensorBoard on resume', () => {
  it('a resumed logger marks a SessionLog START at its first step, so TensorBoard drops the killed run’s later points', () => {
    const dir = tmp();
    const log = new MetricsLogger(dir, { restartAt: 7 });
    log.log(7, { reward: 0.5 }, { time: 10 });
    log.close();
    const [file] = readdirSync(join(dir, 'tb'));
    const records = readRecords(readFileSync(join(dir, 'tb', file))).map(decodeMessage);
    expect(records).toHaveLength(3);
    // Event { step = 7, session_log (field 7) = SessionLog { status (field 1) = START (1) } }, before the scalars.
    expect(records[1].get(2)).toEqual([7n]);
    expect(decodeMessage(records[1].get(7)![0] as Uint8Array).get(1)).toEqual([1n]);
    expect(records[2].get(5)).toBeDefined();
    // A fresh run writes no restart.
    const fresh = tmp();
    new MetricsLogger(fresh).close();
    const [f2] = readdirSync(join(fresh, 'tb'));
    expect(readRecords(readFileSync(join(fresh, 'tb', f2))).map(decodeMessage).some((r) => r.has(7))).toBe(false);
  });

  it('writes all of a line where the disk takes it a few bytes at a time (writeAll)', () => {
    const file = join(tmp(), 'short.jsonl');
    const fd = openSync(file, 'w');
    let calls = 0;
    // A short write returns how much it wrote, without an error: the rest must be written again.
    writeAll(fd, '{"step": 1, "reward": 0.125}\n', (f, bytes) => {
      calls++;
      return writeSync(f, bytes.subarray(0, Math.min(5, bytes.length)));
    });
    closeSync(fd);
    expect(readFileSync(file, 'utf8')).toBe('{"step": 1, "reward": 0.125}\n');
    expect(calls).toBe(6);
  });
});

describe('metrics.jsonl', () => {
  it('round-trips records with task tags, and mirrors them to TensorBoard as name/task', () => {
    const dir = tmp();
    const log = new MetricsLogger(dir);
    log.log(1, { reward: 0.5, kl: 0.01 }, { time: 10 });
    log.log(1, { reward: 0.25 }, { task: 'house-prices', time: 10 });
    log.log(2, { reward: 0.75, explainedVariance: NaN }, { time: 11 });
    log.close();
    expect(readMetrics(join(dir, 'metrics.jsonl'))).toEqual([
      { step: 1, time: 10, values: { reward: 0.5, kl: 0.01 } },
      { step: 1, time: 10, task: 'house-prices', values: { reward: 0.25 } },
      { step: 2, time: 11, values: { reward: 0.75 } },
    ]);
    const tb = readdirSync(join(dir, 'tb'));
    expect(tb).toHaveLength(1);
    const text = new TextDecoder('latin1').decode(readFileSync(join(dir, 'tb', tb[0])));
    expect(text).toContain('reward/house-prices');
    expect(() => log.log(-1, {})).toThrow(/step must be a non-negative integer/);
  });

  it('survives a torn last line, merges repeated steps (later wins), and truncates for resume', () => {
    const dir = tmp();
    const path = join(dir, 'metrics.jsonl');
    writeFileSync(path, '{"step":1,"time":1,"loss":3}\n{"step":2,"time":2,"loss":2}\n{"step":3,"ti');
    expect(readMetrics(path).map((r) => r.step)).toEqual([1, 2]);
    const log = new MetricsLogger(dir, { tensorboard: false }); // cuts the torn line before appending
    log.log(2, { loss: 1.5, acc: 0.5 }, { time: 5 });
    log.close();
    expect(readFileSync(path, 'utf8').split('\n')).toHaveLength(4);
    expect(readMetrics(path)).toEqual([
      { step: 1, time: 1, values: { loss: 3 } },
      { step: 2, time: 5, values: { loss: 1.5, acc: 0.5 } },
    ]);
    truncateMetricsAfter(path, 1);
    expect(readMetrics(path).map((r) => r.step)).toEqual([1]);
    appendFileSync(path, 'garbage\n{"step":4,"time":1}\n');
    expect(() => readMetrics(path)).toThrow(/metrics\.jsonl:2: not JSON/);
  });
});

describe('progress bar', () => {
  it('formats rate, ETA and reported values', () => {
    expect(formatProgress({ label: 'sft', total: 40, done: 12, elapsedMs: 8000, unit: 'step', info: { epoch: 2, loss: 1.23456, 'tok/s': 530.2 } })).toBe(
      'sft [######--------------] 12/40 30% 1.500 step/s ETA 0:19 epoch 2 loss 1.235 tok/s 530',
    );
    expect(formatProgress({ label: 'x', total: 5, done: 0, elapsedMs: 0 })).toBe('x [--------------------] 0/5 0% 0 it/s ETA ?');
    expect(formatDuration(3725)).toBe('1:02:05');
  });

  it('writes plain lines off a terminal, at most one per interval, and always the last', () => {
    const lines: string[] = [];
    let t = 0;
    const stream = { write: (s: string) => lines.push(s) } as unknown as NodeJS.WritableStream;
    const bar = new ProgressMeter({ total: 3, label: 'ppo', stream, logIntervalMs: 1000, now: () => t });
    t = 100;
    bar.tick(1, { reward: 0.5 });
    t = 200;
    bar.tick(1);
    t = 300;
    bar.tick(1);
    expect(lines).toEqual(['ppo [#######-------------] 1/3 33% 10 it/s ETA 0:00 reward 0.500\n', 'ppo [####################] 3/3 100% 10 it/s ETA 0:00 reward 0.500\n']);
  });
});
