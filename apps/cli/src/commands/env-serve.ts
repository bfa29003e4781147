// mlagent env serve: the env's HTTP server (EnvServer) in the foreground until Ctrl-C.
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { EnvServer, SandboxPool, SnapshotStore, availableIsolation, mlagentHome } from '@mlagent/env';
import type { RewardVariant } from '@mlagent/reward';
import { CommandFailedError, UsageError, parse } from '../args.js';
import { helperFromArgs } from '../helper-args.js';
import { storeMaxBytes } from './env-states.js';

export const envServeUsage = `mlagent env serve [--port N] [--host H] [--store DIR] [--store-max-size SIZE] [--max-steps N] [--max-episodes N] [--idle-timeout SEC]
      [--concurrency C] [--reward v1|v2|milestones] [--helper-url URL --helper-model NAME]
  Serves episodes of the registered tasks as JSON over HTTP, for an agent or an RL trainer in any language:
  POST /v1/episodes {"task"}, then POST /v1/episodes/ID/step {"response"} answers with the step's result, its
  reward and the next turn's messages (the API and a Python client: packages/env/README.md, "HTTP server").
  --port (default 8765; 0 picks a free one) and --host (default 127.0.0.1; a client runs code in the sandbox, so
  another address needs $MLAGENT_ENV_TOKEN, a secret every request then sends as Authorization: Bearer TOKEN);
  --max-episodes open at once (default 16); an episode without a request for
  --idle-timeout seconds (default 1800) is closed; --concurrency Execute Script runs at once (default the CPUs);
  --reward: the reward variant each step is scored with (default v1, the paper's; see @mlagent/reward);
  --max-steps: the episodes' step limit (default 15), and the most a client's maxSteps may ask for;
  --store, --store-max-size and the helper model as for env run (GET /v1/states lists the store's states). Ctrl-C lets running
  steps finish, then closes every episode (a second Ctrl-C exits at once).`;

const OPTIONS = {
  port: { type: 'string', default: '8765' },
  host: { type: 'string', default: '127.0.0.1' },
  store: { type: 'string' },
  'store-max-size': { type: 'string' },
  'max-steps': { type: 'string' },
  'max-episodes': { type: 'string', default: '16' },
  'idle-timeout': { type: 'string', default: '1800' },
  concurrency: { type: 'string' },
  reward: { type: 'string', default: 'v1' },
  'helper-url': { type: 'string' },
  'helper-model': { type: 'string' },
} as const;

function integer(name: string, raw: string | undefined, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isInteger(n) || n < min || n > max) throw new UsageError(`env serve: --${name} must be an integer from ${min} to ${max}, got '${raw}'`);
  return n;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127(\.\d{1,3}){3}$/.test(host);
}

export async function envServeCommand(argv: string[]): Promise<void> {
  const { values: v } = parse('env serve', argv, OPTIONS);
  const port = integer('port', v.port, 0, 65535)!;
  const maxEpisodes = integer('max-episodes', v['max-episodes'], 1)!;
  const maxSteps = integer('max-steps', v['max-steps'], 1);
  const concurrency = integer('concurrency', v.concurrency, 1) ?? availableParallelism();
  const idle = Number(v['idle-timeout']);
  if (v['idle-timeout']!.trim() === '' || !(idle > 0) || !Number.isFinite(idle)) throw new UsageError(`env serve: --idle-timeout must be a number of seconds > 0, got '${v['idle-timeout']}'`);
  if (v.store === '') throw new UsageError('env serve: --store must name a directory, got an empty string');
  const variant = v.reward as RewardVariant;
  if (!['v1', 'v2', 'milestones'].includes(variant)) throw new UsageError(`env serve: --reward must be v1, v2 or milestones, got '${v.reward}'`);
  if (v.host!.trim() === '') throw new UsageError('env serve: --host must name an address, got an empty string');
  const token = process.env.MLAGENT_ENV_TOKEN || undefined;
  // Anyone who reaches the server runs code in the sandbox and reads hidden scores: beyond this machine, only with a token.
  if (token === undefined && !isLoopback(v.host!))
    throw new UsageError(`env serve: --host ${v.host} can be reached from other machines; set MLAGENT_ENV_TOKEN to a secret first (clients then send Authorization: Bearer TOKEN)`);

  const store = new SnapshotStore(v.store ?? path.join(mlagentHome(), 'states'), { maxBytes: storeMaxBytes('env serve', v['store-max-size']) });
  const helperLlm = helperFromArgs('env serve', v['helper-url'], v['helper-model']);
  let server: EnvServer;
  try {
    server = await EnvServer.listen(
      { episode: { store, helperLlm, maxSteps, pool: new SandboxPool(concurrency) }, maxEpisodes, idleTimeoutSec: idle, token, reward: { variant }, log: (line) => process.stderr.write(`${line}\n`) },
      { port, host: v.host },
    );
  } catch (e) {
    throw new CommandFailedError(`env serve: cannot listen on ${v.host}:${port}: ${(e as Error).message}`);
  }
  // Without a network namespace the agent's scripts could call this server (list episodes, read their metrics).
  if (!(await availableIsolation()).some((level) => level !== 'none'))
    process.stderr.write('env serve: warning: the sandbox has no network namespace on this machine (isolation none), so code the agent runs can reach this server\n');
  console.log(`listening on ${server.url} (store ${store.dir}${token ? '; requests need MLAGENT_ENV_TOKEN' : ''}; Ctrl-C stops)`);
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) process.exit(130);
      stopping = true;
      process.stderr.write(`env serve: ${signal}: finishing running steps, closing ${server.openEpisodes} open episodes (${signal} again exits now)\n`);
      void server.close().then(resolve);
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
  });
  process.stderr.write('env serve: stopped\n');
}
