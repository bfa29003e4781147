import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { writeReport } from '@mlagent/rl';
import { UsageError, suggestOption } from '../args.js';

export const reportUsage = `mlagent report RUN_DIR [--out FILE] [--title TEXT] [--sft DIR]
  Renders RUN_DIR/metrics.jsonl (training curves, per task when tagged) and RUN_DIR/eval*.json (tables) into one
  self-contained HTML page, RUN_DIR/report.html unless --out says otherwise. For a run of mlagent train, RUN_DIR is
  its ppo/ directory. --sft DIR adds an SFT output directory's loss curves, held-out loss and format probe.`;

export async function reportCommand(argv: string[]): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { out: { type: 'string' }, title: { type: 'string' }, sft: { type: 'string' } }, strict: true, allowPositionals: true });
  } catch (e) {
    throw new UsageError(`report: ${(e as Error).message}${suggestOption(e, ['out', 'title', 'sft'])}`);
  }
  const { values, positionals } = parsed;
  if (positionals.length !== 1) throw new UsageError(`report: give exactly one RUN_DIR\n${reportUsage}`);
  if (values.sft !== undefined) checkSftDir(values.sft);
  if (values.out !== undefined) checkOut(values.out);
  warnUnreadableEvals(positionals[0]);
  try {
    const out = writeReport(positionals[0], values.out, { title: values.title, sftDir: values.sft });
    console.log(`wrote ${out}`);
  } catch (e) {
    const message = (e as Error).message;
    throw new UsageError(message.startsWith('report: ') ? message : `report: ${message}`);
  }
}

/** The page replaces --out: an existing file that is not a page (the run's metrics.jsonl, an eval.json) would be lost. */
function checkOut(out: string): void {
  if (out === '') throw new UsageError('report: --out must name the HTML file to write, got an empty string');
  if (!existsSync(out)) return;
  if (statSync(out).isDirectory()) throw new UsageError(`report: --out ${out} is a directory; name the HTML file to write`);
  if (!/\.html?$/i.test(out)) throw new UsageError(`report: --out ${out} exists and is not an .html page, and the report would replace it; choose another name`);
}

/** --sft must name an SFT output directory: a typo would otherwise give a page that just has no SFT section. */
function checkSftDir(dir: string): void {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UsageError(`report: --sft ${dir} is not a directory`);
  if (!['metrics.jsonl', 'sft-summary.json', 'adapter'].some((f) => existsSync(path.join(dir, f)))) {
    throw new UsageError(`report: --sft ${dir} holds no SFT output (metrics.jsonl, sft-summary.json or adapter/)`);
  }
}

/** The page shows an unreadable eval*.json in place of its table; the terminal should hear of it too. */
function warnUnreadableEvals(runDir: string): void {
  if (!existsSync(runDir) || !statSync(runDir).isDirectory()) return; // writeReport names the problem
  // Same files and reading as the page (case-insensitive, BOM allowed), so the warning matches what it shows.
  for (const f of readdirSync(runDir).filter((n) => /^eval.*\.json$/i.test(n) && n !== 'eval-run.json')) {
    try {
      // The page refuses result files over 64 MiB; parsing one here first could exhaust memory.
      if (statSync(path.join(runDir, f)).size > 64 * 2 ** 20) throw new Error('over 64 MiB');
      JSON.parse(readFileSync(path.join(runDir, f), 'utf8').replace(/^\uFEFF/, ''));
    } catch (e) {
      process.stderr.write(`report: warning: ${path.join(runDir, f)} is not readable JSON (${(e as Error).message}); the page says so in its place\n`);
    }
  }
}
