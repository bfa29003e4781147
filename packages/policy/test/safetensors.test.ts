import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Checkpoint, CheckpointError, SafetensorsFile, nonFiniteTensors, writeSafetensors } from '../src/index.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'mlagent-st-'));

// An independent writer of the format in plain Python (struct + json), so the reader is not only checked
// against our own writer.
const PY_WRITER = `
import json, struct, sys, array
path = sys.argv[1]
a = array.array('f', [1.5, -2.0, 3.25, 0.0, 7.0, 8.0])
b = array.array('H', [0x3f80, 0xc000, 0x4049])  # bf16 1, -2, 3.140625
h = {"b": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]},
     "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [6, 30]},
     "__metadata__": {"format": "pt"}}
hj = json.dumps(h).encode()
with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(hj))); f.write(hj); f.write(b.tobytes()); f.write(a.tobytes())
`;

// And an independent reader, to check what we write.
const PY_READER = `
import json, struct, sys, array
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n)); data = f.read()
out = {}
for k, v in h.items():
    if k == "__metadata__": continue
    s, e = v["data_offsets"]
    code = {"F32": "f", "F16": "H", "BF16": "H", "I32": "i"}[v["dtype"]]
    out[k] = {"dtype": v["dtype"], "shape": v["shape"], "values": array.array(code, data[s:e]).tolist()}
print(json.dumps({"tensors": out, "metadata": h.get("__metadata__"), "header_len": n}))
`;

