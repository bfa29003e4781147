// Exports of a collection for fine-tuning: LLaMA-Factory's ShareGPT format (one whole conversation per
// trajectory) and per-step SFT pairs (the state's prompt as the policy sees it at a step, and the expert's answer).
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { readCollection, type CollectedStep } from './records.js';
import { writeFileAtomic } from '../checkpoint/atomic.js';

export interface ShareGptTurn {
  from: 'human' | 'gpt';
  value: string;
}

export interface ShareGptConversation {
  conversations: ShareGptTurn[];
  system: string;
}

/**
 * Per-step SFT example: the step's state as one text (the episode's prompt(), which step-wise RL also acts on) and
 * the expert's answer. No chat list on purpose: SFT loaders train on every assistant turn of a chat, and the
 * history window would repeat each response in several examples (steps.jsonl keeps the chats).
 */
export interface SftStepExample {
  trajectory: string;
  task: string;
  step: number;
  prompt: string;
  response: string;
}

function trajectories(stepsFile: string, outFile: string): CollectedStep[][] {
  if (!existsSync(stepsFile)) throw new Error(`no collection at ${stepsFile}`);
  // An export named like its input (`--sft-steps runs/collect/steps.jsonl`) replaced the collection with the export.
  if (existsSync(outFile) && realpathSync(outFile) === realpathSync(stepsFile)) throw new Error(`cannot export ${stepsFile} onto itself: name another output file`);
  const byId = new Map<string, CollectedStep[]>();
  for (const r of readCollection(stepsFile).records) {
    if (r.type !== 'step') continue;
    const list = byId.get(r.trajectory) ?? [];
    list.push(r);
    byId.set(r.trajectory, list);
  }
  return [...byId.values()];
}

/**
 * The user turn that followed step k's response, as the episode rendered it: the last message of step k+1's
 * chat (whose previous message is step k's response). Falls back to a plain "Observation:" block.
 */
function observationTurn(steps: CollectedStep[], k: number): string {
  const next = steps[k + 1]?.messages;
  if (next && next.length >= 2 && next.at(-2)!.role === 'assistant' && next.at(-2)!.content === steps[k].response && next.at(-1)!.role === 'user')
    return next.at(-1)!.content;
  return `Observation:\n\`\`\`\n${steps[k].observation}\n\`\`\``;
}

/** One trajectory as a ShareGPT conversation: human (task), gpt, human (observation), ..., gpt (last response). */
export function toShareGpt(steps: CollectedStep[]): ShareGptConversation {
  // A trajectory of no steps has no task turn; it used to fail reading `messages` of undefined.
  if (!Array.isArray(steps) || steps.length === 0) throw new RangeError('toShareGpt: a trajectory needs at least one step');
  const first = steps[0].messages;
  const system = first.find((m) => m.role === 'system')?.content ?? '';
  const task = first.find((m) => m.role === 'user')?.content ?? steps[0].prompt;
  const conversations: ShareGptTurn[] = [{ from: 'human', value: task }];
  steps.forEach((s, k) => {
    conversations.push({ from: 'gpt', value: s.response });
    if (k < steps.length - 1) conversations.push({ from: 'human', value: observationTurn(steps, k) });
  });
  return { conversations, system };
}

/** The dataset_info.json entry LLaMA-Factory needs to read the export (sharegpt, from/value, human/gpt, system). */
export function llamaFactoryDatasetInfo(fileName: string): Record<string, unknown> {
  return {
    file_name: fileName,
    formatting: 'sharegpt',
    columns: { messages: 'conversations', system: 'system' },
    tags: { role_tag: 'from', content_tag: 'value', user_tag: 'human', assistant_tag: 'gpt' },
  };
}

/**
 * Writes the complete trajectories of `stepsFile` in ShareGPT format: a JSON array for a .json file, else one
 * conversation per line. Also adds the dataset to a dataset_info.json next to it (created or merged), named
 * after the file. Returns the number of conversations.
 */
export function exportShareGPT(stepsFile: string, outFile: string): number {
  const convs = trajectories(stepsFile, outFile).map(toShareGpt);
  const text = outFile.endsWith('.json') ? `${JSON.stringify(convs, null, 1)}\n` : convs.map((c) => `${JSON.stringify(c)}\n`).join('');
  const infoFile = path.join(path.dirname(outFile), 'dataset_info.json');
  let info: Record<string, unknown> = {};
  if (existsSync(infoFile)) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(infoFile, 'utf8'));
    } catch (e) {
      throw new Error(`cannot add the dataset to ${infoFile}: it is not valid JSON (${(e as Error).message})`);
    }
    // A list (or null) there took the entry as a property JSON.stringify leaves out, or failed on null.
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error(`cannot add the dataset to ${infoFile}: it must hold a JSON object of datasets`);
    info = parsed as Record<string, unknown>;
  }
  const base = path.basename(outFile);
  info[base.replace(/\.(jsonl?|json)$/, '')] = llamaFactoryDatasetInfo(base);
  writeFileAtomic(outFile, text);
  writeFileAtomic(infoFile, `${JSON.stringify(info, null, 2)}\n`);
  return convs.length;
}

/** Writes one SFT example per step of the complete trajectories (JSONL). Returns the number of examples. */
export function exportSftSteps(stepsFile: string, outFile: string): number {
  const lines: string[] = [];
  for (const steps of trajectories(stepsFile, outFile))
    for (const s of steps) {
      const ex: SftStepExample = {
        trajectory: s.trajectory,
        task: s.task,
        step: s.step,
        prompt: s.prompt,
        response: s.response,
      };
      lines.push(`${JSON.stringify(ex)}\n`);
    }
  writeFileAtomic(outFile, lines.join(''));
  return lines.length;
}
