// Candidate improvement plans for a task: ordered combinations of 1-3 of its ideas, each phrased as a text.
import { SeededRng } from '@mlagent/core-kernels';
import { applyIdeas, type IdeaEdits } from './edits.js';

/** One candidate plan: which ideas (indices into the task's ideas), in which order, and its description. */
export interface IdeaCandidate {
  id: string;
  ideas: number[];
  text: string;
}

export interface CandidateOptions {
  /** Largest number of ideas combined in one plan (default 3). */
  maxIdeas?: number;
  /** Generate at least this many candidates when the ideas allow it, by adding phrasings (default 100). */
  minCandidates?: number;
  /** Keep at most this many (a seeded random subset) when the combinations are more (default 2000). */
  maxCandidates?: number;
  /** The baseline script: when given, combinations whose edits do not compose on it are left out. */
  baseline?: string;
  seed?: number;
}

const uncap = (s: string): string => s.charAt(0).toLowerCase() + s.slice(1).replace(/[.\s]+$/, '');

// Ways to phrase a plan of one, two and three ideas. Variety in the wording is what lets TF-IDF tell two
// phrasings of the same plan apart a little, while the idea terms dominate the distance.
const PHRASINGS: ((d: string[]) => string)[][] = [
  [
    (d) => `${d[0]}.`,
    (d) => `Try one change: ${uncap(d[0])}.`,
    (d) => `Improve the baseline by this: ${uncap(d[0])}.`,
    (d) => `Measure the baseline first, then ${uncap(d[0])} and compare the score.`,
    (d) => `Hypothesis: the score improves if we ${uncap(d[0])}.`,
    (d) => `A single focused experiment: ${uncap(d[0])}; keep it only if the validation score improves.`,
  ],
  [
    (d) => `First ${uncap(d[0])}, then ${uncap(d[1])}.`,
    (d) => `Combine two changes: ${uncap(d[0])}; and ${uncap(d[1])}.`,
    (d) => `Start with this: ${uncap(d[0])}. If it helps, also ${uncap(d[1])}.`,
    (d) => `Two experiments in order: (1) ${uncap(d[0])}; (2) ${uncap(d[1])}.`,
  ],
  [
    (d) => `First ${uncap(d[0])}, then ${uncap(d[1])}, and finally ${uncap(d[2])}.`,
    (d) => `Three steps: ${uncap(d[0])}; ${uncap(d[1])}; ${uncap(d[2])}.`,
    (d) => `Stack three improvements, checking the score after each: ${uncap(d[0])}, ${uncap(d[1])}, ${uncap(d[2])}.`,
  ],
];

function orderedCombinations(n: number, size: number): number[][] {
  const out: number[][] = [];
  const walk = (prefix: number[]) => {
    if (prefix.length === size) {
      out.push(prefix);
      return;
    }
    for (let i = 0; i < n; i++) if (!prefix.includes(i)) walk([...prefix, i]);
  };
  walk([]);
  return out;
}

/**
 * Generates candidate plans from a task's ideas: every ordered combination of 1..maxIdeas distinct ideas whose
 * edits compose (when `baseline` is given), each in one or more phrasings so that there are at least
 * `minCandidates` when the combinations times the phrasings allow it. Deterministic for a given seed.
 */
export function generateCandidates(ideas: readonly IdeaEdits[], options: CandidateOptions = {}): IdeaCandidate[] {
  const maxIdeas = options.maxIdeas ?? 3;
  const minCandidates = options.minCandidates ?? 100;
  const maxCandidates = options.maxCandidates ?? 2000;
  if (!Number.isInteger(maxIdeas) || maxIdeas < 1 || maxIdeas > PHRASINGS.length)
    throw new RangeError(`generateCandidates: maxIdeas must be 1..${PHRASINGS.length}, got ${maxIdeas}`);
  if (ideas.length === 0) throw new Error('generateCandidates: the task has no ideas (its ideas.json is empty)');
  const combos: number[][] = [];
  for (let size = 1; size <= Math.min(maxIdeas, ideas.length); size++) {
    for (const c of orderedCombinations(ideas.length, size)) {
      if (options.baseline !== undefined && !applyIdeas(options.baseline, c.map((i) => ideas[i])).ok) continue;
      combos.push(c);
    }
  }
  const variants = Math.max(1, Math.ceil(minCandidates / combos.length));
  const out: IdeaCandidate[] = [];
  combos.forEach((c, ci) => {
    const forms = PHRASINGS[c.length - 1];
    const descriptions = c.map((i) => ideas[i].idea.trim());
    for (let v = 0; v < Math.min(variants, forms.length); v++) {
      const text = forms[(ci + v) % forms.length](descriptions);
      out.push({ id: `c${out.length}`, ideas: c, text });
    }
  });
  if (out.length <= maxCandidates) return out;
  // Too many: a seeded subset, kept in generation order.
  const rng = new SeededRng(options.seed ?? 0);
  const idx = out.map((_, i) => i);
  for (let i = idx.length - 1; i > 0; i--) {
    const j = Math.floor(rng.uniform() * (i + 1));
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  return idx
    .slice(0, maxCandidates)
    .sort((a, b) => a - b)
    .map((i, k) => ({ ...out[i], id: `c${k}` }));
}
