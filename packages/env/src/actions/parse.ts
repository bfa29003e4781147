// Parser for ResearchAgent's response format (Reflection, Research Plan and Status, Fact Check, Thought, Action,
// Action Input). It tolerates common model slips and never throws: anything it cannot accept becomes an error
// whose `observation` is the text the agent gets back.
import { ACTION_NAMES, ACTIONS, isActionName, type ActionCall, type ActionName, type ActionSpec } from './schema.js';
import { shorten, sliceText } from './text.js';

/** The free-text fields of a response (absent when the response has no such field). */
export interface ResponseFields {
  reflection?: string;
  researchPlanAndStatus?: string;
  factCheck?: string;
  thought?: string;
}

export type ParseErrorKind = 'format' | 'unknown-action' | 'arguments';

export interface ParseError {
  kind: ParseErrorKind;
  /** The exact text the agent sees as its observation. */
  observation: string;
}

export type ParsedResponse =
  | (ActionCall & { ok: true; fields: ResponseFields })
  | {
      ok: false;
      error: ParseError;
      fields: ResponseFields;
      /** The action the response asked for, when it named a valid one (for 'arguments' errors). */
      action?: ActionName;
    };

export interface ParseOptions {
  /** The actions accepted (default: all of ACTION_NAMES). Others get an 'unknown-action' error. */
  actions?: readonly ActionName[];
}

type FieldKey = keyof ResponseFields | 'action' | 'actionInput';

// A field header at the start of a line, tolerating markdown: "Action:", "**Action:**", "**Action**:", "## Action:".
const HEADER =
  /^[ \t]*(?:#{1,6}[ \t]*)?(?:[*_]{1,3}[ \t]*)?(reflection|research[ \t]*plan[ \t]*(?:and|&)[ \t]*status|fact[ \t-]*check|thoughts?|action[ \t_-]*input|action)[ \t]*(?:[*_]{1,3}[ \t]*)?:(?:[ \t]*[*_]{1,3}(?=[ \t]|$))?/i;

function fieldOf(header: string): FieldKey {
  const k = header.toLowerCase().replace(/[^a-z]/g, '');
  if (k === 'reflection') return 'reflection';
  if (k.startsWith('research')) return 'researchPlanAndStatus';
  if (k === 'factcheck') return 'factCheck';
  if (k.startsWith('thought')) return 'thought';
  if (k === 'actioninput') return 'actionInput';
  return 'action';
}

const EXAMPLE = ACTIONS['List Files'].usage.replace(/\[[^\]]*\]/, '"."');

function formatError(what: string): ParseError {
  return {
    kind: 'format',
    observation:
      `Invalid response format: ${what}\n` +
      'Each response must contain the fields Reflection, Research Plan and Status, Fact Check, Thought, Action ' +
      'and Action Input, each starting a line with its name and a colon, and end with the action to take and its ' +
      'arguments as a JSON object, for example:\n' +
      EXAMPLE,
  };
}

function argumentsError(spec: ActionSpec, what: string): ParseError {
  return {
    kind: 'arguments',
    observation:
      `ActionInputParsingError: ${what}\n` +
      `The Action Input for ${spec.name} has to be one JSON object holding exactly the entries shown below, ` +
      'separated by commas. Put every string in double quotes and write its line breaks as \\n (JSON has no ' +
      'triple quotes). Please fix it and try again:\n' +
      spec.usage,
  };
}

/** Lower-case letters and digits only: "Edit Script (AI)" and "edit_script_ai" both give "editscriptai". */
function squash(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]/g, '');
}

const ALIASES: Record<string, ActionName> = {
  editscript: 'Edit Script (AI)',
  editscriptsegment: 'Edit Script Segment (AI)',
};

function resolveAction(raw: string, enabled: readonly ActionName[]): ActionName | undefined {
  const key = squash(raw);
  if (key === '') return undefined;
  const hit = enabled.find((n) => squash(n) === key);
  if (hit) return hit;
  const alias = ALIASES[key];
  return alias !== undefined && enabled.includes(alias) ? alias : undefined;
}

function show(value: unknown): string {
  let s: string;
  try {
    // JSON.stringify writes Infinity (e.g. from 1e400) as null, which the agent never wrote.
    s = typeof value === 'number' ? String(value) : (JSON.stringify(value) ?? String(value));
  } catch {
    s = String(value);
  }
  return shorten(s, 60);
}

/** A key or name from the response, shortened for an observation (one can be megabytes long). */
function quoted(s: string): string {
  return `"${shorten(s, 60)}"`;
}

