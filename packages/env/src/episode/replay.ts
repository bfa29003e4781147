import type { PreparedTask } from '../tasks/types.js';
import { Episode } from './episode.js';
import type { EpisodeOptions, StepResult } from './types.js';

export interface ReplayResult {
  steps: StepResult[];
  /** The state after the last step played (the start state when no step was played). */
  finalSnapshot: string;
  /** Responses left unplayed because the episode ended first. */
  unplayed: number;
}

/**
 * Re-runs a trajectory: plays `responses` in order from the task's initial state (or `fromSnapshot`) until they
 * run out or the episode ends, then closes the workspace.
 */
export async function replay(
  task: PreparedTask,
  responses: readonly string[],
  opts: EpisodeOptions & { fromSnapshot?: string; onStep?: (r: StepResult) => void },
): Promise<ReplayResult> {
  // A lone string would be played one character per step (for...of), each a parse error, silently.
  if (!Array.isArray(responses)) throw new TypeError(`replay: responses must be an array of response texts, got ${typeof responses}`);
  const ep = await Episode.start(task, opts);
  try {
    const steps: StepResult[] = [];
    for (const r of responses) {
      if (ep.done) break;
      const s = await ep.step(r);
      steps.push(s);
      opts.onStep?.(s);
    }
    return { steps, finalSnapshot: await ep.snapshot(), unplayed: responses.length - steps.length };
  } finally {
    await ep.close();
  }
}
