import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Episode, mlagentHome, prepareTask, SnapshotStore, type EpisodeOptions, type PreparedTask, type StepResult } from '@mlagent/env';
import { UsageError, parse } from '../args.js';
import { helperFromArgs } from '../helper-args.js';
import { envServeCommand, envServeUsage } from './env-serve.js';
import { envStatesCommand, envStatesUsage, storeMaxBytes } from './env-states.js';

export const envUsage = `mlagent env run|shell --task NAME|DIR [options]
  run   --responses FILE.jsonl [--json]: plays the responses (one {"response": "..."} per line) and prints each step
  shell: type responses yourself (an empty line sends one; ":prompt", ":state", ":quit") and read the observations
  --state ID           start from a saved state (id or unique prefix) instead of the task's initial state
  --store DIR          snapshot store (default $MLAGENT_HOME/states)
  --store-max-size SIZE  the most the store may hold (e.g. 20G); past it, and where its disk would keep under
                       256 MiB free, saved states leave out file contents not stored yet (listed as omitted)
  --max-steps N        step limit (default 15)
  --helper-url URL --helper-model NAME   OpenAI-compatible helper model (key from $MLAGENT_HELPER_API_KEY);
                       without one, Understand File / the AI edits are off and Reflection echoes
${envServeUsage}
${envStatesUsage}`;

const OPTIONS = {
  task: { type: 'string' },
  responses: { type: 'string' },
  state: { type: 'string' },
  store: { type: 'string' },
  'store-max-size': { type: 'string' },
  'max-steps': { type: 'string' },
  'helper-url': { type: 'string' },
  'helper-model': { type: 'string' },
  json: { type: 'boolean', default: false },
} as const;

type Values = ReturnType<typeof parse<typeof OPTIONS>>['values'];

function episodeOptions(v: Values): EpisodeOptions & { fromSnapshot?: string } {
  let maxSteps: number | undefined;
  if (v['max-steps'] !== undefined) {
    maxSteps = Number(v['max-steps']);
    if (!Number.isInteger(maxSteps) || maxSteps < 1) throw new UsageError(`env: --max-steps must be a positive integer, got '${v['max-steps']}'`);
  }
  // SnapshotStore throws a TypeError (a stack trace) on an empty dir.
  if (v.store === '') throw new UsageError('env: --store must name a directory, got an empty string');
  const helperLlm = helperFromArgs('env', v['helper-url'], v['helper-model']);
  return {
    store: new SnapshotStore(v.store ?? path.join(mlagentHome(), 'states'), { maxBytes: storeMaxBytes('env', v['store-max-size']) }),
    helperLlm,
    maxSteps,
    fromSnapshot: v.state,
  };
}

/** Prepares the task and starts the episode; a bad task or state is the user's input, so a usage error. */
async function startEpisode(v: Values, opts: EpisodeOptions & { fromSnapshot?: string }): Promise<Episode> {
  let task: PreparedTask;
  try {
    task = await prepareTask(v.task!, { onProgress: (line) => process.stderr.write(`${line}\n`) });
  } catch (e) {
    throw new UsageError(`env: cannot load task '${v.task}': ${(e as Error).message}`);
  }
  try {
    return await Episode.start(task, opts);
  } catch (e) {
    throw new UsageError(`env: cannot start an episode of '${task.spec.name}': ${(e as Error).message}`);
  }
}

/** Reads a JSONL file of {"response": string} lines (blank lines skipped), naming the first bad line. */
function readResponses(file: string): string[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`env run: cannot read --responses ${file}: ${(e as Error).message}`);
  }
  const out: string[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch (e) {
      throw new UsageError(`env run: ${file} line ${i + 1} is not JSON: ${(e as Error).message}`);
    }
    const response = (obj as { response?: unknown } | null)?.response;
    if (typeof response !== 'string') throw new UsageError(`env run: ${file} line ${i + 1} must be {"response": "<model text>"}`);
    out.push(response);
  });
  return out;
}

function stepJson(r: StepResult): string {
  const { step, action, observation, outcome, metric, feedback, snapshotId } = r;
  return JSON.stringify({ step, action, observation, outcome, metric, feedback, snapshotId });
}

