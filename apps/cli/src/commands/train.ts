import { TrainConfigError, TrainInputError, TrainStoppedError, loadTrainConfig, trainPipeline, type TrainConfigInput } from '@mlagent/rl';
import { InterruptedError, UsageError, parse } from '../args.js';
import { numberArg } from '../policy-args.js';
import { REDIS_OPTIONS, REDIS_USAGE, remoteFromArgs } from '../remote-episodes.js';

export const trainUsage = `mlagent train (--preset tiny | --config FILE) [--out DIR] [--resume] [--model-preset tiny|mini|small]
          [--memory-budget GIB] [--redis URL [--queue NAME]]
  The whole method: scripted-expert collection on the collection tasks -> LoRA SFT -> step-wise PPO from the
  states pool -> evaluation of SFT-only vs SFT+RL on the eval tasks (held-in and held-out) -> DIR/report.html.
  --preset tiny   the embedded default: a random tiny Qwen2 from init-model and the tiny preset's small settings
  --config FILE   YAML/JSON training config (sections init, lora, sft, ppo, collection, eval; 'model' names a real model)
  --model-preset  size of the random model (overrides the config's init.size)
  --out DIR       run directory (default runs/train); every stage keeps its own subdirectory there
  --resume        continue an interrupted run in DIR (finished stages are reused, the others resume from checkpoints),
                  with the config it started with (DIR/train-config.json): another is refused, but for how the work
                  is split or saved (concurrency, batch splits, activation checkpointing, checkpoint frequency)
  --memory-budget GPU memory (GiB) the SFT and PPO memory plans must fit, checked before collecting when the config
                  names a model, again before SFT loads it, and before each PPO update, which takes the largest
                  micro-batch that fits unless ppo.microBatchSize is set (default: nvidia-smi's free memory)
${REDIS_USAGE}`;

export async function trainCommand(argv: string[]): Promise<void> {
  const { values } = parse('train', argv, {
    preset: { type: 'string' },
    config: { type: 'string' },
    out: { type: 'string', default: 'runs/train' },
    resume: { type: 'boolean', default: false },
    'model-preset': { type: 'string' },
    'memory-budget': { type: 'string' },
    ...REDIS_OPTIONS,
  });
  if (!values.preset && !values.config) throw new UsageError(`train: give --preset tiny or --config FILE\n${trainUsage}`);
  // An empty --out (an unset shell variable) would make the current directory the run directory.
  if (values.out === '') throw new UsageError('train: --out must name a directory, got an empty string');
  if (values.preset !== undefined && values.preset !== 'default' && values.preset !== 'tiny') throw new UsageError(`train: --preset must be default or tiny, got '${values.preset}'`);
  const modelPreset = values['model-preset'];
  if (modelPreset !== undefined && modelPreset !== 'tiny' && modelPreset !== 'mini' && modelPreset !== 'small') throw new UsageError(`train: --model-preset must be tiny, mini or small, got '${modelPreset}'`);
  const budgetGiB = numberArg('train', 'memory-budget', values['memory-budget'], { min: 0.001 });
  const remote = remoteFromArgs('train', values.redis, values.queue);
  const controller = new AbortController();
  const onSignal = () => {
    if (controller.signal.aborted) process.exit(130);
    process.stderr.write('\ntrain: stopping after the current step (Ctrl-C again to quit now; --resume continues)\n');
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  try {
    const overrides: TrainConfigInput = values.preset ? { preset: values.preset } : {};
    const config = values.config ? loadTrainConfig(values.config, overrides) : overrides;
    const memoryBudgetBytes = budgetGiB === undefined ? undefined : budgetGiB * 1024 ** 3;
    const r = await trainPipeline({ out: values.out!, config, resume: values.resume, modelPreset, signal: controller.signal, remote, memoryBudgetBytes });
    const rewards = r.ppo?.rewards ?? [];
    const fmt = (x: number | undefined) => (x === undefined ? '?' : x.toFixed(3));
    console.log(`train: PPO mean reward ${fmt(rewards[0])} (first iteration) -> ${fmt(rewards[rewards.length - 1])} (last of ${rewards.length})`);
    const val = r.ppo?.validation ?? [];
    if (val.length > 0) console.log(`train: PPO greedy reward at the validation states ${fmt(val[0].reward)} (iteration ${val[0].iteration}) -> ${fmt(val[val.length - 1].reward)} (iteration ${val[val.length - 1].iteration})`);
    console.log(`train: report in ${r.report}; stage seconds ${JSON.stringify(r.seconds)}`);
  } catch (e) {
    if (e instanceof TrainConfigError) throw new UsageError(`train: ${e.message}`);
    // Both messages start with "train: ".
    if (e instanceof TrainStoppedError) throw new InterruptedError(e.message);
    if (e instanceof TrainInputError) throw new UsageError(e.message);
    if (e instanceof Error && /^(train|ppo|sft): .*(already holds|--resume|not a collection)/.test(e.message)) throw new UsageError(e.message);
    throw e;
  } finally {
    process.off('SIGINT', onSignal);
    await remote?.close();
  }
}
