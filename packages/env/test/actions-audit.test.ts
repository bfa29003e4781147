// Audit of the response parser, the compact chat and the prompt: hostile model text (huge, repetitive, odd Unicode,
// ambiguous) must give a small, well-formed observation in linear time, and the compact form must cut where the
// parser reads the action.
import { describe, expect, it } from 'vitest';
import { actionPart, compactMessages } from '../src/actions/compact.js';
import { parseResponse, type ParsedResponse } from '../src/actions/parse.js';
import { historySummary, renderPrompt } from '../src/episode/prompt.js';
import type { StepRecord } from '../src/snapshots/manifest.js';

function ok(r: ParsedResponse): Extract<ParsedResponse, { ok: true }> {
  if (!r.ok) throw new Error(`expected ok, got ${r.error.kind}: ${r.error.observation.slice(0, 300)}`);
  return r;
}
function err(r: ParsedResponse): Extract<ParsedResponse, { ok: false }> {
  if (r.ok) throw new Error(`expected an error, got ${r.action} ${JSON.stringify(r.args)}`);
  return r;
}

/** A high surrogate not followed by a low one, or a low one not preceded by a high one: text a UTF-8 encoder or a Python client rejects. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function ms(f: () => void): number {
  const t0 = performance.now();
  f();
  return performance.now() - t0;
}

describe('parseResponse: time on pathological input', () => {
  it('"Action Input" written inside the Action line, followed by a long run of blanks, is read in linear time', () => {
    // The one-line split regex had two adjacent [ \t]* runs: quadratic backtracking (8k blanks took ~0.1 s, 100k
    // blanks ~20 s). Fixed it is a few milliseconds; the bound leaves room for a loaded machine.
    const text = `Action: Execute Script action input${' '.repeat(100_000)}x`;
    let r: ParsedResponse | undefined;
    const t = ms(() => {
      r = parseResponse(text);
    });
    expect(r?.ok).toBe(false);
    expect(t).toBeLessThan(3000);
  });
});

describe('parseResponse: the observation stays small whatever the response holds', () => {
  const N = 1_000_000;

  it('an unknown action name of a megabyte is not echoed back whole', () => {
    const e = err(parseResponse(`Action: ${'Run'.repeat(N / 3)}\nAction Input: {}`));
    expect(e.error.kind).toBe('unknown-action');
    expect(e.error.observation).toMatch(/^Invalid action: RunRun/);
    expect(e.error.observation).toContain('Valid actions are: List Files');
    expect(e.error.observation.length).toBeLessThan(2000);
  });

  it('an unknown key of a megabyte, or a hundred thousand unknown keys, are not echoed back whole', () => {
    const long = err(parseResponse(`Action: Execute Script\nAction Input: {"${'k'.repeat(N)}": 1}`));
    expect(long.error.observation).toContain('unknown key "kkk');
    expect(long.error.observation).toContain('missing key "script_name"');
    expect(long.error.observation.length).toBeLessThan(2000);

    const keys = Array.from({ length: 100_000 }, (_, i) => `"key${i}": 1`).join(', ');
    const many = err(parseResponse(`Action: Execute Script\nAction Input: {${keys}}`));
    expect(many.error.observation).toContain('"key0"');
    expect(many.error.observation).toMatch(/100000 unknown keys|99995 more/);
    expect(many.error.observation.length).toBeLessThan(2000);
  });

  it('a megabyte key in broken JSON is not echoed back whole', () => {
    const e = err(parseResponse(`Action: Execute Script\nAction Input: {'${'k'.repeat(N)}' 1}`));
    expect(e.error.kind).toBe('arguments');
    expect(e.error.observation).toContain('expected ":" after the key "kkk');
    expect(e.error.observation.length).toBeLessThan(2000);
  });
});

describe('parseResponse: observations are well-formed text', () => {
  it('shortening a wrong value does not cut an emoji in half', () => {
    // show() cut at 57 UTF-16 units: here between the two halves of the emoji, leaving a lone surrogate that
    // UTF-8 encoders replace and Python clients of the env server refuse to encode.
    const value = `${'a'.repeat(55)}😀${'b'.repeat(20)}`;
    const e = err(
      parseResponse(
        `Action: Inspect Script Lines\nAction Input: {"script_name": "t.py", "start_line_number": "${value}", "end_line_number": 3}`,
      ),
    );
    expect(e.error.observation).toContain('"start_line_number" must be an integer, got "aaa');
    expect(e.error.observation).not.toMatch(LONE_SURROGATE);
  });

  it('the quoted spot of broken JSON does not cut an emoji in half', () => {
    // The snippet is 20 UTF-16 units from the "!": the emoji's high half is the 20th.
    const e = err(parseResponse(`Action: Execute Script\nAction Input: {"script_name": 1, !${'x'.repeat(18)}😀 more}`));
    expect(e.error.observation).toContain('expected a key in double quotes, found "!xxx');
    expect(e.error.observation).not.toMatch(LONE_SURROGATE);
  });

  it('a number too large for a double is reported as such, not as null', () => {
    const e = err(
      parseResponse('Action: Inspect Script Lines\nAction Input: {"script_name": "t.py", "start_line_number": 1, "end_line_number": 1e400}'),
    );
    expect(e.error.observation).not.toContain('got null');
    expect(e.error.observation).toContain('"end_line_number" must be an integer, got Infinity');
  });
});

describe('parseResponse: ambiguous responses are refused', () => {
  it('two different actions named before the Action Input are a format error, not the first one silently', () => {
    // Both actions take {"script_name"}, so the first was run with the input meant for either.
    const e = err(parseResponse('Thought: run it\nAction: Execute Script\nAction: Undo Edit Script\nAction Input: {"script_name": "train.py"}'));
    expect(e.error.kind).toBe('format');
    expect(e.error.observation).toContain('Execute Script');
    expect(e.error.observation).toContain('Undo Edit Script');
    // The same action written twice is not ambiguous.
    const same = ok(parseResponse('Action: Execute Script\n**Action:** execute script\nAction Input: {"script_name": "train.py"}'));
    expect(same.action).toBe('Execute Script');
  });

  it('an "Action:" line of prose before the real one does not hide it', () => {
    // Only the first Action line was read ("Invalid action: first I will look at the files"); MLAgentBench reads
    // the last one before the Action Input.
    const r = ok(parseResponse('Thought: go\nAction: first I will look at the files\nAction: List Files\nAction Input: {"dir_path": "."}'));
    expect([r.action, r.args]).toEqual(['List Files', { dir_path: '.' }]);
    // With no line naming an action, the error quotes the first.
    expect(err(parseResponse('Action: think\nAction: ponder\nAction Input: {}')).error.observation).toMatch(/^Invalid action: think\./);
  });

  it('two spellings of one key with different values are refused, not one dropped', () => {
    const e = err(parseResponse('Action: Execute Script\nAction Input: {"script_name": "a.py", "Script Name": "b.py"}'));
    expect(e.error.kind).toBe('arguments');
    expect(e.error.observation).toContain('"script_name" is given twice');
    // The same value under two spellings is harmless.
    expect(ok(parseResponse('Action: Execute Script\nAction Input: {"script_name": "a.py", "Script Name": "a.py"}')).args).toEqual({
      script_name: 'a.py',
    });
  });
});

describe('parseResponse: a fenced action name', () => {
  it('reads the name inside a code fence under "Action:", as the usage blocks of the prompt are fenced', () => {
    // The first non-blank line was taken as the name: "```" cleaned to nothing ("the Action field is empty") and
    // "```text" to the unknown action "text".
    const bare = ok(parseResponse('Thought: look\nAction:\n```\nList Files\n```\nAction Input:\n```json\n{"dir_path": "."}\n```'));
    expect([bare.action, bare.args]).toEqual(['List Files', { dir_path: '.' }]);
    const tagged = ok(parseResponse('Action:\n```text\nExecute Script\n```\nAction Input: {"script_name": "train.py"}'));
    expect(tagged.action).toBe('Execute Script');
    // A fence alone still names nothing.
    expect(err(parseResponse('Action:\n```\n```\nAction Input: {}')).error.observation).toContain('the "Action:" field is empty');
  });
});

describe('actionPart: cuts where the parser reads the action', () => {
  const variants = [
    '**Thought:** list them\n**Action:** List Files\n**Action Input:** {"dir_path": "."}',
    'thought: list them\naction: List Files\naction input: {"dir_path": "."}',
    'Thought: list them\n  Action: List Files\n  Action Input: {"dir_path": "."}',
    '## Thought: list them\n## Action: List Files\n## Action Input: {"dir_path": "."}',
    'Thought: list them\r\n**Action**: List Files\r\nAction Input: {"dir_path": "."}',
  ];

  it.each(variants)('keeps only the action of %j', (response) => {
    const part = actionPart(response);
    expect(part).not.toMatch(/list them/);
    expect(part).toMatch(/^[ #*]*action/i);
    const whole = ok(parseResponse(response));
    const cut = ok(parseResponse(part));
    expect([cut.action, cut.args]).toEqual([whole.action, whole.args]);
  });

  it('compactMessages drops the thoughts of a markdown-formatted past turn', () => {
    const out = compactMessages([
      { role: 'user', content: 'task' },
      { role: 'assistant', content: variants[0] },
    ]);
    expect(out[1].content).toBe('**Action:** List Files\n**Action Input:** {"dir_path": "."}');
  });
});

describe('prompt: step briefs', () => {
  const step = (over: Partial<StepRecord>): StepRecord => ({
    step: 1,
    response: 'Action: Edit Script (AI)\nAction Input: {}',
    action: 'Edit Script (AI)',
    actionInput: {},
    observation: 'ok',
    outcome: 'none',
    metric: null,
    durationSec: 1,
    ...over,
  });

  it('shortening an action input does not cut an emoji in half', () => {
    // {"edit_instruction":" is 21 characters: the emoji's high half lands at index 116, the last one kept.
    const input = { edit_instruction: `${'x'.repeat(95)}😀 and more text after it` };
    const brief = historySummary([step({ actionInput: input })]);
    expect(brief).toContain('xxxx');
    expect(brief).not.toMatch(LONE_SURROGATE);
    const prompt = renderPrompt({
      researchProblem: 'p',
      actions: ['List Files'],
      steps: [step({ actionInput: input }), step({ step: 2 })],
      maxSteps: 5,
      historyWindow: 1,
    });
    expect(prompt).toContain('Earlier steps, in brief:');
    expect(prompt).not.toMatch(LONE_SURROGATE);
  });

  it('a step whose Action Input did not parse is not shown as called with null', () => {
    const brief = historySummary([step({ action: 'Execute Script', actionInput: null, outcome: 'parse-error' })]);
    expect(brief).not.toContain('null');
    expect(brief).toMatch(/^Step 1: Execute Script .*-> parse-error$/);
  });
});
