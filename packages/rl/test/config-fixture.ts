import { TrainConfigError } from '../src/config/schema.js';

/** The problems a config error lists; fails when `fn` throws something else or nothing. */
export function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    if (e instanceof TrainConfigError) return e.problems;
    throw e;
  }
  throw new Error('expected a TrainConfigError');
}