function python(script: string, ...args: string[]): string {
  const r = spawnSync('python3', ['-c', script, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return r.stdout;
}

describe('safetensors', () => {
  it('reads a file written by an independent writer', () => {
    const path = join(tmp(), 'model.safetensors');
    python(PY_WRITER, path);
    const f = SafetensorsFile.open(path);
    expect(f.metadata).toEqual({ format: 'pt' });
    expect(f.tensors.get('a')).toMatchObject({ dtype: 'F32', shape: [2, 3] });
    const a = f.read('a');
    expect(Array.from(new Float32Array(a.buffer, a.byteOffset, 6))).toEqual([1.5, -2, 3.25, 0, 7, 8]);
    const b = f.read('b');
    expect(Array.from(new Uint16Array(b.slice().buffer))).toEqual([0x3f80, 0xc000, 0x4049]);
    f.close();
  });

  it('writes files an independent reader parses, with an 8-byte aligned header', () => {
    const path = join(tmp(), 'out.safetensors');
    writeSafetensors(
      path,
      {
        'z.weight': { dtype: 'F32', shape: [2], data: new Float32Array([0.5, -1]) },
        'a.bias': { dtype: 'F16', shape: [3], data: new Uint16Array([0x3c00, 0x4000, 0xc200]) },
        lazy: { dtype: 'I32', shape: [2], data: () => new Int32Array([7, -9]) },
      },
      { format: 'pt' },
    );
    const parsed = JSON.parse(python(PY_READER, path));
    expect(parsed.header_len % 8).toBe(0);
    expect(parsed.metadata).toEqual({ format: 'pt' });
    expect(parsed.tensors['z.weight']).toEqual({ dtype: 'F32', shape: [2], values: [0.5, -1] });
    expect(parsed.tensors['a.bias'].values).toEqual([0x3c00, 0x4000, 0xc200]);
    expect(parsed.tensors.lazy.values).toEqual([7, -9]);
  });

  it("writes a tensor named '__proto__' into the header, and refuses one named '__metadata__'", () => {
    const path = join(tmp(), 'proto.safetensors');
    const tensors = JSON.parse('{"__proto__": 0, "b": 0}') as Record<string, unknown>;
    tensors['__proto__'] = { dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) };
    tensors.b = { dtype: 'F32', shape: [1], data: new Float32Array([3]) };
    writeSafetensors(path, tensors as Parameters<typeof writeSafetensors>[1]);
    const f = SafetensorsFile.open(path);
    expect([...f.tensors.keys()].sort()).toEqual(['__proto__', 'b']);
    expect([...new Float32Array(f.read('__proto__').buffer)]).toEqual([1, 2]);
    expect([...new Float32Array(f.read('b').buffer)]).toEqual([3]);
    f.close();
    expect(() => writeSafetensors(join(tmp(), 'meta.safetensors'), { __metadata__: { dtype: 'F32', shape: [1], data: new Float32Array(1) } })).toThrow(
      /'__metadata__' is the header's metadata entry, not a tensor name/,
    );
  });

  it('rejects truncated, corrupt and inconsistent files with errors naming the problem', () => {
    const dir = tmp();
    const good = join(dir, 'good.safetensors');
    writeSafetensors(good, { w: { dtype: 'F32', shape: [4], data: new Float32Array(4) } });
    const bytes = readFileSync(good);
    const truncated = join(dir, 'truncated.safetensors');
    writeFileSync(truncated, bytes.subarray(0, bytes.length - 3));
    expect(() => SafetensorsFile.open(truncated)).toThrow(/truncated/);
    const tiny = join(dir, 'tiny.safetensors');
    writeFileSync(tiny, Buffer.from([1, 2, 3]));
    expect(() => SafetensorsFile.open(tiny)).toThrow(/truncated/);
    const badJson = join(dir, 'bad.safetensors');
    const h = Buffer.from('{not json');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(h.length));
    writeFileSync(badJson, Buffer.concat([len, h]));
    expect(() => SafetensorsFile.open(badJson)).toThrow(/not valid JSON/);
    const mismatch = join(dir, 'mismatch.safetensors');
    const hj = Buffer.from(JSON.stringify({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 16] } }));
    const l2 = Buffer.alloc(8);
    l2.writeBigUInt64LE(BigInt(hj.length));
    writeFileSync(mismatch, Buffer.concat([l2, hj, Buffer.alloc(16)]));
    expect(() => SafetensorsFile.open(mismatch)).toThrow(/needs 12 bytes but data_offsets span 16/);
    const dtype = join(dir, 'dtype.safetensors');
    const hd = Buffer.from(JSON.stringify({ w: { dtype: 'F8_E4M3', shape: [1], data_offsets: [0, 1] } }));
    const l3 = Buffer.alloc(8);
    l3.writeBigUInt64LE(BigInt(hd.length));
    writeFileSync(dtype, Buffer.concat([l3, hd, Buffer.alloc(1)]));
    expect(() => SafetensorsFile.open(dtype)).toThrow(/unsupported dtype F8_E4M3/);
    expect(() => SafetensorsFile.open(join(dir, 'nope.safetensors'))).toThrow(CheckpointError);
  });

  it('opens sharded checkpoints through the index and reads each tensor from its shard', () => {
    const dir = tmp();
    writeSafetensors(join(dir, 'model-00001-of-00002.safetensors'), { a: { dtype: 'F32', shape: [1], data: new Float32Array([1]) } });
    writeSafetensors(join(dir, 'model-00002-of-00002.safetensors'), { b: { dtype: 'F32', shape: [1], data: new Float32Array([2]) } });
    writeFileSync(
      join(dir, 'model.safetensors.index.json'),
      JSON.stringify({ metadata: {}, weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' } }),
    );
    const ck = Checkpoint.open(dir);
    expect(ck.names().sort()).toEqual(['a', 'b']);
    expect(new Float32Array(ck.read('b').slice().buffer)[0]).toBe(2);
    expect(() => ck.read('c')).toThrow(/no tensor 'c'/);
    ck.close();
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { c: 'model-00001-of-00002.safetensors' } }));
    expect(() => Checkpoint.open(dir)).toThrow(/maps 'c' to model-00001-of-00002.safetensors, which has no such tensor/);
    expect(() => Checkpoint.open(tmp())).toThrow(/no model.safetensors/);
  });

  it('nonFiniteTensors names the F32, F16 and BF16 tensors holding NaN or Inf', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mlagent-st-nan-'));
    const u16 = (...bits: number[]) => Uint16Array.from(bits);
    // F16: 0x7c00 = Inf, 0x7e00 = NaN, 0x7bff = 65504 (largest finite); BF16: 0x7f80 = Inf, 0xffc0 = NaN, 0x7f7f finite.
    writeSafetensors(join(dir, 'model.safetensors'), {
      f32ok: { dtype: 'F32', shape: [3], data: Float32Array.from([1, -3.4e38, 0]) },
      f32nan: { dtype: 'F32', shape: [3], data: Float32Array.from([1, NaN, 0]) },
      f32inf: { dtype: 'F32', shape: [2], data: Float32Array.from([-Infinity, 0]) },
      f16ok: { dtype: 'F16', shape: [2], data: u16(0x7bff, 0xfbff) },
      f16inf: { dtype: 'F16', shape: [2], data: u16(0, 0x7c00) },
      f16nan: { dtype: 'F16', shape: [1], data: u16(0x7e00) },
      bf16ok: { dtype: 'BF16', shape: [2], data: u16(0x7f7f, 0xff7f) },
      bf16inf: { dtype: 'BF16', shape: [1], data: u16(0x7f80) },
      bf16nan: { dtype: 'BF16', shape: [1], data: u16(0xffc0) },
      ints: { dtype: 'I32', shape: [1], data: Int32Array.from([0x7f800000]) },
    });
    const ck = Checkpoint.open(dir);
    try {
      expect(nonFiniteTensors(ck).sort()).toEqual(['bf16inf', 'bf16nan', 'f16inf', 'f16nan', 'f32inf', 'f32nan']);
    } finally {
      ck.close();
    }
  });
});

