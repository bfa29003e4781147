// Job ids derived from the request, so adding the same step twice is one job with one result.
import { createHash } from 'node:crypto';
import type { ExecutionJobData } from './types.js';

/** sha256 over the request's fields (length-prefixed, so no two requests collide by concatenation). */
export function executionJobId(d: ExecutionJobData): string {
  const h = createHash('sha256');
  for (const part of [d.task, d.fromSnapshot ?? '', d.response, String(d.maxSteps), String(d.maxObservationChars), d.runEditedScripts ? 'run-edits' : '', d.key]) {
    const bytes = Buffer.from(part, 'utf8');
    h.update(`${bytes.length}:`).update(bytes);
  }
  return `step-${h.digest('hex')}`;
}
