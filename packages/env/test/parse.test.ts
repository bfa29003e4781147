import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ACTION_NAMES,
  ACTIONS,
  defaultPromptActions,
  parseResponse,
  renderActions,
  type ParsedResponse,
} from '../src/index.js';

// Fixed seed so CI is reproducible; FC_SEED=<n> explores other inputs.
fc.configureGlobal({ seed: Number(process.env.FC_SEED ?? 20261128) });

const VALID = `Reflection: The observation shows the baseline train.py reaches 0.71 accuracy on the validation split.
It uses a logistic regression without any feature scaling.

Research Plan and Status:
1. Understand the data and the baseline. Done: data_description.txt read, baseline accuracy 0.71.
2. Improve the model: try gradient boosting. In progress.

Fact Check:
- Baseline accuracy 0.71: confirmed by the previous observation.

Thought: I will look at the training loop before editing it.

Action: Inspect Script Lines
Action Input: {
    "script_name": "train.py",
    "start_line_number": 1,
    "end_line_number": 40
}`;

function ok(r: ParsedResponse): Extract<ParsedResponse, { ok: true }> {
  if (!r.ok) throw new Error(`expected ok, got ${r.error.kind}: ${r.error.observation}`);
  return r;
}
function err(r: ParsedResponse): Extract<ParsedResponse, { ok: false }> {
  if (r.ok) throw new Error(`expected an error, got ${r.action} ${JSON.stringify(r.args)}`);
  return r;
}
const respond = (action: string, input: string, head = 'Thought: next step.\n') =>
  `${head}Action: ${action}\nAction Input: ${input}`;

describe('schema', () => {
  it('has the MLAgentBench action names and keys plus the direct line edit', () => {
    expect(ACTION_NAMES).toEqual([
      'List Files',
      'Copy File',
      'Undo Edit Script',
      'Execute Script',
      'Final Answer',
      'Understand File',
      'Inspect Script Lines',
      'Edit Script (AI)',
      'Edit Script Segment (AI)',
      'Reflection',
      'Write File',
      'Read File',
      'Edit Script Lines',
    ]);
    expect(ACTIONS['Edit Script Segment (AI)'].args.map((a) => `${a.name}:${a.type}`)).toEqual([
      'script_name:string',
      'start_line_number:integer',
      'end_line_number:integer',
      'edit_instruction:string',
      'save_name:string',
    ]);
    expect(ACTIONS['Copy File'].args.map((a) => a.name)).toEqual(['source', 'destination']);
    expect(ACTIONS['Edit Script Lines'].args.map((a) => a.name)).toEqual([
      'script_name',
      'start_line_number',
      'end_line_number',
      'new_content',
    ]);
    expect(ACTION_NAMES.filter((n) => ACTIONS[n].hidden)).toEqual(['Write File', 'Read File', 'Edit Script Lines']);
    expect(ACTIONS['Write File'].isEdit).toBe(true);
    expect(ACTIONS['List Files'].isEdit).toBe(false);
    expect(ACTIONS['Execute Script'].usage).toBe(
      'Action: Execute Script\nAction Input: {\n    "script_name": [a relative path to an existing script in the workspace, e.g. "train.py"]\n}',
    );
  });

  it('chooses the prompt actions with and without a helper LLM', () => {
    expect(defaultPromptActions()).not.toContain('Write File');
    expect(defaultPromptActions()).toContain('Edit Script (AI)');
    const noHelper = defaultPromptActions({ helperLlm: false });
    expect(noHelper).toContain('Edit Script Lines');
    expect(noHelper).not.toContain('Edit Script (AI)');
    expect(noHelper).not.toContain('Understand File');
  });
});

describe('renderActions', () => {
  it('lists the visible actions with their usage, hiding low-level ones by default', () => {
    const text = renderActions();
    expect(text).toContain('- List Files:\n');
    expect(text).toContain('    Action: Edit Script (AI)\n');
    expect(text).toContain('"things_to_look_for": [');
    expect(text).not.toContain('Write File');
    expect(text).not.toContain('Read File');
    expect(renderActions({ includeHidden: true })).toContain('- Write File:');
    expect(renderActions({ actions: ['Final Answer'] }).startsWith('- Final Answer:')).toBe(true);
  });
});

