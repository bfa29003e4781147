// The actions that need the helper model: Understand File, Edit Script (AI), Edit Script Segment (AI) and
// Reflection. Without a helper they explain which direct action to use instead (Reflection echoes).
import type { HelperLlmConfig } from '../helper-llm/client.js';
import { editCode, reflect, understandFile } from '../helper-llm/prompts.js';
import { editObservation, readText, readTextHead, saveEdit, type FileContext } from './file-actions.js';
import { EnvError } from './paths.js';

function helperOff(action: string, instead: string): EnvError {
  return new EnvError(`${action} needs the helper model, which is switched off in this environment. ${instead}`);
}

const EDIT_INSTEAD = 'Use Edit Script Lines (or Write File) to edit the script yourself.';

/** The script's text, or '' when it does not exist yet (the AI edits may create a script). */
async function scriptOrEmpty(ctx: FileContext, scriptName: unknown): Promise<string> {
  try {
    return (await readText(ctx, scriptName, 'script_name')).text;
  } catch (e) {
    if (e instanceof EnvError && e.message.includes('does not exist')) return '';
    throw e;
  }
}

export async function understandFileAction(ctx: FileContext, helper: HelperLlmConfig | null, fileName: unknown, lookFor: string): Promise<string> {
  if (!helper) throw helperOff('Understand File', 'Use Read File or Inspect Script Lines to read the file yourself.');
  const { rel, text } = await readTextHead(ctx, fileName, 'file_name');
  return understandFile(helper, rel, text, lookFor);
}

export async function editScriptAction(ctx: FileContext, helper: HelperLlmConfig | null, scriptName: unknown, instruction: string, saveName: unknown): Promise<string> {
  if (!helper) throw helperOff('Edit Script (AI)', EDIT_INSTEAD);
  const code = await scriptOrEmpty(ctx, scriptName);
  const edited = await editCode(helper, String(scriptName), code, instruction);
  const { rel } = await saveEdit(ctx, saveName, 'save_name', edited);
  return editObservation(rel, code, edited);
}

export async function editSegmentAction(
  ctx: FileContext,
  helper: HelperLlmConfig | null,
  a: { script_name: string; start_line_number: number; end_line_number: number; edit_instruction: string; save_name: string },
): Promise<string> {
  if (!helper) throw helperOff('Edit Script Segment (AI)', EDIT_INSTEAD);
  const { text } = await readText(ctx, a.script_name, 'script_name');
  const lines = text.split('\n');
  const start = a.start_line_number;
  const end = a.end_line_number;
  if (start < 1 || end < start || start > lines.length) {
    throw new EnvError(`the line range ${start} to ${end} is not within the script's ${lines.length} lines`);
  }
  const segment = lines.slice(start - 1, end).join('\n');
  const edited = (await editCode(helper, a.script_name, segment, a.edit_instruction)).replace(/\n$/, '');
  const next = [...lines.slice(0, start - 1), edited, ...lines.slice(end)].join('\n');
  const { rel } = await saveEdit(ctx, a.save_name, 'save_name', next);
  return editObservation(rel, text, next);
}

export async function reflectionAction(helper: HelperLlmConfig | null, researchProblem: string, history: string, question: string): Promise<string> {
  if (!helper) return `Reflection (no helper model in this environment, so your request is repeated back for you to think over):\n${question}`;
  return reflect(helper, researchProblem, history, question);
}
