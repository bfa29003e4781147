// Bad inputs to the runtime (tensors, views, copies, Gpu options, scope) get a typed error, never a wrong result.
import { afterAll, describe, expect, it } from 'vitest';
import { BufferAllocator, Gpu, ShapeError, f32ToF16Bits, type Tensor } from '../src/index.js';
import { add } from '../src/kernels/add.js';
import { MAX_TIMEOUT_MS } from '../src/runtime/gpu.js';
import { freshGpu, testGpu } from './helpers.js';

/** A tensor's values read back, as plain numbers (f16 widened). */
async function values(t: Tensor): Promise<number[]> {
  return Array.from(await t.read());
}

describe('views', () => {
  it('a view made by reshape() or rows() fails once the tensor owning its buffer is disposed', async () => {
    const gpu = await testGpu();
    const p = gpu.tensor([4], 'f32', [1, 2, 3, 4]);
    const v = p.reshape([2, 2]);
    const r = p.rows(1, 2);
    const vv = v.reshape([4]).rows(0, 2); // a view of a view still belongs to p
    expect(await values(vv)).toEqual([1, 2]);
    v.dispose(); // a view owns no buffer: p lives on
    expect(await values(p)).toEqual([1, 2, 3, 4]);
    p.dispose();
    // The allocator hands p's buffer to the next tensor of its size class.
    const q = gpu.tensor([4], 'f32', [9, 9, 9, 9]);
    expect(q.buffer).toBe(p.buffer);
    await expect(r.read()).rejects.toThrow(/tensor used after dispose\(\) of the f32\[4\] tensor it is a view of/);
    expect(() => r.write([5, 5])).toThrowError(ShapeError);
    expect(() => vv.binding()).toThrow(/after dispose/);
    expect(() => r.reshape([2])).toThrow(/after dispose/);
    expect(() => add(gpu, r, q.rows(0, 2))).toThrowError(ShapeError);
    expect(() => gpu.clear(r)).toThrow(/after dispose/);
    expect(() => gpu.copyTensor(q.rows(0, 2), r)).toThrow(/after dispose/);
    expect([r.isDisposed, vv.isDisposed, q.isDisposed]).toEqual([true, true, false]);
    expect(await values(q)).toEqual([9, 9, 9, 9]);
    q.dispose();
  });

  it('reshape() refuses negative or fractional dimensions, and rows() a start or count that is not a whole row', async () => {
    const gpu = await testGpu();
    const t = gpu.tensor([2, 3], 'f32', [1, 2, 3, 4, 5, 6]);
    for (const shape of [[-2, -3], [1.5, 4], [NaN], [6, Infinity]]) {
      expect(() => t.reshape(shape), `reshape([${shape}])`).toThrow(/invalid dimension .* \[op=reshape shapes=f32\[2,3\]\]/);
    }
    for (const [start, count] of [[0.5, 1], [NaN, 1], [0, 1.5], [0, NaN], [-1, 1], [0, -1], [1, 2], [Infinity, 0]]) {
      expect(() => t.rows(start, count), `rows(${start}, ${count})`).toThrow(/is not a range of whole rows in 0\.\.2 \[op=rows/);
    }
    expect(() => gpu.tensor([], 'f32', [1]).rows(0, 1)).toThrow(/rows of a scalar/);
    expect(await values(t.rows(1, 1))).toEqual([4, 5, 6]);
    expect(t.reshape([3, 2]).rows(2, 0).shape).toEqual([0, 2]);
    t.dispose();
  });
});

describe('f16 views that share a 4-byte word with a neighbour', () => {
  it('writes change only the view elements, at any 2-byte offset and length', async () => {
    const gpu = await testGpu();
    if (!gpu.features.shaderF16) return;
    const t = gpu.tensor([5, 1], 'f16', [1, 2, 3, 4, 5]);
    t.rows(0, 1).write([7]); // the low half of word 0: the padding would zero element 1
    expect(await values(t)).toEqual([7, 2, 3, 4, 5]);
    t.rows(1, 1).write([8]); // byte offset 2: Dawn drops an unaligned write
    expect(await values(t)).toEqual([7, 8, 3, 4, 5]);
    t.rows(1, 2).write(new Uint16Array([9, 10].map(f32ToF16Bits))); // two halves of two words, as raw f16 bits
    expect(await values(t)).toEqual([7, 9, 10, 4, 5]);
    t.rows(1, 3).write([11, 12, 13]); // a half word, a whole word, a half word
    expect(await values(t)).toEqual([7, 11, 12, 13, 5]);
    t.rows(3, 2).write([14, 15]); // ends at the tensor's end: the padding after it is nobody's
    expect(await values(t)).toEqual([7, 11, 12, 14, 15]);
    const m = gpu.tensor([4, 3], 'f16', new Array(12).fill(1));
    m.rows(1, 1).write([7, 8, 9]);
    expect(await values(m)).toEqual([1, 1, 1, 7, 8, 9, 1, 1, 1, 1, 1, 1]);
    // In order with the ops around it: one recorded before the write reads the old value, one after it the new.
    const before = add(gpu, t, t);
    t.rows(2, 1).write([1]);
    const after = add(gpu, t, t);
    expect(await values(before)).toEqual([14, 22, 24, 28, 30]);
    expect(await values(after)).toEqual([14, 22, 2, 28, 30]);
    // Past the first bindable offset (256 bytes), where the merge binds a later window of the buffer.
    const long = gpu.zeros([300, 1], 'f16');
    long.rows(201, 3).write([1, 2, 3]);
    const got = await values(long);
    expect([got.slice(199, 206), got.filter((v) => v !== 0).length]).toEqual([[0, 0, 1, 2, 3, 0, 0], 3]);
    for (const x of [t, m, before, after, long]) x.dispose();
  });

  it('clear() zeroes only the view elements', async () => {
    const gpu = await testGpu();
    if (!gpu.features.shaderF16) return;
    const t = gpu.tensor([6, 1], 'f16', [1, 2, 3, 4, 5, 6]);
    gpu.clear(t.rows(0, 1));
    expect(await values(t)).toEqual([0, 2, 3, 4, 5, 6]);
    gpu.clear(t.rows(3, 1));
    expect(await values(t)).toEqual([0, 2, 3, 0, 5, 6]);
    t.write([1, 2, 3, 4, 5, 6]);
    gpu.clear(t.rows(1, 4));
    expect(await values(t)).toEqual([1, 0, 0, 0, 0, 6]);
    const odd = gpu.zeros([3], 'f16');
    expect(await values(odd)).toEqual([0, 0, 0]);
    t.dispose();
    odd.dispose();
  });

  it('copyTensor() changes only the destination elements, and refuses offsets whose halves would need shifting', async () => {
    const gpu = await testGpu();
    if (!gpu.features.shaderF16) return;
    const t = gpu.tensor([4, 1], 'f16', [1, 2, 3, 4]);
    const s = gpu.tensor([2], 'f16', [9, 8]);
    gpu.copyTensor(s.rows(0, 1), t.rows(2, 1));
    expect(await values(t)).toEqual([1, 2, 9, 4]);
    // Within one buffer, from byte offset 2 to byte offset 6: a half word at each end.
    const u = gpu.tensor([6, 1], 'f16', [1, 2, 3, 4, 5, 6]);
    gpu.copyTensor(u.rows(1, 2), u.rows(3, 2));
    expect(await values(u)).toEqual([1, 2, 3, 2, 3, 6]);
    gpu.copyTensor(s, u.rows(0, 2));
    gpu.copyTensor(s.rows(1, 1), u.rows(5, 1)); // the last element, whose word ends in padding
    expect(await values(u)).toEqual([9, 8, 3, 2, 3, 8]);
    expect(() => gpu.copyTensor(u.rows(0, 1), u.rows(1, 1))).toThrow(
      /source byte offset 0 and destination byte offset 2 differ by 2 modulo 4.*\[op=copyTensor shapes=f16\[1,1\] -> f16\[1,1\]\]/,
    );
    expect(() => gpu.copyTensor(u, t)).toThrow(/copy of 12 bytes: needs an even count of at most both tensors' 12 and 8/);
    expect(await values(u)).toEqual([9, 8, 3, 2, 3, 8]);
    for (const x of [t, s, u]) x.dispose();
  });

  it('a buffer write at an offset that is not a whole word is refused, not dropped', async () => {
    const gpu = await testGpu();
    const t = gpu.tensor([4], 'f32', [1, 2, 3, 4]);
    expect(() => gpu.writeBuffer(t.buffer, 2, new Uint16Array([1, 2]))).toThrow(/write at byte offset 2: buffer writes start on a 4-byte word/);
    t.dispose();
  });
});

describe('integer tensors', () => {
  it('refuse host values they cannot hold, naming the first and its index', async () => {
    const gpu = await testGpu();
    const inUse = gpu.memory().inUse;
    expect(() => gpu.tensor([3], 'i32', [1.7, -2.5, 3e10])).toThrow(/value 1\.7 at index 0 is not an integer in -2147483648\.\.2147483647.*op=tensor\.write shapes=i32\[3\]/);
    expect(() => gpu.tensor([3], 'i32', [1, 2, 2 ** 31])).toThrow(/value 2147483648 at index 2/);
    expect(() => gpu.tensor([2], 'i32', new Float32Array([0, 0.5]))).toThrow(/value 0\.5 at index 1/);
    expect(() => gpu.tensor([2], 'u32', [NaN, -1])).toThrow(/value NaN at index 0 is not an integer in 0\.\.4294967295/);
    expect(() => gpu.tensor([2], 'u32', new Int32Array([0, -1]))).toThrow(/value -1 at index 1/);
    expect(() => gpu.tensor([1], 'u32', [2 ** 32])).toThrow(/value 4294967296 at index 0/);
    expect(gpu.memory().inUse, 'a refused tensor keeps no buffer').toBe(inUse);
    const i = gpu.tensor([2], 'i32', [-(2 ** 31), 2 ** 31 - 1]);
    const u = gpu.tensor([2], 'u32', [0, 2 ** 32 - 1]);
    expect(() => i.write([1, Infinity])).toThrow(/value Infinity at index 1/);
    expect(await values(i)).toEqual([-(2 ** 31), 2 ** 31 - 1]);
    expect(await values(u)).toEqual([0, 2 ** 32 - 1]);
    i.dispose();
    u.dispose();
  });
});

describe('two Gpus', () => {
  it('refuse each other tensors when an op binds, clears or copies them, naming the tensor and both devices', async () => {
    const g1 = await testGpu();
    const g2 = await freshGpu();
    try {
      expect(g1.label).toMatch(/^mlagent#\d+$/);
      expect(g2.label).not.toBe(g1.label);
      expect(g2.device.label).toBe(g2.label);
      const a1 = g1.tensor([2, 4], 'f32', [1, 2, 3, 4, 5, 6, 7, 8]);
      const b2 = g2.tensor([2, 4], 'f32', new Array(8).fill(1));
      const other = new RegExp(`f32\\[2,4\\] belongs to another Gpu \\(device "${g1.label}"\\), not this one \\("${g2.label}"\\)`);
      expect(() => add(g2, b2, a1)).toThrow(other); // bound as a bare buffer binding
      const pipeline = g2.pipeline('noop-one-binding', () => '@group(0) @binding(0) var<storage, read_write> y: array<f32>;\n@compute @workgroup_size(1) fn main() { y[0] = 0.0; }');
      expect(() => g2.dispatch({ op: 'noop', pipeline, bindings: [a1.rows(1, 1)], workgroups: [1] })).toThrow(
        /binding 0 f32\[1,4\] belongs to another Gpu/,
      );
      expect(() => g2.clear(a1)).toThrow(other);
      expect(() => g2.copyTensor(a1, b2)).toThrow(other);
      expect(() => g2.copyTensor(b2, a1)).toThrow(other);
      // Nothing of the refused ops reached either device.
      expect(await values(add(g2, b2, b2))).toEqual(new Array(8).fill(2));
      expect(await values(a1)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
      a1.dispose();
    } finally {
      g2.destroy();
    }
  });
});

describe('Gpu.create options', () => {
  it('refuses a timeout past what Node timers keep, in code or in MLAGENT_GPU_TIMEOUT_MS, and accepts the largest', async () => {
    expect(MAX_TIMEOUT_MS).toBe(2147483647);
    for (const timeoutMs of [2 ** 31, 1e10]) {
      await expect(Gpu.create({ timeoutMs })).rejects.toThrow(new RegExp(`timeoutMs must be at most 2147483647 .*got ${timeoutMs}`));
    }
    const saved = process.env.MLAGENT_GPU_TIMEOUT_MS;
    try {
      process.env.MLAGENT_GPU_TIMEOUT_MS = '1e10';
      await expect(Gpu.create()).rejects.toThrow(/MLAGENT_GPU_TIMEOUT_MS must be at most 2147483647 .*got "1e10"/);
    } finally {
      if (saved === undefined) delete process.env.MLAGENT_GPU_TIMEOUT_MS;
      else process.env.MLAGENT_GPU_TIMEOUT_MS = saved;
    }
    const gpu = await freshGpu({ timeoutMs: MAX_TIMEOUT_MS });
    try {
      expect(await values(gpu.tensor([2], 'f32', [1, 2]))).toEqual([1, 2]);
    } finally {
      gpu.destroy();
    }
  });

  it('refuses a budget, cache limit or binding cap that is not a number of bytes', async () => {
    for (const budgetBytes of [NaN, -1, 0]) {
      await expect(Gpu.create({ budgetBytes })).rejects.toThrow(
        new RegExp(`budgetBytes must be a positive number of bytes \\(Infinity for none\\), got ${budgetBytes} \\[op=Gpu.create\\]`),
      );
    }
    await expect(Gpu.create({ cacheLimitBytes: NaN })).rejects.toThrow(/cacheLimitBytes must be a number of bytes, 0 or more, got NaN \[op=Gpu.create\]/);
    for (const maxBindingBytes of [NaN, 0, 1.5]) {
      await expect(Gpu.create({ maxBindingBytes })).rejects.toThrow(new RegExp(`maxBindingBytes must be a positive integer, got ${maxBindingBytes}`));
    }
    const gpu = await testGpu();
    expect(() => new BufferAllocator(gpu.device, 1 << 20, { budgetBytes: NaN })).toThrow(/budgetBytes .*\[op=BufferAllocator\]/);
  });
});

describe('scope', () => {
  it('refuses an async function, saying it takes a synchronous one, and keeps none of its tensors', async () => {
    const gpu = await testGpu();
    const inUse = gpu.memory().inUse;
    let a: Tensor | undefined;
    let settled: Promise<unknown> | undefined;
    expect(() =>
      gpu.scope(() => {
        settled = (async () => {
          a = gpu.tensor([4], 'f32', [1, 2, 3, 4]);
          await null;
          return add(gpu, a, a); // after the scope ended: fails on the disposed a, and that rejection is handled
        })();
        return settled;
      }),
    ).toThrow(/scope\(\) takes a synchronous function, but this one returned a Promise/);
    expect(a!.isDisposed).toBe(true);
    expect(gpu.memory().inUse).toBe(inUse);
    await expect(settled).rejects.toThrow(/after dispose/);
  });
});

afterAll(async () => {
  const gpu: Gpu = await testGpu();
  await gpu.sync();
});
