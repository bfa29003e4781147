// The action set of the env: MLAgentBench's action names and JSON argument keys, plus one direct line edit
// ("Edit Script Lines") for agents that have no helper LLM.

/** The type an argument must have after parsing: integers may arrive as numbers or as digit strings. */
export type ArgType = 'string' | 'integer';

/** Typed arguments of every action, keyed by the action's exact name. */
export interface ActionArgsMap {
  'List Files': { dir_path: string };
  'Copy File': { source: string; destination: string };
  'Undo Edit Script': { script_name: string };
  'Execute Script': { script_name: string };
  'Final Answer': { final_answer: string };
  'Understand File': { file_name: string; things_to_look_for: string };
  'Inspect Script Lines': { script_name: string; start_line_number: number; end_line_number: number };
  'Edit Script (AI)': { script_name: string; edit_instruction: string; save_name: string };
  'Edit Script Segment (AI)': {
    script_name: string;
    start_line_number: number;
    end_line_number: number;
    edit_instruction: string;
    save_name: string;
  };
  Reflection: { things_to_reflect_on: string };
  'Write File': { file_name: string; content: string };
  'Read File': { file_name: string };
  'Edit Script Lines': { script_name: string; start_line_number: number; end_line_number: number; new_content: string };
}

export type ActionName = keyof ActionArgsMap;

/** One action with its typed arguments; `action` discriminates `args`. */
export type ActionCall = { [K in ActionName]: { action: K; args: ActionArgsMap[K] } }[ActionName];

export interface ActionArgSpec {
  /** The JSON key. */
  readonly name: string;
  readonly type: ArgType;
  /** What to put there, as shown in the usage block (in square brackets). */
  readonly description: string;
}

export interface ActionSpec {
  readonly name: ActionName;
  /** What the action does, for the prompt. */
  readonly description: string;
  /** All arguments, in the order shown in the usage block; every one is required. */
  readonly args: readonly ActionArgSpec[];
  /** What the observation will hold, for the prompt. */
  readonly observation: string;
  /**
   * Whether it changes the workspace's files by itself (edits, writes, copies, undo). Execute Script is not an
   * edit: what the script writes is its own doing, and it is how an edit's effect on the metric is measured.
   */
  readonly isEdit: boolean;
  /** Whether it is left out of the prompt by default (still executable when enabled). */
  readonly hidden: boolean;
  /** Whether it calls the helper LLM (unavailable when the helper is switched off). */
  readonly needsHelper: boolean;
  /** The `Action:` / `Action Input:` block showing the correct format, used in the prompt and in errors. */
  readonly usage: string;
}

type SpecInput = Omit<ActionSpec, 'usage'>;

const str = (name: string, description: string): ActionArgSpec => ({ name, type: 'string', description });
const int = (name: string, description: string): ActionArgSpec => ({ name, type: 'integer', description });

const SCRIPT = str('script_name', 'a relative path to an existing script in the workspace, e.g. "train.py"');
const START = int('start_line_number', 'an integer: the first line of the range, counting from 1');
const END = int('end_line_number', 'an integer: the last line of the range, inclusive');

/** Renders the usage block of an action: the lines an agent should write to call it. */
export function renderUsage(spec: Pick<ActionSpec, 'name' | 'args'>): string {
  const lines = spec.args.map((a, i) => `    "${a.name}": [${a.description}]${i < spec.args.length - 1 ? ',' : ''}`);
  return [`Action: ${spec.name}`, 'Action Input: {', ...lines, '}'].join('\n');
}

