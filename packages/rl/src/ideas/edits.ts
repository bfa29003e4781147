// Applying a task idea's exact find/replace edits (the env's applyIdea) as a result instead of an exception.
import { applyIdea as applyTaskIdea, type TaskIdea } from '@mlagent/env';

/** An improvement idea as tasks ship it in ideas.json: a description and exact edits of train.py. */
export type IdeaEdits = TaskIdea;

export type EditResult = { ok: true; text: string } | { ok: false; error: string };

/** Applies an idea's edits in order; each `find` must occur exactly once in the text at that point. */
export function applyIdea(text: string, idea: IdeaEdits): EditResult {
  try {
    return { ok: true, text: applyTaskIdea(text, idea) };
  } catch (e) {
    return { ok: false, error: (e as Error).message };
  }
}

/** Applies several ideas in order; fails on the first that does not apply to the text the earlier ones left. */
export function applyIdeas(text: string, ideas: readonly IdeaEdits[]): EditResult {
  let out = text;
  for (const idea of ideas) {
    const r = applyIdea(out, idea);
    if (!r.ok) return r;
    out = r.text;
  }
  return { ok: true, text: out };
}
