import { NonFiniteError, loadQwenConfig, sequenceLogprobs } from '@mlagent/policy';
import { UsageError, parse } from '../args.js';
import { MODEL_OPTIONS, MODEL_USAGE, checkModelArgs, explainNonFinite, loadPolicy, loadTokenizer } from '../policy-args.js';

export const logprobsUsage = `mlagent logprobs --model DIR [--adapter DIR] (--text TEXT | --ids 1,2,3) [--json]
  Scores a token sequence: logprobs[i] = log p(ids[i] | ids[<i]), null for the first. --text is tokenized with
  the model's tokenizer, no special tokens added. --json prints {"ids": [...], "logprobs": [...]}; otherwise one
  line per token (position, id, token, logprob).
${MODEL_USAGE}`;

export async function logprobsCommand(argv: string[]): Promise<void> {
  const cmd = 'logprobs';
  const { values } = parse(cmd, argv, {
    ...MODEL_OPTIONS,
    text: { type: 'string' },
    ids: { type: 'string' },
    json: { type: 'boolean', default: false },
  });
  checkModelArgs(cmd, values, logprobsUsage);
  if ((values.text === undefined) === (values.ids === undefined)) throw new UsageError(`${cmd}: give exactly one of --text TEXT or --ids 1,2,3\n${logprobsUsage}`);
  let ids: number[] | undefined;
  if (values.ids !== undefined) {
    const parts = values.ids.split(',').map((s) => s.trim());
    const bad = parts.find((s) => !/^\d+$/.test(s));
    if (bad !== undefined) throw new UsageError(`${cmd}: --ids must be comma-separated non-negative integers; '${bad}' is not one`);
    ids = parts.map(Number);
  }
  const { vocabSize: V, maxPositionEmbeddings: context } = loadQwenConfig(values.model!);
  const outsideVocab = (xs: number[]) => {
    const bad = xs.find((id) => id >= V);
    if (bad !== undefined) throw new UsageError(`${cmd}: token id ${bad} is outside this model's vocabulary [0, ${V})`);
  };
  // The sequence is checked before any weights are loaded.
  const tokenizer = loadTokenizer(cmd, values.model!);
  ids ??= tokenizer.encode(values.text!, { addSpecialTokens: false });
  if (ids.length === 0) throw new UsageError(`${cmd}: --text encodes to no tokens`);
  outsideVocab(ids);
  if (ids.length > context) {
    throw new UsageError(`${cmd}: the sequence has ${ids.length} tokens, more than the model's ${context}-token context; shorten ${values.ids !== undefined ? '--ids' : '--text'}`);
  }

  const { model, close } = await loadPolicy(cmd, values, tokenizer);
  try {
    const [r] = await sequenceLogprobs(model, [ids]).catch((e: unknown) => {
      throw e instanceof NonFiniteError ? explainNonFinite(values, e) : e;
    });
    if (values.json) {
      console.log(JSON.stringify({ ids, logprobs: r.logprobs }));
      return;
    }
    ids.forEach((id, i) => {
      const lp = r.logprobs[i];
      console.log(`${i}\t${id}\t${JSON.stringify(tokenizer.decode([id]))}\t${lp === null ? '-' : lp.toFixed(4)}`);
    });
    const total = r.logprobs.reduce<number>((s, x) => s + (x ?? 0), 0);
    console.log(`sum ${total.toFixed(4)} over ${ids.length - 1} predicted tokens`);
  } finally {
    close();
  }
}
