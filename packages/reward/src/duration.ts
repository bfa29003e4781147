/**
 * Duration-aware weighting (arXiv 2509.01684): in a batch, fast actions are over-represented because they finish
 * first, so each sample's loss is weighted by its execution time relative to the batch mean. Samples without a
 * duration (no execution) count as the mean. Weights average to 1 over the batch.
 */
export function durationWeights(durationsSec: ReadonlyArray<number | undefined>): number[] {
  if (!Array.isArray(durationsSec)) throw new TypeError(`durationWeights: expected a list of durations, got ${String(durationsSec)}`);
  durationsSec.forEach((d, i) => {
    if (d !== undefined && d !== null && typeof d !== 'number') throw new TypeError(`durationWeights: duration ${i} must be a number or absent, got ${typeof d}`);
    // A negative time is a clock or bookkeeping bug upstream; weighting it as the mean would hide it.
    if (typeof d === 'number' && d < 0) throw new RangeError(`durationWeights: duration ${i} is negative (${d} s)`);
  });
  const known = durationsSec.filter((d): d is number => typeof d === 'number' && Number.isFinite(d));
  // Scaled by the largest first, so the sum of durations near Number.MAX_VALUE does not overflow to Infinity.
  const largest = known.reduce((m, d) => Math.max(m, d), 0);
  if (largest === 0) return durationsSec.map(() => 1);
  const mean = known.reduce((s, d) => s + d / largest, 0) / known.length;
  const raw = durationsSec.map((d) => (typeof d === 'number' && Number.isFinite(d) ? d / largest / mean : 1));
  const norm = raw.reduce((s, w) => s + w, 0) / raw.length;
  return raw.map((w) => w / norm);
}
