import { describe, expect, it } from 'vitest';
import { applyIdea, applyIdeas } from '../src/ideas/edits.js';
import { generateCandidates } from '../src/ideas/candidates.js';
import { diverseIdeas, selectDiverse } from '../src/ideas/diverse.js';
import { farthestPointSampling } from '../src/ideas/fps.js';
import { cosineDistance, cosineSimilarity, terms, tfidf } from '../src/ideas/tfidf.js';

const euclid = (a: number[], b: number[]) => Math.hypot(a[0] - b[0], a[1] - b[1]);

const IDEAS = [
  { idea: 'Replace the linear model with gradient boosting', edits: [{ find: 'model = Linear()', replace: 'model = GBM()' }] },
  { idea: 'Standardise the numeric features', edits: [{ find: 'x = load()', replace: 'x = scale(load())' }] },
  { idea: 'Use a random forest with 500 trees', edits: [{ find: 'model = Linear()', replace: 'model = RF(500)' }] },
  { idea: 'Log-transform the skewed target', edits: [{ find: 'y = target()', replace: 'y = log1p(target())' }] },
  { idea: 'Add polynomial interaction features', edits: [{ find: 'x = load()', replace: 'x = poly(load())' }] },
];
const BASELINE = 'x = load()\ny = target()\nmodel = Linear()\nfit(model, x, y)\n';

describe('farthest-point sampling', () => {
  it('picks one point from each of four far-apart clusters before any second point of a cluster', () => {
    const centres = [[0, 0], [100, 0], [0, 100], [100, 100]];
    const points: number[][] = [];
    for (const [cx, cy] of centres) for (let j = 0; j < 5; j++) points.push([cx + j * 0.1, cy - j * 0.1]);
    for (const seed of [0, 1, 2, 3, 42]) {
      const picked = farthestPointSampling(points, 4, euclid, { seed });
      expect(new Set(picked.map((i) => Math.floor(i / 5))).size).toBe(4);
    }
  });

  it('picks the extreme points of a line first after the seed point, and is deterministic per seed', () => {
    const points = Array.from({ length: 11 }, (_, i) => [i, 0]);
    const a = farthestPointSampling(points, 3, euclid, { seed: 7 });
    expect(farthestPointSampling(points, 3, euclid, { seed: 7 })).toEqual(a);
    // Whatever the first point, the next is the farther end and the third the other end or the middle gap.
    const first = a[0];
    expect(a[1]).toBe(first <= 5 ? 10 : 0);
    expect(new Set(a).size).toBe(3);
  });

  it('returns every index once when k exceeds the points, and rejects a bad k', () => {
    const pts = [[0, 0], [1, 1], [2, 2]];
    expect(farthestPointSampling(pts, 10, euclid).sort()).toEqual([0, 1, 2]);
    expect(farthestPointSampling(pts, 0, euclid)).toEqual([]);
    expect(() => farthestPointSampling(pts, -1, euclid)).toThrow(/k must be a non-negative integer/);
  });
});

describe('TF-IDF', () => {
  it('builds uni- and bigrams without stop words', () => {
    expect(terms('Use the Gradient Boosting model')).toEqual([
      'use', 'gradient', 'boosting', 'model', 'use gradient', 'gradient boosting', 'boosting model',
    ]);
  });

  it('gives unit vectors, identical texts distance 0, disjoint texts distance 1, shared terms in between', () => {
    const { vectors } = tfidf(['gradient boosting trees', 'gradient boosting trees', 'dropout layers', 'gradient descent']);
    expect(cosineSimilarity(vectors[0], vectors[0])).toBeCloseTo(1, 12);
    expect(cosineDistance(vectors[0], vectors[1])).toBeCloseTo(0, 12);
    expect(cosineDistance(vectors[0], vectors[2])).toBe(1);
    const d = cosineDistance(vectors[0], vectors[3]);
    expect(d).toBeGreaterThan(0);
    expect(d).toBeLessThan(1);
  });
});

describe('idea edits and candidates', () => {
  it('applies find/replace edits and reports a find that does not occur once', () => {
    expect(applyIdea(BASELINE, IDEAS[0])).toEqual({ ok: true, text: BASELINE.replace('Linear()', 'GBM()') });
    const r = applyIdeas(BASELINE, [IDEAS[0], IDEAS[2]]); // both rewrite the model line
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error).toMatch(/random forest.*occurs 0 times/);
  });

  it('generates at least 100 candidates of 1-3 composable ideas, each with a text', () => {
    const c = generateCandidates(IDEAS, { baseline: BASELINE });
    expect(c.length).toBeGreaterThanOrEqual(100);
    expect(new Set(c.map((x) => x.text)).size).toBe(c.length);
    for (const x of c) {
      expect(x.ideas.length).toBeGreaterThanOrEqual(1);
      expect(x.ideas.length).toBeLessThanOrEqual(3);
      expect(applyIdeas(BASELINE, x.ideas.map((i) => IDEAS[i])).ok).toBe(true);
      for (const i of x.ideas) expect(x.text.toLowerCase()).toContain(IDEAS[i].idea.toLowerCase().slice(1, 20));
    }
    // Ideas 0 and 2 (and 1 and 4) edit the same line: never in one plan.
    expect(c.some((x) => x.ideas.includes(0) && x.ideas.includes(2))).toBe(false);
    expect(() => generateCandidates([])).toThrow(/no ideas/);
  });

  it('keeps K distinct, diverse candidates, reproducibly for a seed', () => {
    const { candidates, selected } = diverseIdeas(IDEAS, 10, { baseline: BASELINE, seed: 3 });
    expect(selected).toHaveLength(10);
    expect(new Set(selected.map((s) => s.id)).size).toBe(10);
    expect(diverseIdeas(IDEAS, 10, { baseline: BASELINE, seed: 3 }).selected).toEqual(selected);
    // The selection covers every idea, which a random pick of 10 out of >100 often would not.
    expect(new Set(selected.flatMap((s) => s.ideas)).size).toBe(IDEAS.length);
    // And its mean pairwise distance beats the first 10 candidates'.
    const { vectors } = tfidf(candidates.map((c) => c.text));
    const meanDist = (ids: string[]) => {
      const v = ids.map((id) => vectors[candidates.findIndex((c) => c.id === id)]);
      let s = 0;
      let n = 0;
      for (let i = 0; i < v.length; i++) for (let j = i + 1; j < v.length; j++, n++) s += cosineDistance(v[i], v[j]);
      return s / n;
    };
    expect(meanDist(selected.map((s) => s.id))).toBeGreaterThan(meanDist(candidates.slice(0, 10).map((c) => c.id)));
    expect(selectDiverse(candidates, 500)).toHaveLength(candidates.length);
  });
});
