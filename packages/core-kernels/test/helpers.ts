import { Gpu, type GpuOptions, type SeededRng } from '../src/index.js';

let shared: Promise<Gpu> | undefined;

/** One device per test process (vitest runs files in one fork). */
export function testGpu(): Promise<Gpu> {
  shared ??= Gpu.create();
  return shared;
}

/**
 * Mesa's GALLIVM_PERF=nopt for this test process: lavapipe compiles shaders without LLVM's optimization passes.
 * Only for files of test-only kernels (the emulated matrix operations), whose cold compiles take most of their
 * time; what users run on lavapipe is tested as compiled for them. Runs before the file's first device.
 */
export function skipShaderOptimization(): void {
  if (shared) throw new Error('skipShaderOptimization() must run before the first testGpu()');
  process.env.GALLIVM_PERF = [process.env.GALLIVM_PERF, 'nopt'].filter(Boolean).join(',');
}

/** A separate device, for tests that change options or break the device on purpose. */
export function freshGpu(options: GpuOptions = {}): Promise<Gpu> {
  return Gpu.create(options);
}

/** The runtime's seeded PRNG: failures reproduce. */
export { SeededRng as Rng } from '../src/index.js';

export interface Tolerance {
  atol: number;
  rtol: number;
}

/** Fails with the worst element, its index and both values, not just "not close". */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: Tolerance, what = 'values'): void {
  if (actual.length !== expected.length) throw new Error(`${what}: length ${actual.length} != ${expected.length}`);
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i];
    const e = expected[i];
    const excess = Math.abs(a - e) - (tol.atol + tol.rtol * Math.abs(e));
    if (Number.isNaN(a) !== Number.isNaN(e) || excess > worstExcess) {
      worst = i;
      worstExcess = Number.isNaN(a) || Number.isNaN(e) ? Infinity : excess;
    }
  }
  if (worst >= 0) {
    throw new Error(
      `${what}: element ${worst} is ${actual[worst]}, expected ${expected[worst]} ` +
        `(atol ${tol.atol}, rtol ${tol.rtol}, ${actual.length} elements)`,
    );
  }
}

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/**
 * Directional finite-difference check: for loss L(x) and its claimed gradient g, compares
 * (L(x + eps v) - L(x - eps v)) / 2 eps with <g, v> for a random direction v.
 */
export async function checkDirectional(
  loss: (x: Float32Array) => Promise<number> | number,
  x: Float32Array,
  grad: ArrayLike<number>,
  rng: SeededRng,
  { eps = 1e-2, rtol = 2e-2, what = 'gradient' }: { eps?: number; rtol?: number; what?: string } = {},
): Promise<void> {
  const v = rng.randn(x.length);
  const plus = x.map((xi, i) => xi + eps * v[i]);
  const minus = x.map((xi, i) => xi - eps * v[i]);
  const fd = ((await loss(plus)) - (await loss(minus))) / (2 * eps);
  const an = dot(grad, v);
  const scale = Math.max(Math.abs(fd), Math.abs(an), 1e-3);
  if (Math.abs(fd - an) / scale > rtol) {
    throw new Error(`${what}: finite difference ${fd} vs analytic ${an} (rel err ${Math.abs(fd - an) / scale})`);
  }
}

/** Random shapes that hit tile edges: a mix of tiny, odd and multiple-of-tile sizes. */
export function awkwardSizes(rng: SeededRng, count: number, max: number): number[] {
  const base = [1, 3, 7, 16, 17, 31, 33, 64, 65, 127];
  const out: number[] = [];
  for (let i = 0; i < count; i++) out.push(i < base.length && base[i] <= max ? base[i] : rng.int(1, max));
  return out;
}
