import { existsSync } from 'node:fs';
import { SftDataError, TrainConfigError, loadTrainConfig, sft, type TrainConfigInput } from '@mlagent/rl';
import { InterruptedError, UsageError, parse } from '../args.js';
import { checkModelDir, numberArg } from '../policy-args.js';

export const sftUsage = `mlagent sft --model DIR --data FILE --out DIR [--config FILE] [--preset default|tiny] [--resume] [--memory-budget GIB]
  LoRA SFT on assistant tokens only. FILE: .jsonl/.json of {prompt, response}, {messages} or ShareGPT {conversations}.
  Writes DIR/adapter (PEFT), DIR/metrics.jsonl, DIR/tb, DIR/checkpoints (one per epoch); --resume continues the
  newest checkpoint in DIR. The config's lora, sft, seed and dtype apply (see @mlagent/rl's README). Before loading
  the model it logs the memory its largest micro-batch needs and refuses a run the device cannot hold (its free
  memory from nvidia-smi, or --memory-budget GiB).`;

export async function sftCommand(argv: string[]): Promise<void> {
  const { values } = parse('sft', argv, {
    model: { type: 'string' },
    data: { type: 'string' },
    out: { type: 'string' },
    config: { type: 'string' },
    preset: { type: 'string' },
    resume: { type: 'boolean', default: false },
    'memory-budget': { type: 'string' },
  });
  for (const k of ['model', 'data', 'out'] as const) if (!values[k]) throw new UsageError(`sft: --${k} is required\n${sftUsage}`);
  if (values.preset !== undefined && values.preset !== 'default' && values.preset !== 'tiny') throw new UsageError('sft: --preset must be default or tiny');
  const budgetGiB = numberArg('sft', 'memory-budget', values['memory-budget'], { min: 0.001 });
  checkModelDir('sft', values.model!);
  if (!existsSync(values.data!)) throw new UsageError(`sft: --data ${values.data} does not exist`);
  const controller = new AbortController();
  const onSignal = () => {
    if (controller.signal.aborted) process.exit(130);
    process.stderr.write('\nsft: stopping after this step, which is saved (Ctrl-C again to quit now; --resume continues from the last checkpoint)\n');
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  try {
    const overrides: TrainConfigInput = values.preset ? { preset: values.preset } : {};
    const config = values.config ? loadTrainConfig(values.config, overrides) : overrides;
    const r = await sft({ modelDir: values.model!, data: values.data!, out: values.out!, config, resume: values.resume, signal: controller.signal, memoryBudgetBytes: budgetGiB === undefined ? undefined : budgetGiB * 1024 ** 3 });
    const evalText = r.evalLoss !== null ? `, held-out loss ${r.initialEvalLoss?.toFixed(4) ?? '?'} -> ${r.evalLoss.toFixed(4)}` : '';
    if (r.stopped) throw new InterruptedError(`sft: stopped at step ${r.steps} of ${r.totalSteps}, saved as a checkpoint; run again with --resume to continue`);
    console.log(`sft: ${r.steps} steps, ${r.examples.train} train / ${r.examples.eval} held-out examples, last loss ${r.trainLoss.toFixed(4)}${evalText}; adapter in ${r.adapterDir}`);
  } catch (e) {
    // Bad configs, bad data and output-directory conflicts are the user's to fix: no stack trace.
    if (e instanceof InterruptedError) throw e;
    if (e instanceof TrainConfigError || e instanceof SftDataError) throw new UsageError(`sft: ${e.message}`);
    if (e instanceof Error && e.message.startsWith('sft: ')) throw new UsageError(e.message);
    throw e;
  } finally {
    process.off('SIGINT', onSignal);
  }
}