type Fields = Partial<Record<Exclude<FieldKey, 'action'>, string>> & {
  /** The text of every "Action:" header before the Action Input, in order (models repeat it, or start prose with it). */
  actions: string[];
};

/** Splits a response into its fields. The Action Input runs to the end of the text. */
function splitFields(text: string): Fields {
  const out: Fields = { actions: [] };
  const lines = text.split('\n');
  let current: FieldKey | undefined;
  let buf: string[] = [];
  const flush = () => {
    if (current === 'action') out.actions.push(buf.join('\n').trim());
    else if (current !== undefined && out[current] === undefined) out[current] = buf.join('\n').trim();
  };
  for (let li = 0; li < lines.length; li++) {
    const line = lines[li];
    const m = HEADER.exec(line);
    if (m) {
      const field = fieldOf(m[1]);
      flush();
      const rest = line.slice(m[0].length);
      if (field === 'actionInput') {
        if (out.actionInput === undefined) out.actionInput = [rest, ...lines.slice(li + 1)].join('\n').trim();
        return out;
      }
      current = field;
      buf = [rest];
    } else if (current !== undefined) {
      buf.push(line);
    }
  }
  flush();
  // "Action: Execute Script  Action Input: {...}" on one line, or the label in the Action field's text.
  const last = out.actions.length - 1;
  if (last >= 0 && out.actionInput === undefined) {
    // Blanks before the colon are one run ("[ \t]*[*_]{0,3}[ \t]*" backtracked quadratically on a long run of them).
    const action = out.actions[last];
    const m = /[*_]{0,3}action[ \t_-]*input[ \t]*(?:[*_]{1,3}[ \t]*)?:[ \t]*[*_]{0,3}/i.exec(action);
    if (m) {
      out.actionInput = action.slice(m.index + m[0].length).trim();
      out.actions[last] = action.slice(0, m.index).trim();
    }
  }
  return out;
}

/**
 * Where the line of the response's first "Action:" header starts, found as parseResponse finds its headers (case,
 * markdown, indentation): from there on is all the parser reads the action call from. -1 when it reads none.
 */
export function actionLineStart(text: string): number {
  const line = /[^\r\n]*/y;
  for (let at = 0; ; ) {
    line.lastIndex = at;
    const l = (line.exec(text) ?? [''])[0];
    const m = HEADER.exec(l);
    if (m) {
      const field = fieldOf(m[1]);
      if (field === 'action') return at;
      if (field === 'actionInput') return -1; // the parser stops here: an Action Input before any Action
    }
    const end = at + l.length;
    if (end >= text.length) return -1;
    at = end + (text.startsWith('\r\n', end) ? 2 : 1);
  }
}

