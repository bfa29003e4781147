import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import {
  DAWN_FLAGS,
  Gpu,
  mergeDawnFlags,
  allBenches,
  findTorchPython,
  runBenchmarks,
  selectCases,
  torchTimings,
  TorchSession,
  type BenchResult,
} from '@mlagent/core-kernels';
import { UsageError, checkOutputFile, parse } from '../args.js';
import { benchPolicy, benchPolicyUsage } from './bench-policy.js';

export const benchUsage = `mlagent bench kernels [--json] [--filter NAME[,NAME]] [--all] [--no-torch] [--unpaired] [--rounds N] [--iterations N] [--check] [--out FILE]
  Times each kernel at LLM shapes and, in the same run, the same computation in PyTorch
  (wherever a python3 with torch is found; $MLAGENT_PYTHON overrides). ratio = our throughput / torch's.
  Paired by default: each case alternates our iterations and torch's for --rounds rounds (default 5) and the
  ratio is the median of the rounds' ratios, so a shared machine's drift moves it little; --unpaired times
  every case of ours first, then torch's in one batch (the older way). --iterations N fixes the timed
  iterations per case (paired: per side per round) instead of about 1 s (paired: 0.2 s a side a round).
  --filter keeps the cases whose family or name contains one of the comma-separated NAMEs; =NAME keeps the
  case of exactly that name (not its variants, whose names it begins).
  On a software adapter (lavapipe) the CPU-sized cases run; on a GPU the 7B-sized ones. --all runs both.
  --check: after timing a case, run it once more and compare a sample of its output with float64 recomputed
  from its inputs, at the case's own shape and path; the table gains a check column, and the command exits 1
  when any case is wrong. --out FILE is rewritten after every case.
${benchPolicyUsage}`;

export interface BenchReport {
  command: string;
  date: string;
  adapter: string;
  host: string;
  torch: string;
  timer: string;
  results: BenchResult[];
}

export async function bench(argv: string[]): Promise<void> {
  const [what, ...rest] = argv;
  if (what === 'policy') return benchPolicy(rest);
  if (what !== 'kernels') throw new UsageError(`bench: ${what === undefined ? 'missing target: kernels or policy' : `unknown target '${what}' (kernels or policy)`}\n${benchUsage}`);
  const { values } = parse('bench kernels', rest, {
    json: { type: 'boolean', default: false },
    filter: { type: 'string' },
    all: { type: 'boolean', default: false },
    'no-torch': { type: 'boolean', default: false },
    unpaired: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    iterations: { type: 'string' },
    check: { type: 'boolean', default: false },
    out: { type: 'string' },
  });
  const iterations = values.iterations === undefined ? undefined : Number(values.iterations);
  if (iterations !== undefined && (!Number.isInteger(iterations) || iterations < 1)) {
    throw new UsageError(`bench kernels: --iterations must be a positive integer, got '${values.iterations}'`);
  }
  const rounds = values.rounds === undefined ? undefined : Number(values.rounds);
  if (rounds !== undefined && (!Number.isInteger(rounds) || rounds < 1)) {
    throw new UsageError(`bench kernels: --rounds must be a positive integer, got '${values.rounds}'`);
  }
  if (rounds !== undefined && (values.unpaired || values['no-torch'])) {
    throw new UsageError('bench kernels: --rounds applies to paired timing only (not with --unpaired or --no-torch)');
  }
  if (values.out !== undefined) checkOutputFile('bench kernels', 'out', values.out);
  const filter = values.filter?.split(',').filter(Boolean);
  const gpu = await Gpu.create();
  const opts = { filter, all: values.all, iterations, check: values.check };
  const cases = selectCases(gpu, allBenches, opts);
  if (cases.length === 0) throw new UsageError(`bench kernels: no case matches --filter ${values.filter}`);
  const log = (s: string) => process.stderr.write(s + '\n');
  log(`benchmarking ${cases.length} cases on ${describeAdapter(gpu)}`);
  const python = values['no-torch'] ? undefined : findTorchPython();
  let torchDevice = values['no-torch'] ? 'not measured (--no-torch)' : 'not measured: no python3 with torch found';
  const session = python && !values.unpaired ? await TorchSession.start(python) : undefined;
  if (session) {
    torchDevice = `${session.device}; paired, ${rounds ?? 5} alternating rounds per case, ratio = median of the rounds' ratios`;
    log(`timing each case against PyTorch (${python}) in ${rounds ?? 5} alternating rounds`);
  }
  const report: BenchReport = {
    command: `mlagent bench kernels ${rest.join(' ')}`.trim(),
    date: new Date().toISOString(),
    adapter: describeAdapter(gpu),
    host: `${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}`,
    torch: torchDevice,
    timer: gpu.features.timestampQuery ? 'gpu-timestamps' : 'wall',
    results: [],
  };
  const render = () => (values.json ? JSON.stringify(report, null, 2) : markdown(report));
  // --out is rewritten after every case, so a run stopped by a time limit keeps what it measured.
  const save = () => values.out && writeFileSync(values.out, render() + '\n');
  try {
    report.results = await runBenchmarks(gpu, cases, {
      ...opts,
      torch: session,
      rounds,
      onResult: (r, i, n) => {
        log(`[${i + 1}/${n}] ${r.name.padEnd(44)} ${r.skipped ?? `${fmt(r.ms)} ms${rate(r)}${r.ratio === undefined ? '' : `  ${r.ratio.toFixed(2)}x torch`}${r.check ? `  ${checkCell(r)}` : ''}`}`);
        report.results.push(r);
        save();
      },
    });
  } finally {
    session?.close();
    gpu.destroy();
  }
  const results = report.results;
  for (const r of results) if (r.torchError) log(`torch failed on ${r.name}: ${r.torchError}`);
  if (python && values.unpaired) {
    log(`timing the same cases in PyTorch (${python}) ...`);
    const t = torchTimings(cases.filter((c) => !results.find((r) => r.name === c.name)?.skipped), python);
    report.torch = `${t?.device ?? 'none'}; unpaired (all of ours, then all of torch's)`;
    for (const r of results) {
      const ms = t?.ms.get(r.name);
      if (ms === undefined || !Number.isFinite(r.ms)) continue;
      r.torchMs = ms;
      r.torchDevice = report.torch;
      r.ratio = ms / r.ms;
    }
    for (const [name, err] of t?.errors ?? []) log(`torch failed on ${name}: ${err}`);
  }
  save();
  console.log(render());
  const wrong = results.filter((r) => r.check && !r.check.ok);
  if (wrong.length > 0) {
    log(`WRONG results (sampled error over its bound) in ${wrong.length} case(s): ${wrong.map((r) => r.name).join('; ')}`);
    process.exitCode = 1;
  }
}

