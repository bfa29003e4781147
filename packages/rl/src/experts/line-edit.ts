// Turning "old text -> new text" into one 'Edit Script Lines' call (1-based, inclusive line range).

export interface LineEdit {
  start_line_number: number;
  end_line_number: number;
  new_content: string;
}

function lines(text: string): string[] {
  const l = text.split('\n');
  if (text.endsWith('\n')) l.pop();
  return l;
}

/**
 * The smallest single line-range replacement that turns `before` into `after`: common leading and trailing
 * lines are kept, the differing middle is replaced. A pure insertion uses end = start - 1 (the action's
 * convention). Returns undefined when no such edit exists (the texts differ only in their final newline) or
 * the texts are equal.
 */
export function lineEditBetween(before: string, after: string): LineEdit | undefined {
  if (before === after || before.endsWith('\n') !== after.endsWith('\n')) return undefined;
  const a = lines(before);
  const b = lines(after);
  let p = 0;
  while (p < a.length && p < b.length && a[p] === b[p]) p++;
  let s = 0;
  while (s < a.length - p && s < b.length - p && a[a.length - 1 - s] === b[b.length - 1 - s]) s++;
  let oldMid: [number, number] = [p, a.length - s]; // [from, to) of a
  let newMid = b.slice(p, b.length - s);
  // new_content "" means "delete the lines", so a replacement by one blank line must include a neighbour.
  if (newMid.length === 1 && newMid[0] === '') {
    if (p > 0) {
      oldMid = [p - 1, oldMid[1]];
      newMid = [b[p - 1], ...newMid];
    } else {
      oldMid = [oldMid[0], oldMid[1] + 1];
      newMid = [...newMid, b[b.length - s]];
    }
  }
  return { start_line_number: oldMid[0] + 1, end_line_number: oldMid[1], new_content: newMid.join('\n') };
}

/** Applies a LineEdit as the env's 'Edit Script Lines' documents it (for checking edits in tests and logs). */
export function applyLineEdit(text: string, e: LineEdit): string {
  const l = lines(text);
  const replacement = e.new_content === '' ? [] : e.new_content.split('\n');
  l.splice(e.start_line_number - 1, e.end_line_number - e.start_line_number + 1, ...replacement);
  return l.join('\n') + (text.endsWith('\n') ? '\n' : '');
}
