import { parseArgs } from 'node:util';
import { writeReport } from '@mlagent/rl';
import { UsageError } from '../args.js';

export const reportUsage = `mlagent report RUN_DIR [--out FILE] [--title TEXT] [--sft DIR]
  Renders RUN_DIR/metrics.jsonl (training curves, per task when tagged) and RUN_DIR/eval*.json (tables) into one
  self-contained HTML page, RUN_DIR/report.html unless --out says otherwise. For a run of mlagent train, RUN_DIR is
  its ppo/ directory. --sft DIR adds an SFT output directory's loss curves, held-out loss and format probe.`;

export async function reportCommand(argv: string[]): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { out: { type: 'string' }, title: { type: 'string' }, sft: { type: 'string' } }, strict: true, allowPositionals: true });
  } catch (e) {
    throw new UsageError(`report: ${(e as Error).message}`);
  }
  const { values, positionals } = parsed;
  if (positionals.length !== 1) throw new UsageError(`report: give exactly one RUN_DIR\n${reportUsage}`);
  try {
    const out = writeReport(positionals[0], values.out, { title: values.title, sftDir: values.sft });
    console.log(`wrote ${out}`);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}
