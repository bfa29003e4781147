import { StopTextStream, defaultStopTokenIds, generate } from '@mlagent/policy';
import { UsageError, parse } from '../args.js';
import { MODEL_OPTIONS, MODEL_USAGE, checkModelArgs, loadPolicy, numberArg, parseTemplate, readChatFile } from '../policy-args.js';

export const generateUsage = `mlagent generate --model DIR [--adapter DIR] (--prompt TEXT | --chat FILE.json) [--max-new-tokens N] [--temperature T] [--seed S] [--template hf|ml-agent] [--json]
  Samples a continuation of --prompt, or an assistant reply to the --chat messages (a JSON list of {role, content}
  rendered with the model's chat template, or the ML-Agent one with --template ml-agent). Stops at an end-of-turn
  token or after --max-new-tokens (default 64). --temperature 0 is greedy (default 1). Text streams to stdout;
  --json prints {prompt_ids, ids, text, logprobs, finish_reason} instead.
${MODEL_USAGE}`;

export async function generateCommand(argv: string[]): Promise<void> {
  const cmd = 'generate';
  const { values } = parse(cmd, argv, {
    ...MODEL_OPTIONS,
    prompt: { type: 'string' },
    chat: { type: 'string' },
    'max-new-tokens': { type: 'string', default: '64' },
    temperature: { type: 'string', default: '1' },
    seed: { type: 'string' },
    template: { type: 'string', default: 'hf' },
    json: { type: 'boolean', default: false },
  });
  checkModelArgs(cmd, values, generateUsage);
  if ((values.prompt === undefined) === (values.chat === undefined)) throw new UsageError(`${cmd}: give exactly one of --prompt TEXT or --chat FILE.json\n${generateUsage}`);
  const maxNewTokens = numberArg(cmd, 'max-new-tokens', values['max-new-tokens'], { min: 1, integer: true })!;
  const temperature = numberArg(cmd, 'temperature', values.temperature)!;
  const seed = numberArg(cmd, 'seed', values.seed, { max: 2 ** 32 - 1, integer: true });
  const template = parseTemplate(cmd, values.template);
  const messages = values.chat === undefined ? undefined : readChatFile(cmd, values.chat);
  if (values.prompt === '') throw new UsageError(`${cmd}: --prompt is empty`);

  const { model, tokenizer, close } = await loadPolicy(cmd, values);
  try {
    const text = messages ? tokenizer.applyChatTemplate(messages, { template, addGenerationPrompt: true }) : values.prompt!;
    const promptIds = tokenizer.encode(text);
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