const SPECS: readonly SpecInput[] = [
  {
    name: 'List Files',
    description: 'List the files and folders of a directory in the workspace.',
    args: [str('dir_path', 'a relative path to a directory, e.g. "." or "data/images"')],
    observation: 'the entries of the directory, or an error message if dir_path is not a directory.',
    isEdit: false,
    hidden: false,
    needsHelper: false,
  },
  {
    name: 'Copy File',
    description: 'Copy a file of the workspace to another path, e.g. to keep a backup before an edit.',
    args: [
      str('source', 'a relative path to an existing file, e.g. "train.py"'),
      str('destination', 'a relative path for the copy, e.g. "train_backup.py"'),
    ],
    observation: 'whether the copy succeeded, or an error message.',
    isEdit: true,
    hidden: false,
    needsHelper: false,
  },
  {
    name: 'Undo Edit Script',
    description: 'Revert the most recent edit of a script, restoring the content it had before.',
    args: [str('script_name', 'a relative path to a script that has been edited')],
    observation: 'the content of the script after the undo, or an error message if there is nothing to undo.',
    isEdit: true,
    hidden: false,
    needsHelper: false,
  },
  {
    name: 'Execute Script',
    description: 'Run a Python script of the workspace (python -u) and show what it printed.',
    args: [SCRIPT],
    observation: 'the output of the script (with its errors when it fails), shortened in the middle if very long.',
    isEdit: false,
    hidden: false,
    needsHelper: false,
  },
  {
    name: 'Final Answer',
    description: 'End the task and hand in your result. Only use it once you have done all you can.',
    args: [str('final_answer', 'a detailed account of what you did and of the final result')],
    observation: 'none: the episode ends.',
    isEdit: false,
    hidden: false,
    needsHelper: false,
  },
  {
    name: 'Understand File',
    description:
      'Have a helper model read a whole file and report on what you ask about. Cheaper than reading a long file yourself.',
    args: [
      str('file_name', 'a relative path to an existing file, e.g. "data_description.txt"'),
      str('things_to_look_for', 'a detailed description of what to look for and report'),
    ],
    observation: 'a description of what was found in the file, pointing to the relevant lines where possible.',
    isEdit: false,
    hidden: false,
    needsHelper: true,
  },
  {
    name: 'Inspect Script Lines',
    description: 'Show a range of lines of a script, at most 100 lines at a time.',
    args: [SCRIPT, START, END],
    observation: 'the requested lines, or an error message.',
    isEdit: false,
    hidden: false,
    needsHelper: false,
  },
  {
    name: 'Edit Script (AI)',
    description:
      'Have a helper model rewrite a whole script following your instruction, and save the result. Check the diff it shows: the edit may be wrong.',
    args: [
      str('script_name', 'a relative path to a script; an empty file is created if it does not exist'),
      str('edit_instruction', 'a detailed, step-by-step description of the change to make'),
      str('save_name', 'a relative path to save the edited script to (it may be script_name itself)'),
    ],
    observation: 'the diff between the original and the edited script, or an error message.',
    isEdit: true,
    hidden: false,
    needsHelper: true,
  },
  {
    name: 'Edit Script Segment (AI)',
    description:
      'Like Edit Script (AI), but the helper model only rewrites the given range of lines; use it for long scripts.',
    args: [
      SCRIPT,
      START,
      END,
      str('edit_instruction', 'a detailed, step-by-step description of the change to make'),
      str('save_name', 'a relative path to save the edited script to (it may be script_name itself)'),
    ],
    observation: 'the diff between the original and the edited script, or an error message.',
    isEdit: true,
    hidden: false,
    needsHelper: true,
  },
  {
    name: 'Reflection',
    description: 'Look back over your work so far with the help of a helper model, e.g. to decide what to try next.',
    args: [str('things_to_reflect_on', 'a detailed description of what to reflect on')],
    observation: 'the reflection.',
    isEdit: false,
    hidden: false,
    needsHelper: true,
  },
  {
    name: 'Write File',
    description: 'Write text to a file, creating it or replacing its whole content.',
    args: [
      str('file_name', 'a relative path to the file to write'),
      str('content', 'the complete new content of the file'),
    ],
    observation: 'whether the file was written, or an error message.',
    isEdit: true,
    hidden: true,
    needsHelper: false,
  },
  {
    name: 'Read File',
    description: 'Show the whole content of a file.',
    args: [str('file_name', 'a relative path to an existing file')],
    observation: 'the content of the file, or an error message.',
    isEdit: false,
    hidden: true,
    needsHelper: false,
  },
  {
    name: 'Edit Script Lines',
    description:
      'Replace lines start_line_number to end_line_number (inclusive) of a script with new_content, without any helper model. ' +
      'An empty new_content deletes the lines; end_line_number = start_line_number - 1 inserts before start_line_number without removing anything.',
    args: [
      SCRIPT,
      START,
      END,
      str('new_content', 'the lines to put in place of the range, separated by \\n, with their indentation'),
    ],
    observation: 'the diff between the original and the edited script, or an error message.',
    isEdit: true,
    hidden: true,
    needsHelper: false,
  },
];

/** Every action, keyed by its exact name. */
export const ACTIONS: Readonly<Record<ActionName, ActionSpec>> = Object.freeze(
  Object.fromEntries(SPECS.map((s) => [s.name, Object.freeze({ ...s, usage: renderUsage(s) })])) as Record<
    ActionName,
    ActionSpec
  >,
);

/** Every action name, in MLAgentBench's order, then the low-level and direct ones. */
export const ACTION_NAMES: readonly ActionName[] = Object.freeze(SPECS.map((s) => s.name));

export function isActionName(name: string): name is ActionName {
  return Object.prototype.hasOwnProperty.call(ACTIONS, name);
}

/**
 * The actions to show in the prompt by default. With a helper LLM: MLAgentBench's high-level set (no hidden
 * action). Without one: the same minus the actions that need the helper, plus "Edit Script Lines".
 */
export function defaultPromptActions(options: { helperLlm?: boolean } = {}): ActionName[] {
  const helper = options.helperLlm ?? true;
  const names = ACTION_NAMES.filter((n) => !ACTIONS[n].hidden && (helper || !ACTIONS[n].needsHelper));
  if (!helper) names.push('Edit Script Lines');
  return names;
}
