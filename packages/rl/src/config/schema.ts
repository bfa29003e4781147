/**
 * A small declarative schema for training configs: each field has a kind, a default, bounds and a one-line doc.
 * Validation collects every problem (each naming its field path) before throwing, rejects unknown keys, and the
 * same declarations render the reference table in the README.
 */

export type Field =
  | { kind: 'number'; default: number | null; nullable?: boolean; int?: boolean; min?: number; max?: number; gt?: number; lt?: number; doc: string }
  | { kind: 'boolean'; default: boolean; doc: string }
  | { kind: 'string'; default: string | null; nullable?: boolean; doc: string }
  | { kind: 'enum'; values: readonly string[]; default: string; doc: string }
  /** A list of strings; a single string is accepted as a one-element list unless it names a group (see `groups`). */
  | { kind: 'strings'; default: string | string[]; groups?: readonly string[]; doc: string };

export type Section = Record<string, Field>;

export class TrainConfigError extends Error {
  constructor(
    readonly problems: string[],
    source?: string,
  ) {
    super(`invalid training config${source ? ` ${source}` : ''}:\n  ${problems.join('\n  ')}`);
    this.name = 'TrainConfigError';
  }
}

/** Validates one section's values (`raw` may be undefined: all defaults), pushing problems as `path.key: ...`. */
export function readSection(section: Section, raw: unknown, path: string, problems: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(section)) out[key] = cloneDefault(field.default);
  if (raw === undefined || raw === null) return out;
  if (!isPlainObject(raw)) {
    problems.push(`${path}: must be a mapping of fields, got ${describe(raw)}`);
    return out;
  }
  for (const [key, value] of Object.entries(raw)) {
    // Own fields only: `section[key]` found Object.prototype's members, so 'constructor' or 'toString' passed as
    // known fields without any check.
    const field = Object.hasOwn(section, key) ? section[key] : undefined;
    if (!field) {
      problems.push(`${path}.${key}: unknown field${didYouMean(key, Object.keys(section))} (known: ${Object.keys(section).join(', ')})`);
      continue;
    }
    const problem = checkField(field, value);
    if (problem) problems.push(`${path}.${key}: ${problem}`);
    // A copy: the config must not share a list with the caller's input or a preset (TINY_PRESET's task list was
    // handed out, so pushing to one config's tasks changed every later `preset: tiny` config).
    else out[key] = cloneDefault(value);
  }
  return out;
}

/** Why `value` does not fit `field`, or null when it does. */
export function checkField(field: Field, value: unknown): string | null {
  switch (field.kind) {
    case 'number': {
      if (value === null) return field.nullable ? null : `must be ${expected(field)}, got null`;
      if (typeof value !== 'number' || !Number.isFinite(value)) return `must be ${expected(field)}, got ${describe(value)}`;
      const ok =
        (!field.int || Number.isInteger(value)) &&
        (field.min === undefined || value >= field.min) &&
        (field.max === undefined || value <= field.max) &&
        (field.gt === undefined || value > field.gt) &&
        (field.lt === undefined || value < field.lt);
      return ok ? null : `must be ${expected(field)}, got ${value}`;
    }
    case 'boolean':
      return typeof value === 'boolean' ? null : `must be true or false, got ${describe(value)}`;
    case 'string':
      if (value === null && field.nullable) return null;
      return typeof value === 'string' && value.length > 0 ? null : `must be ${expected(field)}, got ${describe(value)}`;
    case 'enum':
      return typeof value === 'string' && field.values.includes(value) ? null : `must be ${expected(field)}, got ${describe(value)}`;
    case 'strings': {
      if (typeof value === 'string' && value.length > 0) return null;
      if (Array.isArray(value) && value.length > 0 && value.every((v) => typeof v === 'string' && v.length > 0)) return null;
      return `must be ${expected(field)}, got ${describe(value)}`;
    }
  }
}

/** "an integer ≥ 1", "a number in (0, 1)", "one of 'k1', 'k3'"... */
export function expected(field: Field): string {
  switch (field.kind) {
    case 'number': {
      const noun = field.int ? 'an integer' : 'a number';
      const lo = field.gt !== undefined ? `(${field.gt}` : field.min !== undefined ? `[${field.min}` : null;
      const hi = field.lt !== undefined ? `${field.lt})` : field.max !== undefined ? `${field.max}]` : null;
      let text = noun;
      if (lo && hi) text += ` in ${lo}, ${hi}`;
      else if (lo) text += field.gt !== undefined ? ` > ${field.gt}` : ` ≥ ${field.min}`;
      else if (hi) text += field.lt !== undefined ? ` < ${field.lt}` : ` ≤ ${field.max}`;
      return field.nullable ? `${text} or null` : text;
    }
    case 'boolean':
      return 'true or false';
    case 'string':
      return field.nullable ? 'a non-empty string or null' : 'a non-empty string';
    case 'enum':
      return `one of ${field.values.map((v) => `'${v}'`).join(', ')}`;
    case 'strings':
      return field.groups ? `${field.groups.map((g) => `'${g}'`).join(', ')} or a list of names` : 'a list of non-empty strings';
  }
}

/** Markdown reference table of a section: field, default, accepted values, meaning. */
export function sectionTable(section: Section, path: string): string {
  const rows = Object.entries(section).map(([key, f]) => `| \`${path}.${key}\` | \`${JSON.stringify(f.default)}\` | ${expected(f)} | ${f.doc} |`);
  return ['| field | default | accepts | meaning |', '|---|---|---|---|', ...rows].join('\n');
}

export function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function describe(x: unknown): string {
  if (typeof x === 'string') return JSON.stringify(x);
  if (Array.isArray(x)) return `a list (${JSON.stringify(x).slice(0, 60)})`;
  if (isPlainObject(x)) return 'a mapping';
  return String(x);
}

function cloneDefault<T>(x: T): T {
  return Array.isArray(x) ? (x.slice() as T) : x;
}

/**
 * ", did you mean 'actorLr'?" when exactly one known name is the given one in another case, or else one or two
 * edits away from it (as the CLI suggests options); a list of 60 known fields hides the one a typo meant.
 */
export function didYouMean(given: string, known: readonly string[]): string {
  const sameCase = known.filter((k) => k.toLowerCase() === given.toLowerCase());
  const near = sameCase.length > 0 ? sameCase : known.filter((k) => editDistance(k.toLowerCase(), given.toLowerCase()) <= Math.min(2, Math.floor(k.length / 3)));
  return near.length === 1 ? `, did you mean '${near[0]}'?` : '';
}

/** Levenshtein distance: insertions, deletions and substitutions of one character each. */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length];
}

/**
 * A JSON.parse error's message with the line and column of its "position N": a large .json file (a data list, a
 * config) was named only by a character offset, or by nothing at all.
 */
export function jsonErrorMessage(text: string, e: unknown): string {
  const message = (e as Error).message;
  const m = /at position (\d+)/.exec(message);
  const at = m ? Number(m[1]) : /Unexpected end of JSON input/.test(message) ? text.length : null;
  if (at === null || at > text.length) return message;
  const before = text.slice(0, at);
  const line = before.split('\n').length;
  return `${message} (line ${line}, column ${at - before.lastIndexOf('\n')})`;
}
