import { bench, benchUsage } from './bench.js';
import { collectCommand, collectUsage } from './collect.js';
import { doctor, doctorUsage } from './doctor.js';
import { envCommand, envUsage } from './env.js';
import { evalCommand, evalUsage } from './eval.js';
import { generateCommand, generateUsage } from './generate.js';
import { initModelCommand, initModelUsage } from './init-model.js';
import { tasks, tasksUsage } from './tasks.js';
import { trainCommand, trainUsage } from './train.js';
import { logprobsCommand, logprobsUsage } from './logprobs.js';
import { reportCommand, reportUsage } from './report.js';
import { serveCommand, serveUsage } from './serve.js';
import { sftCommand, sftUsage } from './sft.js';
import { workerCommand, workerUsage } from './worker.js';

/** One `mlagent <name>` subcommand: its usage text (first line = synopsis) and its entry point. */
export interface Command {
  usage: string;
  run: (argv: string[]) => Promise<void>;
}

/** Every subcommand, in the order `mlagent --help` lists them. Add new commands here, one line each. */
export const COMMANDS: Record<string, Command> = {
  doctor: { usage: doctorUsage, run: doctor },
  bench: { usage: benchUsage, run: bench },
  'init-model': { usage: initModelUsage, run: initModelCommand },
  env: { usage: envUsage, run: envCommand },
  generate: { usage: generateUsage, run: generateCommand },
  logprobs: { usage: logprobsUsage, run: logprobsCommand },
  serve: { usage: serveUsage, run: serveCommand },
  report: { usage: reportUsage, run: reportCommand },
  sft: { usage: sftUsage, run: sftCommand },
  collect: { usage: collectUsage, run: collectCommand },
  eval: { usage: evalUsage, run: evalCommand },
  tasks: { usage: tasksUsage, run: tasks },
  worker: { usage: workerUsage, run: workerCommand },
  train: { usage: trainUsage, run: trainCommand },
};
