// Applying a task idea's exact find/replace edits to a script's text.

/** An improvement idea as tasks ship it in ideas.json: a description and exact edits of train.py. */
export interface IdeaEdits {
  idea: string;
  edits: readonly { find: string; replace: string }[];
}

export type EditResult = { ok: true; text: string } | { ok: false; error: string };

function count(text: string, part: string): number {
  let n = 0;
  for (let i = text.indexOf(part); i >= 0; i = text.indexOf(part, i + 1)) n++;
  return n;
}

/** Applies an idea's edits in order; each `find` must occur exactly once in the text at that point. */
export function applyIdea(text: string, idea: IdeaEdits): EditResult {
  let out = text;
  for (const [i, e] of idea.edits.entries()) {
    if (e.find === '') return { ok: false, error: `edit ${i + 1} of "${idea.idea}" has an empty find` };
    const n = count(out, e.find);
    if (n !== 1)
      return {
        ok: false,
        error: `edit ${i + 1} of "${idea.idea}": its find text occurs ${n} times in the script (it must occur once)`,
      };
    const at = out.indexOf(e.find);
    out = out.slice(0, at) + e.replace + out.slice(at + e.find.length);
  }
  return { ok: true, text: out };
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
