// What the helper model is asked for each helper action. The environment does the file work; these functions
// only turn texts into answers.
import { chatComplete, HelperLlmError, type HelperLlmConfig } from './client.js';

/** Characters per block when a file is too long to read in one request. */
const UNDERSTAND_BLOCK_CHARS = 12_000;
/** Blocks read at most (a big data file would otherwise cost hundreds of requests). */
const UNDERSTAND_MAX_BLOCKS = 8;

function numbered(lines: string[], first: number): string {
  return lines.map((l, i) => `${first + i}: ${l}`).join('\n');
}

/** Splits lines into blocks of about `chars` characters; returns [firstLine (1-based), lines]. */
function blocks(lines: string[], chars: number): [number, string[]][] {
  const out: [number, string[]][] = [];
  let cur: string[] = [];
  let size = 0;
  let first = 1;
  lines.forEach((line, i) => {
    if (cur.length > 0 && size + line.length + 1 > chars) {
      out.push([first, cur]);
      cur = [];
      size = 0;
      first = i + 1;
    }
    cur.push(line);
    size += line.length + 1;
  });
  if (cur.length > 0 || out.length === 0) out.push([first, cur]);
  return out;
}

/** Understand File: reads the file block by block, then merges the per-block findings. */
export async function understandFile(config: HelperLlmConfig, fileName: string, content: string, lookFor: string): Promise<string> {
  const all = blocks(content.split('\n'), UNDERSTAND_BLOCK_CHARS);
  const parts = all.slice(0, UNDERSTAND_MAX_BLOCKS);
  const cut = all.length > parts.length ? all[parts.length][0] : null;
  const note = cut === null ? '' : `\n\n(Only lines 1 to ${cut - 1} of ${fileName} were read; the file is longer.)`;
  const findings: string[] = [];
  for (const [first, lines] of parts) {
    const range = parts.length > 1 ? ` (lines ${first} to ${first + lines.length - 1} of ${content.split('\n').length})` : '';
    findings.push(
      await chatComplete(config, [
        {
          role: 'user',
          content:
            `Here is the file ${fileName}${range}, with line numbers:\n\`\`\`\n${numbered(lines, first)}\n\`\`\`\n\n` +
            `Report on the following, citing the relevant line numbers: ${lookFor}\n` +
            'State only what the file shows; where it does not contain something asked for, say so instead of guessing.',
        },
      ]),
    );
  }
  if (findings.length === 1) return findings[0] + note;
  const merged = await chatComplete(config, [
    {
      role: 'user',
      content:
        `These are reports on consecutive parts of the file ${fileName}, about: ${lookFor}\n\n` +
        findings.map((f, i) => `Part ${i + 1}:\n${f}`).join('\n\n') +
        '\n\nCombine them into one report on the whole file, keeping the line numbers.',
    },
  ]);
  return merged + note;
}

/** Takes the code out of an answer: the longest fenced block, or the whole answer when it has none. */
export function extractCode(answer: string): string {
  const fences = [...answer.matchAll(/```[a-zA-Z0-9_+-]*[ \t]*\n([\s\S]*?)```/g)].map((m) => m[1]);
  if (fences.length === 0) return answer.trim() + '\n';
  return fences.reduce((a, b) => (b.length > a.length ? b : a));
}

/** Edit Script (AI) and the segment variant: returns the new text of `code` after the instruction. */
export async function editCode(config: HelperLlmConfig, fileName: string, code: string, instruction: string): Promise<string> {
  const answer = await chatComplete(config, [
    {
      role: 'user',
      content:
        `Here is ${code.trim() === '' ? 'an empty file' : 'a part of a Python script'} (${fileName}):\n\`\`\`python\n${code}\n\`\`\`\n\n` +
        `Edit it following this instruction:\n${instruction}\n\n` +
        'Answer with the complete edited code in one ```python block, with nothing left out and no other changes.',
    },
  ]);
  const edited = extractCode(answer);
  if (edited.trim() === '' && code.trim() !== '') throw new HelperLlmError('the helper model answered with no code');
  return edited;
}

/** Reflection: the helper thinks about the question given the task and the steps so far. */
export async function reflect(config: HelperLlmConfig, researchProblem: string, historySummary: string, question: string): Promise<string> {
  return chatComplete(config, [
    {
      role: 'user',
      content:
        `A research agent works on this problem:\n${researchProblem}\n\nWhat it has done so far:\n${historySummary}\n\n` +
        `Reflect on the following and answer in detail: ${question}`,
    },
  ]);
}