function stepText(r: StepResult): string {
  const metric = r.metric === null ? '' : `, metric ${r.metric}`;
  return `--- step ${r.step}: ${r.action ?? '(no valid action)'} -> ${r.outcome}${metric}${r.done ? ' (episode done)' : ''}\n${r.observation}\n`;
}

async function run(v: Values): Promise<void> {
  if (!v.responses) throw new UsageError(`env run: --responses FILE.jsonl is required\n${envUsage}`);
  const responses = readResponses(v.responses);
  if (responses.length === 0) throw new UsageError(`env run: ${v.responses} holds no responses`);
  const opts = episodeOptions(v);
  const ep = await startEpisode(v, opts);
  try {
    if (ep.done) {
      // A saved state can be an episode's last (its Final Answer, or its step limit when it was played).
      throw new UsageError(`env run: state ${v.state} ends its episode (after step ${ep.stepIndex}); nothing can be played from it`);
    }
    let played = 0;
    for (const response of responses) {
      if (ep.done) {
        process.stderr.write(`env run: the episode ended; ${responses.length - played} of ${responses.length} responses left unplayed\n`);
        break;
      }
      const r = await ep.step(response);
      played++;
      process.stdout.write(v.json ? `${stepJson(r)}\n` : stepText(r));
    }
    process.stderr.write(`final state: ${await ep.snapshot()} (store ${opts.store.dir})\n`);
  } finally {
    await ep.close();
  }
}

/** `Action Name {json}` on one line is short for the Action / Action Input fields. */
function expandShorthand(text: string): string {
  if (/^\s*[*#_ ]*action\s*:/im.test(text)) return text;
  const m = /^\s*([A-Za-z][A-Za-z ()]*?)\s*(\{[\s\S]*\})\s*$/.exec(text);
  return m ? `Action: ${m[1]}\nAction Input: ${m[2]}` : text;
}

async function shell(v: Values): Promise<void> {
  const opts = episodeOptions(v);
  const ep = await startEpisode(v, opts);
  const out = (s: string) => process.stdout.write(s);
  out(`${ep.messages()[1].content}\n\nType a response (fields, or "List Files {"dir_path": "."}"); an empty line sends it. :prompt, :state, :quit.\n`);
  const rl = createInterface({ input: process.stdin, terminal: false });
  let buffer: string[] = [];
  try {
    for await (const line of rl) {
      const cmd = line.trim();
      if (buffer.length === 0 && cmd.startsWith(':')) {
        if (cmd === ':quit') break;
        else if (cmd === ':prompt') out(`${ep.prompt()}\n`);
        else if (cmd === ':state') out(`state ${await ep.snapshot()}, step ${ep.stepIndex}, metric ${ep.currentMetric}\n`);
        else out(`unknown command ${cmd} (:prompt, :state, :quit)\n`);
        continue;
      }
      if (cmd !== '') {
        buffer.push(line);
        continue;
      }
      if (buffer.length === 0) continue;
      const r = await ep.step(expandShorthand(buffer.join('\n')));
      buffer = [];
      out(v.json ? `${stepJson(r)}\n` : stepText(r));
      if (ep.done) break;
    }
    if (buffer.length > 0 && !ep.done) {
      const r = await ep.step(expandShorthand(buffer.join('\n')));
      out(v.json ? `${stepJson(r)}\n` : stepText(r));
    }
    out(`final state: ${await ep.snapshot()}\n`);
  } finally {
    rl.close();
    await ep.close();
  }
}

export async function envCommand(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  if (sub === 'serve') return envServeCommand(rest);
  if (sub === 'states' || sub === 'prune') return envStatesCommand(sub, rest);
  if (sub !== 'run' && sub !== 'shell') throw new UsageError(`env: expected 'run', 'shell', 'serve', 'states' or 'prune', got ${sub === undefined ? 'nothing' : `'${sub}'`}\n${envUsage}`);
  const { values } = parse(`env ${sub}`, rest, OPTIONS);
  if (!values.task) throw new UsageError(`env ${sub}: --task NAME|DIR is required\n${envUsage}`);
  if (sub === 'run') await run(values);
  else await shell(values);
}