describe('parseResponse: valid responses', () => {
  it('parses a full, realistic response', () => {
    const r = ok(parseResponse(VALID));
    expect(r.action).toBe('Inspect Script Lines');
    expect(r.args).toEqual({ script_name: 'train.py', start_line_number: 1, end_line_number: 40 });
    expect(r.fields.reflection).toMatch(/^The observation shows .*\nIt uses a logistic regression/s);
    expect(r.fields.researchPlanAndStatus).toMatch(/^1\. Understand .*In progress\.$/s);
    expect(r.fields.factCheck).toBe('- Baseline accuracy 0.71: confirmed by the previous observation.');
    expect(r.fields.thought).toBe('I will look at the training loop before editing it.');
  });

  it('accepts a response with only Action and Action Input', () => {
    const r = ok(parseResponse('Action: List Files\nAction Input: {"dir_path": "."}'));
    expect(r.args).toEqual({ dir_path: '.' });
    expect(r.fields).toEqual({});
  });

  it('handles CRLF line ends', () => {
    expect(ok(parseResponse(VALID.replace(/\n/g, '\r\n'))).args).toMatchObject({ end_line_number: 40 });
  });
});

describe('parseResponse: tolerated slips', () => {
  it('markdown bold and headers around field names', () => {
    const text = [
      '**Reflection:** fine',
      '## Research Plan and Status:',
      '1. step',
      '**Fact Check**: none',
      '### Thought: run it',
      '**Action:** Execute Script',
      '**Action Input:**',
      '{"script_name": "train.py"}',
    ].join('\n');
    const r = ok(parseResponse(text));
    expect(r.action).toBe('Execute Script');
    expect(r.args).toEqual({ script_name: 'train.py' });
    expect(r.fields).toEqual({ reflection: 'fine', researchPlanAndStatus: '1. step', factCheck: 'none', thought: 'run it' });
  });

  it('bold action names and a name on the next line', () => {
    expect(ok(parseResponse(respond('**Execute Script**', '{"script_name": "a.py"}'))).action).toBe('Execute Script');
    expect(ok(parseResponse('Action:\n`List Files`\nAction Input: {"dir_path": "."}')).action).toBe('List Files');
  });

  it('code fences around the Action Input', () => {
    const r = ok(parseResponse(respond('List Files', '```json\n{\n  "dir_path": "data"\n}\n```')));
    expect(r.args).toEqual({ dir_path: 'data' });
  });

  it('trailing commas', () => {
    const r = ok(parseResponse(respond('Copy File', '{"source": "train.py", "destination": "backup.py",}')));
    expect(r.args).toEqual({ source: 'train.py', destination: 'backup.py' });
  });

  it('single-quoted keys and strings', () => {
    const r = ok(parseResponse(respond('Copy File', "{'source': 'train.py', 'destination': \"it's.py\"}")));
    expect(r.args).toEqual({ source: 'train.py', destination: "it's.py" });
    const r2 = ok(parseResponse(respond('Final Answer', "{'final_answer': 'I didn't beat it, sadly'}")));
    expect(r2.args).toEqual({ final_answer: "I didn't beat it, sadly" });
  });

  it('unescaped newlines and stray quotes inside strings', () => {
    const input = `{
    "script_name": "train.py",
    "edit_instruction": "Replace the model with:
model = GradientBoostingClassifier(n_estimators=200)
and print("done") at the end.",
    "save_name": "train.py"
}`;
    const r = ok(parseResponse(respond('Edit Script (AI)', input)));
    expect(r.args).toEqual({
      script_name: 'train.py',
      edit_instruction:
        'Replace the model with:\nmodel = GradientBoostingClassifier(n_estimators=200)\nand print("done") at the end.',
      save_name: 'train.py',
    });
  });

  it('write file content with raw newlines, code and escapes', () => {
    const input = `{"file_name": "run.py", "content": "import re
if x == "a":
    print(re.sub(r"\\d+", "", s), 'ok')
"}`;
    const r = ok(parseResponse(respond('Write File', input)));
    expect(r.args).toEqual({
      file_name: 'run.py',
      content: 'import re\nif x == "a":\n    print(re.sub(r"\\d+", "", s), \'ok\')\n',
    });
  });

  it('triple-quoted strings', () => {
    const r = ok(parseResponse(respond('Write File', '{"file_name": "a.py", "content": """x = 1\ny = "2"\n"""}')));
    expect(r.args).toEqual({ file_name: 'a.py', content: 'x = 1\ny = "2"\n' });
  });

  it('Python-style True/False/None and bare values', () => {
    const r = ok(parseResponse(respond('List Files', '{"dir_path": ".", }')));
    expect(r.args).toEqual({ dir_path: '.' });
    const e = err(parseResponse(respond('List Files', '{"dir_path": None}')));
    expect(e.error.observation).toContain('"dir_path" must be a string, got null');
    const e2 = err(parseResponse(respond('Final Answer', '{"final_answer": True}')));
    expect(e2.error.observation).toContain('"final_answer" must be a string, got true');
    expect(ok(parseResponse(respond('Execute Script', '{"script_name": train.py}'))).args).toEqual({
      script_name: 'train.py',
    });
  });

  it('extra text after the JSON object (takes the first balanced object)', () => {
    const r = ok(
      parseResponse(respond('Execute Script', '{"script_name": "train.py"}\n\nObservation: {"fake": 1}\nAction: Final Answer')),
    );
    expect(r.args).toEqual({ script_name: 'train.py' });
    const loose = ok(parseResponse(respond('Execute Script', "{'script_name': 'a.py'} and then {'x': 1}")));
    expect(loose.args).toEqual({ script_name: 'a.py' });
  });

  it('action names with other case and spacing', () => {
    expect(ok(parseResponse(respond('execute script', '{"script_name": "a.py"}'))).action).toBe('Execute Script');
    expect(ok(parseResponse(respond('Execute_Script.', '{"script_name": "a.py"}'))).action).toBe('Execute Script');
    expect(
      ok(parseResponse(respond('edit script (ai)', '{"script_name": "a", "edit_instruction": "b", "save_name": "c"}')))
        .action,
    ).toBe('Edit Script (AI)');
    expect(
      ok(parseResponse(respond('Edit Script', '{"script_name": "a", "edit_instruction": "b", "save_name": "c"}'))).action,
    ).toBe('Edit Script (AI)');
  });

  it('Action and Action Input on one line, and key spelling', () => {
    const r = ok(parseResponse('Action: Execute Script Action Input: {"Script Name": "a.py"}'));
    expect(r.action).toBe('Execute Script');
    expect(r.args).toEqual({ script_name: 'a.py' });
  });

  it('a missing comma between entries on separate lines', () => {
    const r = ok(parseResponse(respond('Copy File', '{\n"source": "a.py"\n"destination": "b.py"\n}')));
    expect(r.args).toEqual({ source: 'a.py', destination: 'b.py' });
  });
});

