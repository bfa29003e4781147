import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, describe, expect, it } from 'vitest';
import {
  Gpu,
  type Tensor,
  GpuDeviceLostError,
  GpuLimitError,
  GpuOutOfMemoryError,
  GpuValidationError,
  Params,
  ShapeError,
  f16BitsToF32,
  f32ToF16Bits,
  bf16BitsToF32,
  convertCheckpointData,
  sizeClass,
  MIN_CACHE_LIMIT_BYTES,
  isSoftwareAdapter,
  mergeDawnFlags,
  DAWN_FLAGS,
} from '../src/index.js';
import { create } from 'webgpu';
import { add } from '../src/kernels/add.js';
import { subgroupSizes } from '../src/runtime/features.js';
import { addRef } from '../src/reference/add.js';
import { Rng, expectClose, freshGpu, testGpu } from './helpers.js';

/** A one-invocation kernel over bindings a and y that sets y[0] = `expr`. */
function firstElementPipeline(gpu: Gpu, key: string, expr: string) {
  return gpu.pipeline(
    key,
    () => `
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(1) fn main() { y[0] = ${expr}; }`,
  );
}

describe('dtype conversion', () => {
  it('round-trips f16 and rounds to nearest even', () => {
    for (const v of [0, 1, -2, 0.5, 65504, 6.103515625e-5, 5.960464477539063e-8, -0.333251953125]) {
      expect(f16BitsToF32(f32ToF16Bits(v))).toBe(v);
    }
    expect(f32ToF16Bits(1e6)).toBe(0x7c00); // overflow to +inf
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie goes to even
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(Number.isNaN(f16BitsToF32(f32ToF16Bits(NaN)))).toBe(true);
  });
  it('widens bf16', () => {
    expect(bf16BitsToF32(0x3f80)).toBe(1);
    expect(bf16BitsToF32(0xc000)).toBe(-2);
  });
  it('converts bf16 checkpoint bytes to f32 and f16 tensors', async () => {
    // 1.0, -2.0, 3.140625 (bf16 0x4049), 1e-3-ish (0x3a83) as little-endian bf16.
    const bits = new Uint16Array([0x3f80, 0xc000, 0x4049, 0x3a83]);
    const bytes = new Uint8Array(bits.buffer);
    const f32 = convertCheckpointData(bytes, 'bf16', 'f32') as Float32Array;
    expect(Array.from(f32)).toEqual(Array.from(bits, bf16BitsToF32));
    const gpu = await testGpu();
    const t = gpu.tensor([4], 'f16', convertCheckpointData(bytes, 'bf16', 'f16'));
    expectClose(await t.read(), f32, { atol: 1e-6, rtol: 1e-3 });
    t.dispose();
    // An odd byte offset (as inside a safetensors file) is handled by copying.
    const shifted = new Uint8Array(9);
    shifted.set(bytes, 1);
    expect(Array.from(convertCheckpointData(shifted.subarray(1), 'bf16', 'f32'))).toEqual(Array.from(f32));
  });
});

