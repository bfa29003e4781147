// The agent's view of an episode: a system message with the actions and the response format, the task, and the
// steps so far (the last `historyWindow` in full, older ones one line each).
import { renderActions, renderResponseFormat } from '../actions/prompt.js';
import type { ActionName } from '../actions/schema.js';
import { shorten } from '../actions/text.js';
import type { StepRecord } from '../snapshots/manifest.js';
import type { ChatTurn } from './types.js';

export interface PromptState {
  researchProblem: string;
  actions: readonly ActionName[];
  steps: readonly StepRecord[];
  maxSteps: number;
  historyWindow: number;
}

function systemText(actions: readonly ActionName[]): string {
  return [
    'You are an expert machine-learning engineer working on a task in a workspace. You act in steps: at each step',
    'you choose one action, and its observation comes back to you. These actions are available:',
    '',
    renderActions({ actions }),
    '',
    renderResponseFormat(),
  ].join('\n');
}

function inputBrief(input: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(input) ?? '';
  } catch {
    s = String(input);
  }
  return shorten(s, 120); // not between the halves of an emoji: a lone surrogate breaks clients' UTF-8
}

/** One line per step outside the window: the action, its input and how it ended. */
function stepBrief(s: StepRecord): string {
  const metric = s.metric === null ? '' : `, metric ${s.metric}`;
  // A response that named an action but whose Action Input did not parse has no input (null): not "called with null".
  const input = s.action && s.actionInput !== null && s.actionInput !== undefined ? inputBrief(s.actionInput) : '';
  return `Step ${s.step}: ${s.action ?? '(invalid response)'} ${input} -> ${s.outcome}${metric}`.replace(/ {2,}/g, ' ');
}

function taskText(p: PromptState, older: readonly StepRecord[]): string {
  const lines = [
    `Research Problem: ${p.researchProblem.trim()}`,
    '',
    'The workspace holds the starting code, data_description.txt and the data in data/ (read-only). A run that',
    `writes submission.csv in the workspace root is graded. You have ${p.maxSteps} steps in all.`,
  ];
  if (older.length > 0) lines.push('', 'Earlier steps, in brief:', ...older.map(stepBrief));
  return lines.join('\n');
}

function observationText(s: StepRecord): string {
  return `Observation:\n\`\`\`\n${s.observation}\n\`\`\``;
}

function split(p: PromptState): { older: readonly StepRecord[]; recent: readonly StepRecord[] } {
  const cut = Math.max(0, p.steps.length - p.historyWindow);
  return { older: p.steps.slice(0, cut), recent: p.steps.slice(cut) };
}

/** The chat so far; the next turn is the agent's. */
export function renderMessages(p: PromptState): ChatTurn[] {
  const { older, recent } = split(p);
  const first = taskText(p, older) + (p.steps.length === 0 ? '\n\nBegin with step 1.' : '');
  const turns: ChatTurn[] = [
    { role: 'system', content: systemText(p.actions) },
    { role: 'user', content: first },
  ];
  for (const s of recent) {
    turns.push({ role: 'assistant', content: s.response }, { role: 'user', content: observationText(s) });
  }
  return turns;
}

/** The same state as one text, for step-wise training: ends asking for the next step's response. */
export function renderPrompt(p: PromptState): string {
  const { older, recent } = split(p);
  const parts = [systemText(p.actions), taskText(p, older)];
  for (const s of recent) parts.push(`Step ${s.step}:\n${s.response.trim()}\n\n${observationText(s)}`);
  parts.push(`Step ${p.steps.length + 1}:`);
  return parts.join('\n\n');
}

/** All steps in brief (for Reflection's helper). */
export function historySummary(steps: readonly StepRecord[]): string {
  return steps.length === 0 ? '(no steps yet)' : steps.map(stepBrief).join('\n');
}
