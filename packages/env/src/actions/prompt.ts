// Renders the action set for the agent's prompt: each action's name, description and usage block.
import { ACTION_NAMES, ACTIONS, type ActionName } from './schema.js';

export interface RenderActionsOptions {
  /** The actions to describe, in this order (default: every action that is not hidden). */
  actions?: readonly ActionName[];
  /** With the default list, include the hidden (low-level and direct-edit) actions too. */
  includeHidden?: boolean;
}

function indent(text: string, pad: string): string {
  return text
    .split('\n')
    .map((l) => (l === '' ? l : pad + l))
    .join('\n');
}

/** One action's entry: "- Name:", its description, and its usage block with the observation it gives. */
export function renderAction(name: ActionName): string {
  const spec = ACTIONS[name];
  const block = ['Usage:', '```', spec.usage, `Observation: [${spec.observation}]`, '```'].join('\n');
  return `- ${spec.name}:\n${indent(spec.description, '    ')}\n${indent(block, '    ')}`;
}

/** The descriptions of the given actions (default: the non-hidden ones), one entry per action. */
export function renderActions(options: RenderActionsOptions = {}): string {
  const names = options.actions ?? ACTION_NAMES.filter((n) => options.includeHidden || !ACTIONS[n].hidden);
  return names.map(renderAction).join('\n\n');
}

/** The response format the parser expects, as instructions for the prompt. */
export function renderResponseFormat(): string {
  return [
    'Always answer in exactly this format, with each field starting a line:',
    'Reflection: what the last observation means and, if something went wrong, why',
    'Research Plan and Status: the overall plan and the progress so far, updated at every step',
    'Fact Check: each statement of the Research Plan and Status, and whether an observation confirmed it',
    'Thought: what to do now and why',
    'Action: the name of one of the actions above',
    'Action Input: the arguments of the action as a JSON object, as in its usage',
  ].join('\n');
}