describe('allocator', () => {
  it('size classes are monotone and waste at most 1/8', () => {
    let prev = 0;
    for (let b = 1; b < 1 << 24; b = Math.ceil(b * 1.37) + 1) {
      const c = sizeClass(b);
      expect(c).toBeGreaterThanOrEqual(b);
      expect(c).toBeGreaterThanOrEqual(prev);
      if (b > 4096) expect(c / b).toBeLessThanOrEqual(1.125 + 1e-9);
      prev = c;
    }
  });

  it('reuses released buffers and tracks in-use and peak bytes', async () => {
    const gpu = await testGpu();
    const before = gpu.memory();
    const a = gpu.tensor([1000], 'f32');
    const b = gpu.tensor([1000], 'f32');
    const mid = gpu.memory();
    expect(mid.inUse - before.inUse).toBe(2 * sizeClass(4000));
    a.dispose();
    const c = gpu.tensor([1000], 'f32');
    expect(c.buffer).toBe(a.buffer);
    expect(gpu.memory().reused).toBe(before.reused + 1);
    b.dispose();
    c.dispose();
    const after = gpu.memory();
    expect(after.inUse).toBe(before.inUse);
    expect(after.peak).toBeGreaterThanOrEqual(mid.inUse);
  });

  it('gives buffers the uniform usage only on a software adapter (the CPU matmul binds uniform windows)', async () => {
    const gpu = await testGpu();
    const t = gpu.tensor([16], 'f32');
    expect(gpu.softwareAdapter).toBe(isSoftwareAdapter(gpu.adapter));
    expect((t.buffer.usage & GPUBufferUsage.UNIFORM) !== 0).toBe(gpu.softwareAdapter);
    expect(t.buffer.usage & GPUBufferUsage.STORAGE).not.toBe(0);
    t.dispose();
  });

  it('keeps the cache under its limit by destroying the least recently released buffers', async () => {
    const gpu = await freshGpu({ cacheLimitBytes: 1.5 * 2 ** 20 });
    try {
      // Three size classes whose buffers do not all fit a 1.5 MiB cache; the newer two do.
      const [a, b, c] = [100_000, 150_000, 200_000].map((n) => gpu.tensor([n], 'f32'));
      const [bufA, bufC] = [a.buffer, c.buffer];
      for (const t of [a, b, c]) t.dispose();
      const m = gpu.memory();
      expect(m.cached).toBeLessThanOrEqual(1.5 * 2 ** 20);
      expect(m.evicted).toBe(1);
      // The newest release is still cached; the oldest was evicted, so its size gets a new buffer.
      const c2 = gpu.tensor([200_000], 'f32');
      expect(c2.buffer).toBe(bufC);
      const a2 = gpu.tensor([100_000], 'f32');
      expect(a2.buffer).not.toBe(bufA);
      expect(gpu.memory().created).toBe(m.created + 1);
      c2.dispose();
      a2.dispose();
    } finally {
      gpu.destroy();
    }
  });

  it('destroys an evicted buffer only after the work recorded on it is submitted', async () => {
    const gpu = await freshGpu({ cacheLimitBytes: 0 });
    try {
      const n = 50_000;
      const x = Float32Array.from({ length: n }, (_, i) => i % 97);
      const a = gpu.tensor([n], 'f32', x);
      await gpu.sync();
      const out = add(gpu, a, a);
      a.dispose(); // evicted at once (limit 0) while the recorded add still reads it
      expect(gpu.memory().evicted).toBe(1);
      expectClose(await out.read(), addRef(x, x), { atol: 0, rtol: 0 });
      out.dispose();
      // The budget's emptyCache submits recorded work before destroying.
      const b = gpu.tensor([n], 'f32', x);
      await gpu.sync();
      const out2 = add(gpu, b, b);
      b.dispose();
      gpu.allocator.emptyCache();
      expectClose(await out2.read(), addRef(x, x), { atol: 0, rtol: 0 });
      out2.dispose();
    } finally {
      gpu.destroy();
    }
  });

  it('keeps in-use plus cached bytes within the peak in-use bytes when given no limit', async () => {
    const gpu = await freshGpu();
    try {
      const big = gpu.tensor([20 << 20], 'f32'); // 80 MiB: the peak, above the 64 MiB floor
      big.dispose();
      expect(gpu.allocator.cacheLimit()).toBe(gpu.memory().peak);
      // A new 16 MiB buffer while 80 MiB are cached would make 96 MiB in all: the cached one goes.
      const held = gpu.tensor([4 << 20], 'f32');
      let m = gpu.memory();
      expect(m.evicted).toBe(1);
      expect(m.cached).toBe(0);
      expect(gpu.allocator.cacheLimit()).toBe(MIN_CACHE_LIMIT_BYTES);
      // Distinct 17-24 MiB classes released in turn stay within the peak as well.
      for (let i = 1; i < 8; i++) gpu.tensor([(4 << 20) + i * (1 << 18)], 'f32').dispose();
      held.dispose();
      m = gpu.memory();
      expect(m.inUse + m.cached).toBeLessThanOrEqual(m.peak);
      expect(m.cached).toBeGreaterThan(MIN_CACHE_LIMIT_BYTES / 2);
    } finally {
      gpu.destroy();
    }
  });

  it('serves a request from a cached buffer up to two size classes larger', async () => {
    const gpu = await freshGpu();
    try {
      const base = sizeClass(400_000);
      const next = [sizeClass(base + 1)];
      next.push(sizeClass(next[0] + 1));
      next.push(sizeClass(next[1] + 1));
      const two = gpu.tensor([next[1] / 4], 'f32');
      const twoBuffer = two.buffer;
      two.dispose();
      const t = gpu.tensor([400_000 / 4], 'f32');
      expect(t.buffer).toBe(twoBuffer);
      expect(t.byteLength).toBe(400_000);
      expect(gpu.memory().inUse).toBe(next[1]);
      t.dispose();
      // Three classes up is too much waste: a new buffer.
      gpu.allocator.emptyCache();
      const three = gpu.tensor([next[2] / 4], 'f32');
      const threeBuffer = three.buffer;
      three.dispose();
      const u = gpu.tensor([400_000 / 4], 'f32');
      expect(u.buffer).not.toBe(threeBuffer);
      u.dispose();
    } finally {
      gpu.destroy();
    }
  });

  it('refuses allocations over the budget with a typed error naming op and bytes', async () => {
    const gpu = await freshGpu({ budgetBytes: 1 << 20 });
    try {
      const ok = gpu.tensor([1000], 'f32');
      expect(() => gpu.tensor([1 << 20], 'f32', undefined, 'big-activation')).toThrowError(GpuOutOfMemoryError);
      try {
        gpu.tensor([1 << 20], 'f32', undefined, 'big-activation');
      } catch (e) {
        expect((e as Error).message).toMatch(/op=big-activation/);
        expect((e as Error).message).toMatch(/f32\[1048576\]/);
        expect((e as Error).message).toMatch(/bytes=4194304/);
      }
      ok.dispose();
    } finally {
      gpu.destroy();
    }
  });
});