describe('parseResponse: integers', () => {
  it('coerces integer strings', () => {
    const r = ok(
      parseResponse(
        respond('Inspect Script Lines', '{"script_name": "t.py", "start_line_number": "10", "end_line_number": 20.0}'),
      ),
    );
    expect(r.args).toEqual({ script_name: 't.py', start_line_number: 10, end_line_number: 20 });
  });

  it('rejects non-integers', () => {
    const e = err(
      parseResponse(
        respond('Inspect Script Lines', '{"script_name": "t.py", "start_line_number": "ten", "end_line_number": 2.5}'),
      ),
    );
    expect(e.error.kind).toBe('arguments');
    expect(e.action).toBe('Inspect Script Lines');
    expect(e.error.observation).toContain('"start_line_number" must be an integer, got "ten"');
    expect(e.error.observation).toContain('"end_line_number" must be an integer, got 2.5');
  });
});

describe('parseResponse: errors', () => {
  it('format: no Action line', () => {
    const e = err(parseResponse('Thought: I should list the files.\nAction Input: {"dir_path": "."}'));
    expect(e.error.kind).toBe('format');
    expect(e.error.observation).toMatch(/^Invalid response format: the "Action:" field is missing\./);
    expect(e.error.observation).toContain('Action: List Files\nAction Input: {\n    "dir_path": "."\n}');
    expect(e.fields.thought).toBe('I should list the files.');
  });

  it('format: empty Action and missing Action Input', () => {
    expect(err(parseResponse('Action:\nAction Input: {}')).error.observation).toContain('the "Action:" field is empty');
    const e = err(parseResponse('Thought: go\nAction: Execute Script'));
    expect(e.error.kind).toBe('format');
    expect(e.error.observation).toBe(
      'Invalid response format: the "Action Input:" field is missing after "Action: Execute Script". ' +
        'Give the arguments of the action as a JSON object on the lines after it, like this:\n' +
        ACTIONS['Execute Script'].usage,
    );
  });

  it('unknown action', () => {
    const e = err(parseResponse(respond('Train Model', '{"epochs": 3}')));
    expect(e.error.kind).toBe('unknown-action');
    expect(e.error.observation).toBe(`Invalid action: Train Model. Valid actions are: ${ACTION_NAMES.join(', ')}.`);
  });

  it('actions switched off are unknown', () => {
    const enabled = defaultPromptActions({ helperLlm: false });
    const e = err(
      parseResponse(respond('Edit Script (AI)', '{"script_name": "a", "edit_instruction": "b", "save_name": "c"}'), {
        actions: enabled,
      }),
    );
    expect(e.error.kind).toBe('unknown-action');
    expect(e.error.observation).toContain(`Valid actions are: ${enabled.join(', ')}.`);
  });

  it('arguments: invalid JSON, with the usage', () => {
    const e = err(parseResponse(respond('Execute Script', '{"script_name": "train.py"')));
    expect(e.error.kind).toBe('arguments');
    expect(e.error.observation).toMatch(/^ActionInputParsingError: the Action Input is not valid JSON: /);
    expect(e.error.observation).toContain('The Action Input for Execute Script has to be one JSON object');
    expect(e.error.observation.endsWith(ACTIONS['Execute Script'].usage)).toBe(true);
    const none = err(parseResponse(respond('Execute Script', 'train.py')));
    expect(none.error.observation).toContain('no JSON object');
  });

  it('arguments: unknown and missing keys are named', () => {
    const e = err(parseResponse(respond('Copy File', '{"source": "a.py", "dest": "b.py", "force": true}')));
    expect(e.error.kind).toBe('arguments');
    expect(e.error.observation).toContain('unknown keys "dest", "force" (Copy File takes "source", "destination")');
    expect(e.error.observation).toContain('missing key "destination"');
    const e2 = err(parseResponse(respond('List Files', '{}')));
    expect(e2.error.observation).toContain('missing key "dir_path"');
    const e3 = err(parseResponse(respond('List Files', '["."]')));
    expect(e3.error.observation).toContain('no JSON object');
  });

  it('arguments: nested values are not strings', () => {
    const e = err(parseResponse(respond('List Files', '{"dir_path": {"a": 1}}')));
    expect(e.error.observation).toContain('"dir_path" must be a string, got {"a":1}');
  });

  it('a "__proto__" key is an unknown key, not a prototype', () => {
    const e = err(parseResponse(respond('List Files', "{'dir_path': '.', '__proto__': {'x': 1}}")));
    expect(e.error.observation).toContain('unknown key "__proto__"');
  });

  it('does not throw on non-string input', () => {
    const e = err(parseResponse(undefined as unknown as string));
    expect(e.error.kind).toBe('format');
  });
});

