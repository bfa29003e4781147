import { DEFAULT_MAX_QUEUED, assertFits, createOpenAIServer, loadQwenConfig, planMemory, readPeftConfig } from '@mlagent/policy';
import { UsageError, parse } from '../args.js';
import { MODEL_OPTIONS, MODEL_USAGE, checkModelArgs, loadPolicy, numberArg, parseTemplate } from '../policy-args.js';

export const serveUsage = `mlagent serve --model DIR [--adapter DIR] --port P [--host H] [--name ID] [--template hf|ml-agent] [--max-tokens N] [--memory-budget GIB] [--max-queued N]
  An OpenAI-compatible HTTP server: POST /v1/chat/completions (stream: true for server-sent events),
  POST /v1/completions, GET /v1/models. One request generates at a time; n choices and several prompts run as one
  batch. --host defaults to 127.0.0.1, --port 0 picks a free port; the first stdout line is "listening on URL".
  --max-tokens is the default for requests that give none (512); --memory-budget refuses requests whose memory
  plan exceeds that many GiB; --max-queued requests may wait behind the one generating (default 256), one more
  gets a 429 with Retry-After. Stops on SIGINT/SIGTERM.
${MODEL_USAGE}`;

export async function serveCommand(argv: string[]): Promise<void> {
  const cmd = 'serve';
  const { values } = parse(cmd, argv, {
    ...MODEL_OPTIONS,
    port: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    name: { type: 'string', default: 'policy' },
    template: { type: 'string', default: 'hf' },
    'max-tokens': { type: 'string', default: '512' },
    'memory-budget': { type: 'string' },
    'max-queued': { type: 'string', default: String(DEFAULT_MAX_QUEUED) },
  });
  checkModelArgs(cmd, values, serveUsage);
  if (values.port === undefined) throw new UsageError(`${cmd}: --port P is required\n${serveUsage}`);
  const port = numberArg(cmd, 'port', values.port, { max: 65535, integer: true })!;
  const defaultMaxTokens = numberArg(cmd, 'max-tokens', values['max-tokens'], { min: 1, integer: true })!;
  const budgetGiB = numberArg(cmd, 'memory-budget', values['memory-budget'], { min: 0 });
  const maxQueued = numberArg(cmd, 'max-queued', values['max-queued'], { min: 0, integer: true })!;
  const chatTemplate = parseTemplate(cmd, values.template);
  // Node listens on every interface for an empty host, not on the default 127.0.0.1.
  if (values.host.trim() === '') throw new UsageError(`${cmd}: --host must name an address (default 127.0.0.1), got an empty string`);

  if (budgetGiB !== undefined) {
    // A budget that not even a one-token answer fits would start a server that refuses every request. Planned from
    // config.json and the adapter's config, so a 7B model is not loaded first only to be refused.
    let adapter;
    try {
      adapter = values.adapter === undefined ? undefined : readPeftConfig(values.adapter);
    } catch (e) {
      throw new UsageError(`${cmd}: --adapter ${values.adapter}: ${(e as Error).message}`);
    }
    const plan = planMemory(loadQwenConfig(values.model!), { batch: 1, seqLen: 2, dtype: values.dtype as 'f32' | 'f16', kvCache: true, lora: adapter && { r: adapter.r, targets: adapter.targetModules } });
    try {
      assertFits(plan, { budgetBytes: budgetGiB * 1024 ** 3 });
    } catch (e) {
      throw new UsageError(`${cmd}: --memory-budget ${budgetGiB} GiB cannot hold even a one-token answer: ${(e as Error).message}`);
    }
  }
  const policy = await loadPolicy(cmd, values);
  const server = createOpenAIServer(policy.model, policy.tokenizer, {
    modelName: values.name,
    chatTemplate,
    defaultMaxTokens,
    memoryBudgetBytes: budgetGiB === undefined ? undefined : budgetGiB * 1024 ** 3,
    maxQueued,
    log: (line) => process.stderr.write(`${new Date().toISOString()} ${line}\n`),
  });
  let url: string;
  try {
    url = await server.listen(port, values.host);
  } catch (e) {
    policy.close();
    throw new UsageError(`${cmd}: cannot listen on ${values.host}:${port}: ${(e as Error).message}`);
  }
  console.log(`listening on ${url} (model '${values.name}')`);
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      process.stderr.write(`${signal}: shutting down\n`);
      void server.close().finally(resolve);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  policy.close();
}