/** The action name: the first line that holds one, skipping code-fence lines ("```", "```text") around it. */
function cleanActionName(raw: string): string {
  for (const line of raw.split('\n')) {
    if (/^\s*(?:```|~~~)[\w-]*\s*$/.test(line)) continue;
    const name = line
      .replace(/[*`#"']/g, '')
      .trim()
      .replace(/[.:;,]+$/, '')
      .trim();
    if (name !== '') return name;
  }
  return '';
}

// ---------------------------------------------------------------------------------------------------------------
// Lenient JSON

class LooseJsonError extends Error {}

type Ctx = 'key' | 'object' | 'array' | 'top';

const MAX_DEPTH = 64;

/** A parser for one JSON value that accepts the slips models make (see README). */
class LooseJson {
  i: number;
  constructor(
    private readonly s: string,
    start: number,
  ) {
    this.i = start;
  }

  private fail(what: string): never {
    throw new LooseJsonError(what);
  }

  private ws(): void {
    while (this.i < this.s.length && /\s/.test(this.s[this.i])) this.i++;
  }

  value(ctx: Ctx, depth: number): unknown {
    if (depth > MAX_DEPTH) this.fail('the JSON is nested too deeply');
    this.ws();
    const c = this.s[this.i];
    if (c === undefined) this.fail('the JSON object ends too early (is it cut off?)');
    if (c === '{') return this.object(depth);
    if (c === '[') return this.array(depth);
    if (c === '"' || c === "'") return this.string(ctx);
    const lit = /(true|false|null|True|False|None)(?![\w.])/y;
    lit.lastIndex = this.i;
    const lm = lit.exec(this.s);
    if (lm) {
      this.i += lm[0].length;
      return lm[1] === 'true' || lm[1] === 'True' ? true : lm[1] === 'false' || lm[1] === 'False' ? false : null;
    }
    const num = /-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![\w.])/y;
    num.lastIndex = this.i;
    const nm = num.exec(this.s);
    if (nm) {
      this.i += nm[0].length;
      return Number(nm[0]);
    }
    // An unquoted value: up to the end of the line or the next , } ].
    const bare = /[^,}\]\n]*/y;
    bare.lastIndex = this.i;
    const bm = bare.exec(this.s);
    const token = bm ? bm[0].trim() : '';
    if (token === '') this.fail(`expected a value at "${sliceText(this.s, this.i, 20)}"`);
    this.i += bm ? bm[0].length : 0;
    return token;
  }

  private object(depth: number): Record<string, unknown> {
    const obj = Object.create(null) as Record<string, unknown>;
    this.i++; // {
    for (;;) {
      this.ws();
      const c = this.s[this.i];
      if (c === undefined) this.fail('the JSON object is not closed (a "}" is missing)');
      if (c === '}') {
        this.i++;
        return obj;
      }
      if (c === ',') {
        this.i++; // trailing or doubled comma
        continue;
      }
      let key: string;
      if (c === '"' || c === "'") key = this.string('key');
      else {
        const id = /[A-Za-z_][A-Za-z0-9_]*/y;
        id.lastIndex = this.i;
        const m = id.exec(this.s);
        if (!m) this.fail(`expected a key in double quotes, found "${sliceText(this.s, this.i, 20)}"`);
        key = m[0];
        this.i += key.length;
      }
      this.ws();
      if (this.s[this.i] !== ':') this.fail(`expected ":" after the key ${quoted(key)}`);
      this.i++;
      obj[key] = this.value('object', depth + 1);
      this.ws();
      const n = this.s[this.i];
      if (n === ',') this.i++;
      else if (n === '}' || n === '"' || n === "'") continue; // a missing comma is tolerated before a quoted key
      else if (n === undefined) this.fail('the JSON object is not closed (a "}" is missing)');
      else this.fail(`expected "," or "}" after the value of ${quoted(key)}, found "${sliceText(this.s, this.i, 20)}"`);
    }
  }

  private array(depth: number): unknown[] {
    const arr: unknown[] = [];
    this.i++; // [
    for (;;) {
      this.ws();
      const c = this.s[this.i];
      if (c === undefined) this.fail('a JSON list is not closed (a "]" is missing)');
      if (c === ']') {
        this.i++;
        return arr;
      }
      if (c === ',') {
        this.i++;
        continue;
      }
      arr.push(this.value('array', depth + 1));
    }
  }

  /** Whether the quote just before index j closes a string read in context ctx (or is a stray quote inside it). */
  private closes(j: number, ctx: Ctx): boolean {
    const s = this.s;
    if (ctx === 'key' || ctx === 'top') return true;
    let k = j;
    let newline = false;
    while (k < s.length && /\s/.test(s[k])) {
      if (s[k] === '\n') newline = true;
      k++;
    }
    if (k >= s.length) return true;
    const c = s[k];
    if (ctx === 'array') return c === ']' || c === ',';
    if (c === '}') return !/^[ \t]*["']/.test(s.slice(k + 1, k + 40));
    const keyAt = (p: number): boolean => /^(["'])[^"'\n]{1,80}\1\s*:/.test(s.slice(p, p + 120));
    if (c === ',') {
      let p = k + 1;
      while (p < s.length && /\s/.test(s[p])) p++;
      return p >= s.length || s[p] === '}' || keyAt(p);
    }
    return newline && (c === '"' || c === "'") && keyAt(k); // a missing comma before the next key
  }

  private string(ctx: Ctx): string {
    const s = this.s;
    const triple = s.startsWith('"""', this.i) ? '"""' : s.startsWith("'''", this.i) ? "'''" : undefined;
    if (triple) {
      const end = s.indexOf(triple, this.i + 3);
      if (end < 0) this.fail('a triple-quoted string is not closed');
      const body = s.slice(this.i + 3, end);
      this.i = end + 3;
      return body;
    }
    const q = s[this.i];
    this.i++;
    let out = '';
    for (;;) {
      if (this.i >= s.length) this.fail(`a string is not closed (a ${q} is missing)`);
      const c = s[this.i];
      if (c === '\\') {
        const e = s[this.i + 1];
        const simple: Record<string, string> = { n: '\n', t: '\t', r: '\r', b: '\b', f: '\f', '/': '/', '\\': '\\', '"': '"', "'": "'" };
        if (e !== undefined && simple[e] !== undefined) {
          out += simple[e];
          this.i += 2;
        } else if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(s.slice(this.i + 2, this.i + 6))) {
          out += String.fromCharCode(parseInt(s.slice(this.i + 2, this.i + 6), 16));
          this.i += 6;
        } else {
          out += '\\'; // an unknown escape such as "\d" in a regex is kept as written
          this.i++;
        }
      } else if (c === q && this.closes(this.i + 1, ctx)) {
        this.i++;
        return out;
      } else {
        out += c;
        this.i++;
      }
    }
  }
}

/** The end index of the balanced {...} starting at `start` under strict JSON string rules, or -1. */
function strictEnd(s: string, start: number): number {
  let depth = 0;
  let inStr = false;
  for (let i = start; i < s.length; i++) {
    const c = s[i];
    if (inStr) {
      if (c === '\\') i++;
      else if (c === '"') inStr = false;
    } else if (c === '"') inStr = true;
    else if (c === '{') depth++;
    else if (c === '}' && --depth === 0) return i;
  }
  return -1;
}

/** Reads the first JSON object of the Action Input text: strictly if it is valid JSON, leniently if not. */
function readObject(text: string): { value: unknown } | { error: string } {
  const start = text.indexOf('{');
  if (start < 0) return { error: 'the Action Input holds no JSON object (no "{" found)' };
  const end = strictEnd(text, start);
  if (end > 0) {
    try {
      return { value: JSON.parse(text.slice(start, end + 1)) as unknown };
    } catch {
      // fall through to the lenient parser
    }
  }
  try {
    return { value: new LooseJson(text, start).value('top', 0) };
  } catch (e) {
    if (e instanceof LooseJsonError) return { error: `the Action Input is not valid JSON: ${e.message}` };
    if (e instanceof RangeError) return { error: 'the Action Input is not valid JSON: it is nested too deeply' };
    throw e;
  }
}

function keyOf(k: string): string {
  return k.trim().toLowerCase().replace(/[\s-]+/g, '_');
}

/** Checks and types the arguments of an action; returns the args or a description of what is wrong. */
function validateArgs(spec: ActionSpec, value: unknown): { args: Record<string, string | number> } | { error: string } {
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    return { error: 'the Action Input must be a JSON object of "key": value entries' };
  const given = value as Record<string, unknown>;
  const args: Record<string, string | number> = {};
  const seen = new Map<string, unknown>();
  const unknown: string[] = [];
  const problems: string[] = [];
  for (const k of Object.keys(given)) {
    const arg = spec.args.find((a) => a.name === k) ?? spec.args.find((a) => a.name === keyOf(k));
    if (!arg) unknown.push(k);
    else if (!seen.has(arg.name)) seen.set(arg.name, given[k]);
    else if (seen.get(arg.name) !== given[k]) {
      // Two spellings of one key ("script_name" and "Script Name"): which value was meant is unknown.
      problems.push(`"${arg.name}" is given twice, with different values (${show(seen.get(arg.name))} and ${show(given[k])})`);
    }
  }
  const names = spec.args.map((a) => `"${a.name}"`).join(', ');
  if (unknown.length > 0) {
    // A response can hold thousands of keys, each megabytes long: name a few, shortened.
    const listed = unknown.slice(0, 5).map(quoted).join(', ') + (unknown.length > 5 ? ` and ${unknown.length - 5} more` : '');
    problems.push(`unknown ${unknown.length === 1 ? 'key' : 'keys'} ${listed} (${spec.name} takes ${names})`);
  }
  const missing = spec.args.filter((a) => !seen.has(a.name)).map((a) => `"${a.name}"`);
  if (missing.length > 0) problems.push(`missing ${missing.length === 1 ? 'key' : 'keys'} ${missing.join(', ')}`);
  for (const a of spec.args) {
    if (!seen.has(a.name)) continue;
    const v = seen.get(a.name);
    if (a.type === 'integer') {
      let n: number | undefined;
      if (typeof v === 'number') n = v;
      else if (typeof v === 'string' && /^\s*[+-]?\d+(?:\.0*)?\s*$/.test(v)) n = Number(v.trim());
      if (n === undefined || !Number.isSafeInteger(n)) problems.push(`"${a.name}" must be an integer, got ${show(v)}`);
      else args[a.name] = n;
    } else if (typeof v === 'string') args[a.name] = v;
    else if (typeof v === 'number' && Number.isFinite(v)) args[a.name] = String(v);
    else problems.push(`"${a.name}" must be a string, got ${show(v)}`);
  }
  return problems.length > 0 ? { error: problems.join('; ') } : { args };
}

function pickFields(f: Fields): ResponseFields {
  const out: ResponseFields = {};
  if (f.reflection !== undefined) out.reflection = f.reflection;
  if (f.researchPlanAndStatus !== undefined) out.researchPlanAndStatus = f.researchPlanAndStatus;
  if (f.factCheck !== undefined) out.factCheck = f.factCheck;
  if (f.thought !== undefined) out.thought = f.thought;
  return out;
}

/**
 * The accepted actions. A bad `options` is the caller's bug, not the agent's: caught with the response's own errors it
 * would come back as an "Invalid response format" observation blaming the agent (and an unknown name in `actions`
 * crashed inside the parser), so it throws instead.
 */
function enabledActions(options: ParseOptions): readonly ActionName[] {
  if (options === null || typeof options !== 'object') throw new TypeError(`parseResponse: options must be an object, got ${show(options)}`);
  const actions: unknown = options.actions;
  if (actions === undefined) return ACTION_NAMES;
  if (!Array.isArray(actions)) throw new TypeError(`parseResponse: options.actions must be an array of action names, got ${show(actions)}`);
  const bad = actions.filter((n) => typeof n !== 'string' || !isActionName(n));
  if (bad.length > 0) {
    throw new TypeError(`parseResponse: options.actions holds ${bad.map(show).join(', ')}, which ${bad.length === 1 ? 'is not an action' : 'are not actions'} (known: ${ACTION_NAMES.join(', ')})`);
  }
  return actions as ActionName[];
}

function parseUnsafe(text: string, enabled: readonly ActionName[]): ParsedResponse {
  const parts = splitFields(text.replace(/\r\n?/g, '\n'));
  const fields = pickFields(parts);
  const fail = (error: ParseError, action?: ActionName): ParsedResponse =>
    action === undefined ? { ok: false, error, fields } : { ok: false, error, fields, action };

  if (parts.actions.length === 0) return fail(formatError('the "Action:" field is missing.'));
  // Several "Action:" lines must name one action between them (lines naming none, like "Action: first I will look",
  // are prose): reading only the first ran "Action: A" + "Action: B" as A with an input that may be meant for B.
  const rawNames = parts.actions.map(cleanActionName).filter((n) => n !== '');
  if (rawNames.length === 0) return fail(formatError('the "Action:" field is empty; it must name one action.'));
  const named = [...new Set(rawNames.map((n) => resolveAction(n, ACTION_NAMES)).filter((n) => n !== undefined))];
  if (named.length > 1)
    return fail(formatError(`the response names ${named.length} actions (${named.join(', ')}); give exactly one "Action:" line.`));
  const rawName = rawNames.find((n) => resolveAction(n, ACTION_NAMES) !== undefined) ?? rawNames[0];
  const name = resolveAction(rawName, enabled);
  if (name === undefined)
    return fail({
      kind: 'unknown-action',
      observation: `Invalid action: ${shorten(rawName, 100)}. Valid actions are: ${enabled.join(', ')}.`,
    });
  const spec = ACTIONS[name];
  if (parts.actionInput === undefined)
    return fail(
      {
        kind: 'format',
        observation:
          `Invalid response format: the "Action Input:" field is missing after "Action: ${name}". ` +
          'Give the arguments of the action as a JSON object on the lines after it, like this:\n' +
          spec.usage,
      },
      name,
    );
  const read = readObject(parts.actionInput);
  if ('error' in read) return fail(argumentsError(spec, read.error), name);
  const checked = validateArgs(spec, read.value);
  if ('error' in checked) return fail(argumentsError(spec, checked.error), name);
  return { ok: true, action: name, args: checked.args, fields } as ParsedResponse;
}

/**
 * Parses one model response in ResearchAgent's format into an action with typed, validated arguments, or an
 * error whose observation tells the agent what is wrong and the correct usage. Never throws for the response;
 * throws a TypeError for a bad `options`.
 */
export function parseResponse(text: string, options: ParseOptions = {}): ParsedResponse {
  const enabled = enabledActions(options);
  try {
    if (typeof text !== 'string') return { ok: false, error: formatError('the response is not text.'), fields: {} };
    return parseUnsafe(text, enabled);
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    return { ok: false, error: formatError(`the response could not be read (${why}).`), fields: {} };
  }
}