/** A check's outcome: its error, and WRONG with the bound where it is over. */
function checkCell(r: BenchResult): string {
  if (!r.check) return '-';
  const err = r.check.err === Infinity ? 'inf' : r.check.err.toExponential(1);
  return r.check.ok ? `err ${err}` : `WRONG: err ${err} > ${r.check.tol}`;
}

function describeAdapter(gpu: Gpu): string {
  const a = gpu.adapter;
  const name = [a.description || a.device, a.vendor, a.architecture].filter(Boolean).join(' / ');
  // Non-default Dawn flags (MLAGENT_DAWN_TOGGLES) change what is timed, so they travel with the figures.
  const flags = a.dawnFlags.join(' ');
  return flags === mergeDawnFlags(DAWN_FLAGS).join(' ') ? name : `${name} [${flags}]`;
}

function fmt(x: number | undefined, digits = 3): string {
  if (x === undefined || !Number.isFinite(x)) return '-';
  return x >= 100 ? x.toFixed(0) : x.toPrecision(digits);
}

function rate(r: BenchResult): string {
  if (r.gflops !== undefined) return `  ${fmt(r.gflops)} GFLOP/s`;
  if (r.gbps !== undefined) return `  ${fmt(r.gbps)} GB/s`;
  return '';
}

/** The ratio, and for paired timing the range of the rounds' ratios. */
function ratioCell(r: BenchResult): string {
  if (r.ratio === undefined) return '-';
  const range = r.ratioRange ? ` (rounds ${r.ratioRange[0].toFixed(2)}–${r.ratioRange[1].toFixed(2)})` : '';
  return `${r.ratio.toFixed(2)}x${range}`;
}

export function markdown(rep: BenchReport): string {
  const checked = rep.results.some((r) => r.check);
  const head = [
    `Command: \`${rep.command}\`  `,
    `Date: ${rep.date}  `,
    `Adapter: ${rep.adapter}; host: ${rep.host}  `,
    `Reference: ${rep.torch}; our times from ${rep.timer}  `,
    '',
    `| family | case | ms | GFLOP/s | GB/s | torch ms | ratio (ours/torch throughput) |${checked ? ' check |' : ''}`,
    `|---|---|---:|---:|---:|---:|---:|${checked ? '---|' : ''}`,
  ];
  const rows = rep.results.map((r) =>
    r.skipped
      ? `| ${r.family} | ${r.name} | skipped: ${r.skipped} | | | | |${checked ? ' |' : ''}`
      : `| ${r.family} | ${r.name} | ${fmt(r.ms)} | ${fmt(r.gflops)} | ${fmt(r.gbps)} | ${fmt(r.torchMs)} | ${ratioCell(r)} |${checked ? ` ${checkCell(r)} |` : ''}`,
  );
  return [...head, ...rows].join('\n');
}