describe('adapter facts', () => {
  it('classifies adapters and reads subgroup sizes once per device (path selection asks on every op)', async () => {
    const cpu = { vendor: 'mesa', architecture: '', device: '', description: 'llvmpipe (LLVM 15.0.6, 256 bits)' };
    const nvidia = { vendor: 'nvidia', architecture: 'hopper', device: '', description: 'NVIDIA H200' };
    expect([isSoftwareAdapter(cpu), isSoftwareAdapter(cpu), isSoftwareAdapter(nvidia), isSoftwareAdapter(undefined)]).toEqual([true, true, false, false]);
    let reads = 0;
    const device = {
      get adapterInfo() {
        reads++;
        return { subgroupMinSize: 8, subgroupMaxSize: 32 };
      },
    };
    expect(subgroupSizes(device)).toEqual({ min: 8, max: 32 });
    expect(subgroupSizes(device)).toEqual({ min: 8, max: 32 });
    expect(reads).toBe(1);
    expect(subgroupSizes({})).toEqual({ min: undefined, max: undefined });
    const gpu = await testGpu();
    const info = gpu.device.adapterInfo as GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number };
    expect(subgroupSizes(gpu.device)).toEqual({ min: info.subgroupMinSize, max: info.subgroupMaxSize });
  });
});