describe('parseResponse: fuzz', () => {
  const check = (r: ParsedResponse) => {
    if (r.ok) expect(ACTION_NAMES).toContain(r.action);
    else {
      expect(['format', 'unknown-action', 'arguments']).toContain(r.error.kind);
      expect(r.error.observation.trim().length).toBeGreaterThan(0);
    }
  };

  it('never throws on random strings', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 400 }), (s) => check(parseResponse(s))),
      { numRuns: 500 },
    );
  });

  it('never throws on random strings after an Action header', () => {
    const json = fc.stringMatching(/^[{}[\]"',:\n a-z0-9\\]*$/);
    fc.assert(
      fc.property(fc.constantFrom(...ACTION_NAMES), json, (name, tail) =>
        check(parseResponse(`Action: ${name}\nAction Input: {${tail}`)),
      ),
      { numRuns: 500 },
    );
  });

  it('never throws on truncations and corruptions of valid responses', () => {
    const samples = [
      VALID,
      respond('Edit Script (AI)', '{"script_name": "a.py", "edit_instruction": "x\ny", "save_name": "b.py"}'),
      respond('Write File', "{'file_name': 'a.py', 'content': '''x = \"1\"'''}"),
    ];
    fc.assert(
      fc.property(fc.constantFrom(...samples), fc.nat(), fc.string({ maxLength: 5 }), (s, cut, junk) => {
        const at = cut % (s.length + 1);
        check(parseResponse(s.slice(0, at)));
        check(parseResponse(s.slice(0, at) + junk + s.slice(at)));
      }),
      { numRuns: 1000 },
    );
  });

  it('deeply nested input is an error, not a crash', () => {
    check(parseResponse(respond('List Files', '{"a": ' + '['.repeat(100_000))));
    check(parseResponse(respond('List Files', '{"a": ' + '{"b": '.repeat(10_000))));
  });
});
