// The K most diverse candidate plans of a task: TF-IDF embeddings + farthest-point sampling (cosine distance).
import { generateCandidates, type CandidateOptions, type IdeaCandidate } from './candidates.js';
import type { IdeaEdits } from './edits.js';
import { farthestPointSampling } from './fps.js';
import { cosineDistance, tfidf } from './tfidf.js';

/** Picks the k most spread-out candidates (by the cosine distance of their TF-IDF vectors), deterministically. */
export function selectDiverse(candidates: readonly IdeaCandidate[], k: number, seed = 0): IdeaCandidate[] {
  const { vectors } = tfidf(candidates.map((c) => c.text));
  return farthestPointSampling(vectors, k, cosineDistance, { seed }).map((i) => candidates[i]);
}

/** Generates a task's candidate plans (see generateCandidates) and keeps the k most diverse. */
export function diverseIdeas(
  ideas: readonly IdeaEdits[],
  k: number,
  options: CandidateOptions = {},
): { candidates: IdeaCandidate[]; selected: IdeaCandidate[] } {
  const candidates = generateCandidates(ideas, options);
  return { candidates, selected: selectDiverse(candidates, k, options.seed ?? 0) };
}
