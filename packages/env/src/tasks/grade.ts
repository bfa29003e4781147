import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { DEFAULT_PYTHON } from './paths.js';
import { checkTimeoutMs, runPython, tail } from './python.js';
import type { GradeResult } from './types.js';

/**
 * The longest grader message passed on: it becomes the agent's observation, and graders that list every missing id
 * wrote 100 KB ones.
 */
const MAX_ERROR_CHARS = 2000;

/** `text` cut to about `max` characters, keeping its start and end. */
function clip(text: string, max: number): string {
  if (text.length <= max) return text;
  const keep = Math.floor((max - 40) / 2);
  return `${text.slice(0, keep)} [... ${text.length - 2 * keep} characters cut ...] ${text.slice(-keep)}`;
}

/**
 * Runs `grade.py --submission FILE --answers DIR` of the task in `taskDir`, outside any sandbox.
 * A bad submission (missing file, grader exit 2 with {"error"}, grader timeout) gives {ok:false, error}.
 * A grader that crashes any other way is a task bug and throws.
 */
export async function gradeSubmission(
  taskDir: string,
  answersDir: string,
  submissionPath: string,
  opts: { python?: string; timeoutMs?: number } = {},
): Promise<GradeResult> {
  checkTimeoutMs(opts.timeoutMs, 'gradeSubmission: timeoutMs');
  const submission = path.resolve(submissionPath);
  if (!existsSync(submission)) return { ok: false, error: `no submission file: ${path.basename(submission)} was not written` };
  if (!statSync(submission).isFile()) return { ok: false, error: `${path.basename(submission)} is not a regular file` };
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const r = await runPython(opts.python ?? DEFAULT_PYTHON, [path.join(taskDir, 'grade.py'), '--submission', submission, '--answers', answersDir], {
    cwd: taskDir,
    timeoutMs,
  });
  if (r.timedOut) return { ok: false, error: `grading timed out after ${timeoutMs / 1000} s (is the submission far too large?)` };
  const last = r.stdout.trim().split('\n').pop() ?? '';
  let parsed: { score?: unknown; error?: unknown } | undefined;
  try {
    parsed = JSON.parse(last) as { score?: unknown; error?: unknown };
  } catch {
    parsed = undefined;
  }
  if (r.code === 2 && parsed && typeof parsed.error === 'string') return { ok: false, error: clip(parsed.error, MAX_ERROR_CHARS) };
  if (r.code === 0 && parsed && typeof parsed.score === 'number' && Number.isFinite(parsed.score)) return { ok: true, score: parsed.score };
  // Python's json writes inf and nan bare, which JSON.parse refuses: extreme predictions, not a grader bug.
  if (r.code === 0 && /^\{\s*"score"\s*:\s*(-?Infinity|NaN)\s*\}$/.test(last.trim())) {
    return { ok: false, error: `the submission scores ${/NaN/.test(last) ? 'NaN' : 'an infinite value'}: its predictions hold values too extreme to grade` };
  }
  throw new Error(
    `grade.py of ${path.basename(taskDir)} misbehaved (exit ${r.code ?? r.signal}, expected {"score"} with exit 0 or {"error"} with exit 2); ` +
      `stdout: ${clip(tail(r.stdout, 3), MAX_ERROR_CHARS) || '(empty)'}; stderr:\n${clip(tail(r.stderr), 4 * MAX_ERROR_CHARS)}`,
  );
}
