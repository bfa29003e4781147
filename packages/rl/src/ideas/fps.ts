// Farthest-point sampling: a greedy, deterministic way to pick k points that are spread out.
import { SeededRng } from '@mlagent/core-kernels';

export interface FarthestPointOptions {
  /** Picks the first point at random from this seed (default 0). */
  seed?: number;
}

/**
 * Returns the indices of k points chosen by farthest-point sampling: the first at random (seeded), then each
 * next one the point whose distance to its nearest already-chosen point is largest (ties: the lowest index).
 * Deterministic for a given seed. Returns all indices (in pick order) when k >= the number of points.
 */
export function farthestPointSampling<T>(
  points: readonly T[],
  k: number,
  distance: (a: T, b: T) => number,
  options: FarthestPointOptions = {},
): number[] {
  if (!Number.isInteger(k) || k < 0) throw new RangeError(`farthestPointSampling: k must be a non-negative integer, got ${k}`);
  const seed = options.seed ?? 0;
  // SeededRng keeps seed >>> 0, so NaN ran as seed 0, 1.5 as 1 and −1 as 4294967295: a bad seed silently gave
  // another run's picks instead of an error.
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new RangeError(`farthestPointSampling: seed must be an integer in [0, 2^32), got ${seed}`);
  const n = points.length;
  if (k === 0 || n === 0) return [];
  const rng = new SeededRng(seed);
  // A NaN distance never compares larger, so a broken metric used to yield index order rather than an error.
  const measure = (a: T, b: T): number => {
    const d = distance(a, b);
    if (typeof d !== 'number' || Number.isNaN(d) || d < 0) throw new RangeError(`farthestPointSampling: distance must return a number >= 0, got ${String(d)}`);
    return d;
  };
  const first = Math.min(n - 1, Math.floor(rng.uniform() * n));
  const chosen = [first];
  const taken = new Uint8Array(n);
  taken[first] = 1;
  // nearest[i]: distance from point i to its nearest chosen point.
  const nearest = new Float64Array(n);
  for (let i = 0; i < n; i++) nearest[i] = measure(points[i], points[first]);
  while (chosen.length < Math.min(k, n)) {
    let best = -1;
    for (let i = 0; i < n; i++) if (!taken[i] && (best < 0 || nearest[i] > nearest[best])) best = i;
    chosen.push(best);
    taken[best] = 1;
    for (let i = 0; i < n; i++) {
      if (taken[i]) continue;
      const d = measure(points[i], points[best]);
      if (d < nearest[i]) nearest[i] = d;
    }
  }
  return chosen;
}
