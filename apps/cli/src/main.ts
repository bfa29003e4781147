import { GpuError, GpuUnavailableError } from '@mlagent/core-kernels';
import { UsageError } from './args.js';
import { bench, benchUsage } from './commands/bench.js';
import { doctor, doctorUsage } from './commands/doctor.js';
import { initModelCommand, initModelUsage } from './commands/init-model.js';

const USAGE = `usage: mlagent <command> [options]

commands:
  ${doctorUsage.replace(/\n/g, '\n  ')}
  ${benchUsage.replace(/\n/g, '\n  ')}
  ${initModelUsage.replace(/\n/g, '\n  ')}
`;

const commands: Record<string, (argv: string[]) => Promise<void>> = { doctor, bench, 'init-model': initModelCommand };

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(USAGE);
    return name ? 0 : 2;
  }
  const command = commands[name];
  if (!command) {
    console.error(`mlagent: unknown command '${name}'\n\n${USAGE}`);
    return 2;
  }
  try {
    await command(rest);
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`mlagent ${e.message}`);
      return 2;
    }
    if (e instanceof GpuUnavailableError || e instanceof GpuError) {
      console.error(`mlagent ${name}: ${e.message}`);
      return 1;
    }
    throw e;
  }
}

process.exitCode = await main(process.argv.slice(2));
