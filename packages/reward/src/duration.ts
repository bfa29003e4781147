/**
 * Duration-aware weighting (arXiv 2509.01684): in a batch, fast actions are over-represented because they finish
 * first, so each sample's loss is weighted by its execution time relative to the batch mean. Samples without a
 * duration (no execution) count as the mean. Weights average to 1 over the batch.
 */
export function durationWeights(durationsSec: ReadonlyArray<number | undefined>): number[] {
  const known = durationsSec.filter((d): d is number => typeof d === 'number' && Number.isFinite(d) && d >= 0);
  if (known.length === 0) return durationsSec.map(() => 1);
  const mean = known.reduce((s, d) => s + d, 0) / known.length;
  if (mean <= 0) return durationsSec.map(() => 1);
  const raw = durationsSec.map((d) => (typeof d === 'number' && Number.isFinite(d) && d >= 0 ? d / mean : 1));
  const norm = raw.reduce((s, w) => s + w, 0) / raw.length;
  return raw.map((w) => w / norm);
}
