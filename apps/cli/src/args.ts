import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { editDistance } from '@mlagent/rl';

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/**
 * The command ran and kept what it could, but did not finish everything (failed trajectories, an interrupt, an
 * endpoint that does not answer): the message says what and what to do next. Exit 1, no stack trace.
 */
export class CommandFailedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CommandFailedError';
  }
}

/**
 * The user stopped the command (Ctrl-C) and it stopped cleanly, keeping what it had: the message says what was kept
 * and how to continue. Exit 130, as a shell reports a command ended by SIGINT, so `a && b` does not go on to b.
 */
export class InterruptedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InterruptedError';
  }
}

/** parseArgs with strict checking, turning its errors into usage errors that name the command. */
export function parse<T extends NonNullable<ParseArgsConfig['options']>>(command: string, argv: string[], options: T) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false });
  } catch (e) {
    throw new UsageError(`${command}: ${(e as Error).message}${suggestOption(e, Object.keys(options))}`);
  }
}

/** " (did you mean --x?)" for an unknown option one or two edits from a known one, or a prefix of one. */
export function suggestOption(e: unknown, known: string[]): string {
  const m = /Unknown option '--([^']+)'/.exec((e as Error).message);
  if (!m) return '';
  const given = m[1];
  const near = known.filter((k) => k.startsWith(given) || given.startsWith(k) || editDistance(k, given) <= 2);
  return near.length === 1 ? ` (did you mean --${near[0]}?)` : '';
}

/** A file written after long work (an export, a benchmark table): its path is checked before any of the work runs. */
export function checkOutputFile(command: string, flag: string, file: string): void {
  if (file === '') throw new UsageError(`${command}: --${flag} must name a file, got an empty string`);
  const dir = path.dirname(path.resolve(file));
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UsageError(`${command}: --${flag} ${file}: the directory ${dir} does not exist`);
  if (existsSync(file) && statSync(file).isDirectory()) throw new UsageError(`${command}: --${flag} ${file} is a directory, not a file`);
}