describe('Dawn flags', () => {
  it('joins toggle lists instead of letting a later one replace ours, and takes the last value of other keys', () => {
    expect(
      mergeDawnFlags(['enable-dawn-features=a,b', 'disable-dawn-features=x', 'backend=vulkan', 'enable-dawn-features=b,c', 'backend=d3d12']),
    ).toEqual(['enable-dawn-features=a,b,c', 'disable-dawn-features=x', 'backend=d3d12']);
    expect(() => mergeDawnFlags(['disable_robustness'])).toThrow(ShapeError);
  });

  it('keeps the unsafe APIs when more toggles are enabled (Dawn keeps only the last list of a key)', async () => {
    // On lavapipe, multi-draw-indirect is offered only with allow_unsafe_apis.
    const features = async (flags: string[]) => {
      const adapter = await create(flags).requestAdapter();
      return new Set(adapter!.features);
    };
    const unsafe = 'multi-draw-indirect';
    expect((await features([...DAWN_FLAGS])).has(unsafe)).toBe(true);
    expect((await features(mergeDawnFlags([...DAWN_FLAGS, 'enable-dawn-features=disable_robustness']))).has(unsafe)).toBe(true);
  });

  it('adds MLAGENT_DAWN_TOGGLES to the enabled toggles, and names a bad one before making a device', async () => {
    const saved = process.env.MLAGENT_DAWN_TOGGLES;
    try {
      process.env.MLAGENT_DAWN_TOGGLES = 'disable_robustness, disable_workgroup_init';
      const gpu = await Gpu.create();
      expect(gpu.adapter.dawnFlags).toContain('enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia,disable_robustness,disable_workgroup_init');
      const x = gpu.tensor([3], 'f32', [1, 2, 3]);
      expect(Array.from(await add(gpu, x, x).read())).toEqual([2, 4, 6]);
      gpu.destroy();
      process.env.MLAGENT_DAWN_TOGGLES = 'disable robustness';
      await expect(Gpu.create()).rejects.toThrow(/MLAGENT_DAWN_TOGGLES: "disable robustness" is not a Dawn toggle name/);
    } finally {
      if (saved === undefined) delete process.env.MLAGENT_DAWN_TOGGLES;
      else process.env.MLAGENT_DAWN_TOGGLES = saved;
    }
  });
});

describe('tensors', () => {
  it('write/read round trips for every dtype', async () => {
    const gpu = await testGpu();
    const rng = new Rng(1);
    const x = rng.randn(37);
    expectClose(await gpu.tensor([37], 'f32', x).read(), x, { atol: 0, rtol: 0 });
    const h = await gpu.tensor([37], 'f16', x).read();
    expectClose(h, x, { atol: 1e-3, rtol: 1e-3 });
    const ints = Int32Array.from({ length: 9 }, (_, i) => i * 7 - 20);
    expect(Array.from(await gpu.tensor([9], 'i32', ints).read())).toEqual(Array.from(ints));
  });

  it('rejects bad shapes, sizes and use after dispose', async () => {
    const gpu = await testGpu();
    expect(() => gpu.tensor([2, -1], 'f32')).toThrowError(ShapeError);
    const t = gpu.tensor([4], 'f32');
    expect(() => t.write([1, 2, 3])).toThrowError(/write of 3 values into 4 elements/);
    expect(() => t.reshape([3])).toThrowError(ShapeError);
    t.dispose();
    expect(() => t.write([1, 2, 3, 4])).toThrowError(/after dispose/);
  });

  it('scope() disposes intermediates and keeps what is returned', async () => {
    const gpu = await testGpu();
    const before = gpu.memory().inUse;
    let inner: Tensor | undefined;
    const kept = gpu.scope(() => {
      inner = gpu.tensor([64], 'f32');
      return { y: gpu.tensor([64], 'f32') };
    });
    expect(inner!.isDisposed).toBe(true);
    expect(kept.y.isDisposed).toBe(false);
    kept.y.dispose();
    expect(gpu.memory().inUse).toBe(before);
  });
});

