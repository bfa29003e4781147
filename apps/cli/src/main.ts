import { GpuError, GpuUnavailableError } from '@mlagent/core-kernels';
import { RemoteExecutionError } from '@mlagent/env';
import { CheckpointError, ConfigError, ContextLengthError, LoraError, MemoryPlanError, NonFiniteError, OptionError, TokenizerError } from '@mlagent/policy';
import { EndpointError, RetriesExhaustedError, RunLockedError, SftDataError, TrainConfigError } from '@mlagent/rl';
import { CommandFailedError, InterruptedError, UsageError } from './args.js';
import { COMMANDS } from './commands/index.js';

/** Errors in what the user gave (a model directory, a config, data): the message says it all (exit 2). */
const INPUT_ERRORS = [ConfigError, TokenizerError, CheckpointError, LoraError, MemoryPlanError, TrainConfigError, SftDataError, ContextLengthError, NonFiniteError, OptionError];
/** Failures of something outside this process (an endpoint, a worker queue): the message, no stack trace (exit 1). */
const OUTSIDE_ERRORS = [EndpointError, RetriesExhaustedError, RemoteExecutionError];

const USAGE = `usage: mlagent <command> [options]

commands:
${Object.values(COMMANDS)
  .map((c) => '  ' + c.usage.replace(/\n/g, '\n  '))
  .join('\n')}
`;

function isSystemError(e: unknown): e is NodeJS.ErrnoException {
  return e instanceof Error && typeof (e as NodeJS.ErrnoException).code === 'string' && typeof (e as NodeJS.ErrnoException).syscall === 'string';
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === 'help' && rest[0]) {
    if (!COMMANDS[rest[0]]) {
      console.error(`mlagent help: unknown command '${rest[0]}' (${Object.keys(COMMANDS).join(', ')})`);
      return 2;
    }
    console.log(`usage: ${COMMANDS[rest[0]].usage}`);
    return 0;
  }
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(USAGE);
    return name ? 0 : 2;
  }
  const command = COMMANDS[name];
  if (!command) {
    console.error(`mlagent: unknown command '${name}'\n\n${USAGE}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(`usage: ${command.usage}`);
    return 0;
  }
  try {
    await command.run(rest);
    // A command that finished its output but failed (a WRONG benchmark, a failed baseline) sets exitCode itself.
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    // Both carry their command's name at the front of the message.
    // RunLockedError too names its stage ("train: another run (pid N) is writing to DIR ...").
    if (e instanceof UsageError || e instanceof CommandFailedError || e instanceof InterruptedError || e instanceof RunLockedError) {
      console.error(`mlagent ${e.message}`);
      return e instanceof UsageError ? 2 : e instanceof InterruptedError ? 130 : 1;
    }
    if (INPUT_ERRORS.some((c) => e instanceof c)) {
      console.error(`mlagent ${name}: ${(e as Error).message}`);
      return 2;
    }
    if (e instanceof GpuUnavailableError || e instanceof GpuError || OUTSIDE_ERRORS.some((c) => e instanceof c)) {
      console.error(`mlagent ${name}: ${(e as Error).message}`);
      return 1;
    }
    // A file or network failure (EEXIST, EACCES, ENOSPC, ECONNREFUSED...): its message names the path or address.
    if (isSystemError(e)) {
      console.error(`mlagent ${name}: ${e.message}${process.env.MLAGENT_STACK ? `\n${e.stack}` : ' (MLAGENT_STACK=1 shows where)'}`);
      return 1;
    }
    throw e;
  }
}

process.exitCode = await main(process.argv.slice(2));