describe('safetensors: inputs that are not what they claim (audit)', () => {
  /** A file with this header text and no data. */
  function withHeader(path: string, header: string): string {
    const h = Buffer.from(header);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(h.length));
    writeFileSync(path, Buffer.concat([len, h]));
    return path;
  }

  it('a header that is JSON but not an object names the file', () => {
    const dir = tmp();
    for (const [text, kind] of [['null', 'null'], ['[1,2]', 'an array'], ['"x"', 'a string']]) {
      const path = withHeader(join(dir, 'h.safetensors'), text);
      expect(() => SafetensorsFile.open(path), text).toThrow(CheckpointError);
      expect(() => SafetensorsFile.open(path), text).toThrow(`${path}: header: expected a JSON object, got ${kind}`);
    }
  });

  it('a directory where the weights file belongs is named as such', () => {
    const dir = tmp();
    mkdirSync(join(dir, 'model.safetensors'));
    expect(() => Checkpoint.open(dir)).toThrow(CheckpointError);
    expect(() => Checkpoint.open(dir)).toThrow(`${join(dir, 'model.safetensors')}: is a directory, not a safetensors file`);
  });

  it('a missing shard names the index, the shard and how many tensors it should hold; a null index names the file', () => {
    const dir = tmp();
    writeSafetensors(join(dir, 'model-00001-of-00002.safetensors'), { a: { dtype: 'F32', shape: [1], data: new Float32Array([1]) } });
    const index = join(dir, 'model.safetensors.index.json');
    writeFileSync(index, JSON.stringify({ weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors', c: 'model-00002-of-00002.safetensors' } }));
    expect(() => Checkpoint.open(dir)).toThrow(
      `${index}: weight_map refers to model-00002-of-00002.safetensors for 2 tensor(s) (e.g. 'b'), but ${join(dir, 'model-00002-of-00002.safetensors')} does not exist`,
    );
    writeFileSync(index, 'null');
    expect(() => Checkpoint.open(dir)).toThrow(`${index}: expected a JSON object, got null`);
    writeFileSync(index, JSON.stringify({ weight_map: [] }));
    expect(() => Checkpoint.open(dir)).toThrow(/no weight_map .*got an array/);
  });
});