describe('execution', () => {
  it('records many dispatches per submit and gets them right', async () => {
    const gpu = await freshGpu({ maxDispatchesPerSubmit: 7 });
    try {
      const rng = new Rng(2);
      const n = 1001;
      const a = rng.randn(n);
      const b = rng.randn(n);
      let acc = gpu.tensor([n], 'f32', a);
      const tb = gpu.tensor([n], 'f32', b);
      for (let i = 0; i < 20; i++) {
        const next = add(gpu, acc, tb);
        acc.dispose();
        acc = next;
      }
      const want = Float64Array.from(a, (v, i) => v + 20 * b[i]);
      expectClose(await acc.read(), want, { atol: 1e-4, rtol: 1e-5 });
      expect(gpu.pipelineCount).toBe(1);
    } finally {
      gpu.destroy();
    }
  });

  it('takes dispatches per submit from MLAGENT_DISPATCHES_PER_SUBMIT, and names a bad value before making a device', async () => {
    await expect(Gpu.create({ maxDispatchesPerSubmit: 0 })).rejects.toThrow(/maxDispatchesPerSubmit must be a positive integer, got 0/);
    await expect(Gpu.create({ timeoutMs: 1.5 })).rejects.toThrow(/timeoutMs must be a positive integer, got 1.5/);
    const saved = process.env.MLAGENT_DISPATCHES_PER_SUBMIT;
    try {
      process.env.MLAGENT_DISPATCHES_PER_SUBMIT = 'lots';
      await expect(Gpu.create()).rejects.toThrow(/MLAGENT_DISPATCHES_PER_SUBMIT must be a positive integer, got "lots"/);
      // 20 dispatches: 6 automatic submits at 3 a submit, none at the default 512 until the readback's.
      for (const [env, submits] of [['3', 6], [undefined, 0]] as const) {
        if (env === undefined) delete process.env.MLAGENT_DISPATCHES_PER_SUBMIT;
        else process.env.MLAGENT_DISPATCHES_PER_SUBMIT = env;
        const gpu = await Gpu.create();
        try {
          const queue = gpu.device.queue;
          const submit = queue.submit.bind(queue);
          let count = 0;
          queue.submit = (buffers) => {
            count++;
            submit(buffers);
          };
          const t = gpu.tensor([64], 'f32', new Float32Array(64).fill(1));
          let acc = add(gpu, t, t);
          for (let i = 0; i < 19; i++) {
            const next = add(gpu, acc, t);
            acc.dispose();
            acc = next;
          }
          expect(count, `submits before the readback, MLAGENT_DISPATCHES_PER_SUBMIT=${env}`).toBe(submits);
          expect((await acc.read())[0]).toBe(21);
        } finally {
          gpu.destroy();
        }
      }
    } finally {
      if (saved === undefined) delete process.env.MLAGENT_DISPATCHES_PER_SUBMIT;
      else process.env.MLAGENT_DISPATCHES_PER_SUBMIT = saved;
    }
  });

  it('reuses a bind group when a pipeline binds the same ranges again, and binds what the buffers hold now', async () => {
    const gpu = await freshGpu();
    try {
      const rng = new Rng(3);
      const [a, b, a2] = [rng.randn(64), rng.randn(64), rng.randn(64)];
      const ta = gpu.tensor([8, 8], 'f32', a);
      const tb = gpu.tensor([8, 8], 'f32', b);
      const out = gpu.tensor([8, 8], 'f32');
      add(gpu, ta, tb, out);
      await gpu.sync();
      const made = gpu.bindGroupStats.created;
      // The same ranges (and uniform-ring offset, the ring restarts every submit): reused, with the new contents.
      ta.write(a2);
      add(gpu, ta, tb, out);
      expectClose(await out.read(), Float64Array.from(a2, (v, i) => v + b[i]), { atol: 1e-6, rtol: 1e-6 });
      expect(gpu.bindGroupStats.created).toBe(made);
      expect(gpu.bindGroupStats.reused).toBeGreaterThan(0);
      // Other ranges of the same buffers are other bind groups: two row views into one output give their own rows.
      const half = gpu.tensor([4, 8], 'f32');
      add(gpu, ta.rows(0, 4), tb.rows(0, 4), half);
      expectClose(await half.read(), Float64Array.from(a2.slice(0, 32), (v, i) => v + b[i]), { atol: 1e-6, rtol: 1e-6 });
      add(gpu, ta.rows(4, 4), tb.rows(4, 4), half);
      expectClose(await half.read(), Float64Array.from(a2.slice(32), (v, i) => v + b[32 + i]), { atol: 1e-6, rtol: 1e-6 });
      expect(gpu.bindGroupStats.created).toBe(made + 2);
    } finally {
      gpu.destroy();
    }
  });

  it('windows tensors larger than one binding', async () => {
    // A 4 KiB binding cap forces the windowed path on a small tensor, and a real >128 MiB tensor checks it for real.
    const gpu = await freshGpu({ maxBindingBytes: 4096 });
    try {
      const rng = new Rng(3);
      const n = 5000;
      const a = rng.randn(n);
      const b = rng.randn(n);
      const y = add(gpu, gpu.tensor([n], 'f32', a), gpu.tensor([n], 'f32', b));
      expectClose(await y.read(), addRef(a, b), { atol: 1e-6, rtol: 1e-6 });
      expect(gpu.windows(n, 4).length).toBe(5);
    } finally {
      gpu.destroy();
    }
  });

  it('adds tensors over the device binding limit (>128 MiB on lavapipe)', async () => {
    const gpu = await testGpu();
    const n = Math.floor(gpu.maxBinding / 4) + 4099;
    const a = new Float32Array(n).map((_, i) => (i % 1000) * 0.5);
    const b = new Float32Array(n).map((_, i) => (i % 7) - 3);
    const ta = gpu.tensor([n], 'f32', a);
    const tb = gpu.tensor([n], 'f32', b);
    const y = add(gpu, ta, tb);
    const out = await y.read();
    for (const i of [0, 1, n >> 1, n - 4100, n - 1]) expect(out[i]).toBe(a[i] + b[i]);
    ta.dispose();
    tb.dispose();
    y.dispose();
  });

  it('turns a bad shader into a typed validation error naming the op', async () => {
    const gpu = await testGpu();
    await expect(
      gpu.checkPipeline('broken-kernel', () => '@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }'),
    ).rejects.toThrowError(GpuValidationError);
  });

  it('turns a bad binding into a typed error, not a wrong result', async () => {
    const gpu = await testGpu();
    const pipeline = firstElementPipeline(gpu, 'two-buffers', 'a[0]');
    const t = gpu.tensor([4], 'f32');
    gpu.dispatch({ op: 'missing-binding', shapes: 'f32[4]', pipeline, bindings: [t], workgroups: [1] });
    await expect(gpu.sync()).rejects.toThrowError(/op=missing-binding\(f32\[4\]\)/); // the batch's ops, named when the error is raised
    t.dispose();
  });

  it('refuses workgroup counts and bindings over the device limits', async () => {
    const gpu = await testGpu();
    const pipeline = gpu.pipeline('noop', () => '@compute @workgroup_size(1) fn main() {}');
    expect(() =>
      gpu.dispatch({ op: 'huge-grid', pipeline, bindings: [], workgroups: [gpu.maxWorkgroups + 1] }),
    ).toThrowError(GpuLimitError);
    expect(gpu.grid(gpu.maxWorkgroups * 3 + 1)[1]).toBe(4);
  });

  it('keeps nothing of a flush once its results are read: its dispatches can be collected', async () => {
    // Each wait used to race against a handler chained onto the device's lost promise, which never settles, so
    // every flush's commands (each dispatch's spec and bindings) stayed reachable for the life of the device.
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const gpu = await testGpu();
    const pipeline = firstElementPipeline(gpu, 'double-first', '2.0 * a[0]');
    const x = gpu.tensor([4], 'f32', [3, 0, 0, 0]);
    const y = gpu.tensor([4], 'f32');
    const dispatched = await (async () => {
      const spec = { op: 'double-first', pipeline, bindings: [x, y], workgroups: [1] as const };
      gpu.dispatch(spec);
      expect((await y.read())[0]).toBe(6);
      return new WeakRef(spec);
    })();
    for (let i = 0; i < 3; i++) {
      const z = add(gpu, x, x);
      await z.read();
      z.dispose();
    }
    await new Promise((r) => setTimeout(r, 0)); // a WeakRef's target lives at least until the job that made it ends
    gc();
    expect(dispatched.deref()).toBeUndefined();
    x.dispose();
    y.dispose();
  });

  it('reports device loss as a typed error on the next op', async () => {
    const gpu = await freshGpu();
    const t = gpu.tensor([4], 'f32', [1, 2, 3, 4]);
    gpu.device.destroy();
    await new Promise((r) => setTimeout(r, 50));
    await expect(t.read()).rejects.toThrowError(/device lost/i);
    expect(() => gpu.tensor([4], 'f32')).toThrowError(/device lost/i);
  });

  it('reuses the staging buffers of small reads, each read getting its own data, concurrent ones included', async () => {
    const gpu = await freshGpu();
    const rng = new Rng(11);
    const before = { ...gpu.readbackStats };
    for (let round = 0; round < 4; round++) {
      const data = [0, 1].map(() => Float32Array.from({ length: 300 }, () => rng.normal()));
      const ts = data.map((d) => gpu.tensor([300], 'f32', d));
      // Two at once: they need two buffers of the same size; an offset read takes a third size.
      const [a, b, part] = await Promise.all([ts[0].read(), ts[1].read(), ts[1].rows(7, 5).read()]);
      expect(a).toEqual(data[0]);
      expect(b).toEqual(data[1]);
      expect(part).toEqual(data[1].subarray(7, 12));
      for (const t of ts) t.dispose();
    }
    // 1200 bytes and 20 bytes round up to their size classes, 1280 and 256: three buffers made in the first round,
    // reused after.
    expect(gpu.readbackStats.created - before.created).toBe(3);
    expect(gpu.readbackStats.reused - before.reused).toBe(9);
    gpu.destroy();
  });

  it('rejects a read in progress with a typed error when the device is lost', async () => {
    const gpu = await freshGpu();
    const a = gpu.tensor([1 << 18], 'f32', new Float32Array(1 << 18).fill(1));
    let x = a;
    for (let j = 0; j < 20; j++) x = add(gpu, x, a);
    const read = x.read();
    setTimeout(() => gpu.device.destroy(), 1);
    await expect(read).rejects.toThrowError(GpuDeviceLostError);
  });

  it('profiles dispatches with GPU timestamps', async () => {
    const gpu = await testGpu();
    if (!gpu.features.timestampQuery) return expect(gpu.variants.timestamps).toBe(false);
    gpu.profiling = true;
    const a = gpu.tensor([1 << 16], 'f32');
    add(gpu, a, a).dispose();
    add(gpu, a, a).dispose();
    const timings = await gpu.takeTimings();
    gpu.profiling = false;
    expect(timings.map((t) => t.op)).toEqual(['add', 'add']);
    for (const t of timings) expect(t.ms).toBeGreaterThan(0);
    a.dispose();
  });

  it('profiles copies and clears in order with the dispatches, so a timed op misses none of its work', async () => {
    const gpu = await testGpu();
    if (!gpu.features.timestampQuery) return;
    const a = gpu.tensor([1 << 20], 'f32', new Float32Array(1 << 20).fill(2));
    const b = gpu.tensor([1 << 20], 'f32');
    gpu.profiling = true;
    gpu.clear(b);
    gpu.copyTensor(a, b);
    const c = add(gpu, a, b);
    const timings = await gpu.takeTimings();
    gpu.profiling = false;
    expect(timings.map((t) => t.op)).toEqual(['clear', 'copy', 'add']);
    for (const t of timings) expect(t.ms).toBeGreaterThanOrEqual(0);
    // A 4 MB copy takes time; the stamps around it are not both before it.
    expect(timings[1].ms).toBeGreaterThan(0);
    expect((await c.read())[12345]).toBe(4);
    [a, b, c].forEach((t) => t.dispose());
  });

  it('params pack u32/i32/f32 in order and pad to 16 bytes', () => {
    const b = new Params().u32(3).i32(-1).f32(0.5).bytes();
    expect(b.byteLength).toBe(16);
    const v = new DataView(b.buffer);
    expect([v.getUint32(0, true), v.getInt32(4, true), v.getFloat32(8, true)]).toEqual([3, -1, 0.5]);
  });
});

afterAll(async () => {
  const gpu: Gpu = await testGpu();
  await gpu.sync();
});
