import { NonFiniteError, StopTextStream, defaultStopTokenIds, generate, loadQwenConfig } from '@mlagent/policy';
import { UsageError, parse } from '../args.js';
import { MODEL_OPTIONS, MODEL_USAGE, checkModelArgs, explainNonFinite, loadPolicy, loadTokenizer, numberArg, parseTemplate, readChatFile } from '../policy-args.js';

export const generateUsage = `mlagent generate --model DIR [--adapter DIR] (--prompt TEXT | --chat FILE.json) [--max-new-tokens N] [--temperature T] [--seed S] [--template hf|ml-agent] [--json]
  Samples a continuation of --prompt, or an assistant reply to the --chat messages (a JSON list of {role, content}
  rendered with the model's chat template, or the ML-Agent one with --template ml-agent). Stops at an end-of-turn
  token or after --max-new-tokens (default 64, or what the model's context leaves after the prompt if less).
  --temperature 0 is greedy (default 1). Text streams to stdout; --json prints {prompt_ids, ids, text, logprobs,
  finish_reason} instead.
${MODEL_USAGE}`;

export async function generateCommand(argv: string[]): Promise<void> {
  const cmd = 'generate';
  const { values } = parse(cmd, argv, {
    ...MODEL_OPTIONS,
    prompt: { type: 'string' },
    chat: { type: 'string' },
    // No default here: an explicit value that does not fit the context is an error, the default is cut to fit.
    'max-new-tokens': { type: 'string' },
    temperature: { type: 'string', default: '1' },
    seed: { type: 'string' },
    template: { type: 'string', default: 'hf' },
    json: { type: 'boolean', default: false },
  });
  checkModelArgs(cmd, values, generateUsage);
  if ((values.prompt === undefined) === (values.chat === undefined)) throw new UsageError(`${cmd}: give exactly one of --prompt TEXT or --chat FILE.json\n${generateUsage}`);
  const maxNewTokensArg = numberArg(cmd, 'max-new-tokens', values['max-new-tokens'], { min: 1, integer: true });
  const temperature = numberArg(cmd, 'temperature', values.temperature)!;
  const seed = numberArg(cmd, 'seed', values.seed, { max: 2 ** 32 - 1, integer: true });
  const template = parseTemplate(cmd, values.template);
  const messages = values.chat === undefined ? undefined : readChatFile(cmd, values.chat);
  if (values.prompt === '') throw new UsageError(`${cmd}: --prompt is empty`);

  // The prompt is checked against the context before any weights are loaded.
  const tokenizer = loadTokenizer(cmd, values.model!);
  const text = messages ? tokenizer.applyChatTemplate(messages, { template, addGenerationPrompt: true }) : values.prompt!;
  const promptIds = tokenizer.encode(text);
  const { vocabSize: V, maxPositionEmbeddings } = loadQwenConfig(values.model!);
  const promptFlag = messages ? '--chat' : '--prompt';
  const bad = promptIds.find((id) => id >= V);
  if (bad !== undefined) throw new UsageError(`${cmd}: ${promptFlag} encodes to token id ${bad}, outside this model's vocabulary [0, ${V})`);
  const maxNewTokens = fitContext(promptIds.length, maxPositionEmbeddings, maxNewTokensArg, promptFlag);

  const { model, close } = await loadPolicy(cmd, values, tokenizer);
  try {
    const decode = (ids: number[]) => tokenizer.decode(ids, { skipSpecialTokens: true });
    const stream = new StopTextStream(decode, []);
    const sampled: number[] = [];
    const [r] = await generate(model, [promptIds], {
      maxNewTokens,
      temperature,
      seed,
      stopTokenIds: defaultStopTokenIds(model.config, tokenizer),
      onToken: values.json
        ? undefined
        : (_b, id) => {
            sampled.push(id);
            process.stdout.write(stream.push(sampled));
          },
    }).catch((e: unknown) => {
      throw e instanceof NonFiniteError ? explainNonFinite(values, e) : e;
    });
    if (values.json) {
      console.log(JSON.stringify({ prompt_ids: promptIds, ids: r.ids, text: decode(r.ids), logprobs: r.logprobs, finish_reason: r.finishReason }));
    } else {
      process.stdout.write(stream.finish(r.ids) + '\n');
      process.stderr.write(`[${r.ids.length} tokens, finish_reason: ${r.finishReason}]\n`);
    }
  } finally {
    close();
  }
}

const DEFAULT_MAX_NEW_TOKENS = 64;

/**
 * --max-new-tokens for a prompt of `promptLen` tokens in a `context`-token model: as given if it fits (else a usage
 * error), the default cut to what the context leaves (said on stderr), as `mlagent serve` treats max_tokens.
 */
function fitContext(promptLen: number, context: number, given: number | undefined, promptFlag: string): number {
  const room = context - promptLen;
  if (room < 1) throw new UsageError(`generate: the prompt has ${promptLen} tokens, which leaves no room in the model's ${context}-token context; shorten ${promptFlag}`);
  if (given === undefined) {
    if (room >= DEFAULT_MAX_NEW_TOKENS) return DEFAULT_MAX_NEW_TOKENS;
    process.stderr.write(`generate: --max-new-tokens ${room}, what the model's ${context}-token context leaves after the ${promptLen}-token prompt (default ${DEFAULT_MAX_NEW_TOKENS})\n`);
    return room;
  }
  if (given > room) {
    throw new UsageError(`generate: prompt (${promptLen} token${promptLen === 1 ? '' : 's'}) + --max-new-tokens ${given} exceed the model's ${context}-token context; lower --max-new-tokens to at most ${room}`);
  }
  return given;
}
