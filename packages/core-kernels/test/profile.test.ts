import { describe, expect, it } from 'vitest';
import { add, formatProfile, matmul, profileByOp } from '../src/index.js';
import { PROFILE_SHAPES } from '../src/runtime/profile.js';
import { testGpu } from './helpers.js';

describe('profileByOp', () => {
  it('sums GPU time by op, largest first, with shares and the shapes that took longest', () => {
    const rows = profileByOp([
      { op: 'matmul-tiled', shapes: 'A', ms: 1 },
      { op: 'add', shapes: 'x', ms: 0.5 },
      { op: 'matmul-tiled', shapes: 'B', ms: 3 },
      { op: 'matmul-tiled', shapes: 'A', ms: 1.5 },
      { op: 'rmsnorm', shapes: 'y', ms: 0 },
    ]);
    expect(rows.map((r) => r.op)).toEqual(['matmul-tiled', 'add', 'rmsnorm']);
    expect(rows[0]).toMatchObject({ calls: 3, ms: 5.5, topShapes: 'B', topShapesMs: 3 });
    expect(rows[0].byShapes).toEqual([{ shapes: 'B', calls: 1, ms: 3 }, { shapes: 'A', calls: 2, ms: 2.5 }]);
    expect(rows[0].share).toBeCloseTo(5.5 / 6, 12);
    expect(rows.reduce((s, r) => s + r.share, 0)).toBeCloseTo(1, 12);
    expect(profileByOp([])).toEqual([]);
    expect(() => profileByOp([{ op: 'x', shapes: '', ms: Number.NaN }])).toThrow(/x has a GPU time of NaN/);
  });

  it('keeps at most PROFILE_SHAPES shapes per op, the largest', () => {
    const rows = profileByOp(Array.from({ length: PROFILE_SHAPES + 3 }, (_, i) => ({ op: 'x', shapes: `s${i}`, ms: i })));
    expect(rows[0].byShapes.map((b) => b.shapes)).toEqual(Array.from({ length: PROFILE_SHAPES }, (_, i) => `s${PROFILE_SHAPES + 2 - i}`));
    expect(rows[0].calls).toBe(PROFILE_SHAPES + 3);
  });

  it('prints the largest ops and folds the rest into one line', () => {
    const rows = profileByOp(['a', 'b', 'c', 'd'].map((op, i) => ({ op, shapes: `s|${op}`, ms: 4 - i })));
    const text = formatProfile(rows, 2);
    expect(text).toMatch(/^GPU time 10\.0 ms in 4 commands/);
    expect(text).toContain('| a | 1 | 4.00 | 40.0% | s/a (4.00) |');
    expect(text).toContain('| 2 other ops | 2 | 3.00 | 30.0% | |');
    expect(text).not.toContain('| c |');
  });

  it('profiles real GPU work recorded with profiling on', async () => {
    const gpu = await testGpu();
    // lavapipe and the GPUs we run on all have timestamp queries.
    expect(gpu.features.timestampQuery).toBe(true);
    const a = gpu.tensor([64, 96], 'f32', new Float32Array(64 * 96).fill(1));
    const b = gpu.tensor([96, 80], 'f32', new Float32Array(96 * 80).fill(1));
    gpu.profiling = true;
    try {
      const c = matmul(gpu, a, b);
      const d = add(gpu, c, c);
      await d.read();
      const rows = profileByOp(await gpu.takeTimings());
      expect(rows.some((r) => r.op.startsWith('matmul'))).toBe(true);
      expect(rows.some((r) => r.op === 'add')).toBe(true);
      expect(rows.every((r) => r.ms >= 0 && r.calls >= 1)).toBe(true);
      [c, d].forEach((t) => t.dispose());
    } finally {
      gpu.profiling = false;
      [a, b].forEach((t) => t.dispose());
    }
  });
});
