// actionCallKey: which responses make the same env step from a state.
import { describe, expect, it } from 'vitest';
import { actionCallKey as stepKey } from '../src/actions/call-key.js';

const respond = (thought: string, action: string, input: string) => `Reflection: -\nThought: ${thought}\nAction: ${action}\nAction Input: ${input}`;

describe('actionCallKey', () => {
  it('is equal for the same action call, whatever the thoughts, spacing and key order around it', () => {
    const a = respond('run it', 'Inspect Script Lines', '{"script_name": "train.py", "start_line_number": 1, "end_line_number": 5}');
    const b = respond('look at the top of the script first', 'Inspect Script Lines', '{\n  "end_line_number": 5,\n  "script_name": "train.py",\n  "start_line_number": 1\n}');
    expect(stepKey(a)).toBe(stepKey(b));
    expect(stepKey(`Action: Execute Script\nAction Input: {"script_name": "train.py"}`)).toBe(stepKey(respond('go', 'Execute Script', '{"script_name":"train.py"}')));
  });

  it('differs for another action or other arguments', () => {
    const run = stepKey(respond('x', 'Execute Script', '{"script_name": "train.py"}'));
    expect(stepKey(respond('x', 'Execute Script', '{"script_name": "other.py"}'))).not.toBe(run);
    expect(stepKey(respond('x', 'Inspect Script Lines', '{"script_name": "train.py", "start_line_number": 1, "end_line_number": 6}'))).not.toBe(
      stepKey(respond('x', 'Inspect Script Lines', '{"script_name": "train.py", "start_line_number": 1, "end_line_number": 5}')),
    );
    expect(stepKey(respond('x', 'List Files', '{"dir_path": "."}'))).not.toBe(run);
  });

  it('keys a response that does not parse by its text, since its observation quotes the error', () => {
    expect(stepKey('no action here')).toBe(stepKey('no action here'));
    expect(stepKey('no action here')).not.toBe(stepKey('no action here either'));
    expect(stepKey(respond('x', 'Execute Script', '{"script_name": '))).not.toBe(stepKey(respond('x', 'Execute Script', '{"script_name": "train.py"}')));
  });
});
