import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Gpu, findTorchPython } from '@mlagent/core-kernels';
import { QwenModel, initModel, timeGeneration, torchGenerationTiming, type GenerationTiming, type ModelPreset, type QwenArch } from '@mlagent/policy';
import { UsageError, parse } from '../args.js';

export const benchPolicyUsage = `mlagent bench policy [--presets tiny,small] [--arch qwen2|qwen3] [--batch 1,4] [--prompt-len N] [--new-tokens N] [--iterations N] [--no-torch] [--json] [--out FILE]
  Prefill and decode tokens/s of greedy KV-cache generation on init-model models (random weights), and of the same
  generation in PyTorch on the same weights and shapes in the same run; ratio = ours / torch.`;

interface PolicyBenchRow {
  preset: ModelPreset;
  arch: QwenArch;
  batch: number;
  promptLen: number;
  newTokens: number;
  ours: GenerationTiming;
  torch?: GenerationTiming;
}

export async function benchPolicy(argv: string[]): Promise<void> {
  const cmd = 'bench policy';
  const { values } = parse(cmd, argv, {
    presets: { type: 'string', default: 'tiny,small' },
    arch: { type: 'string', default: 'qwen2' },
    batch: { type: 'string', default: '1,4' },
    'prompt-len': { type: 'string', default: '64' },
    'new-tokens': { type: 'string', default: '16' },
    iterations: { type: 'string', default: '3' },
    'no-torch': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    out: { type: 'string' },
  });
  const presets = values.presets.split(',') as ModelPreset[];
  for (const p of presets) if (p !== 'tiny' && p !== 'small') throw new UsageError(`${cmd}: --presets takes tiny and/or small, got '${p}'`);
  if (values.arch !== 'qwen2' && values.arch !== 'qwen3') throw new UsageError(`${cmd}: --arch must be qwen2 or qwen3`);
  const int = (name: string, v: string, min: number) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new UsageError(`${cmd}: --${name} must be an integer >= ${min}, got '${v}'`);
    return n;
  };
  const batches = values.batch.split(',').map((b) => int('batch', b, 1));
  const promptLen = int('prompt-len', values['prompt-len'], 1);
  const newTokens = int('new-tokens', values['new-tokens'], 2);
  const iterations = int('iterations', values.iterations, 1);
  const python = values['no-torch'] ? undefined : findTorchPython();
  const log = (s: string) => process.stderr.write(s + '\n');

  const tmp = mkdtempSync(join(tmpdir(), 'mlagent-bench-policy-'));
  const gpu = await Gpu.create();
  const rows: PolicyBenchRow[] = [];
  let torchDevice = values['no-torch'] ? 'not measured (--no-torch)' : 'not measured: no python3 with torch found';
  try {
    for (const preset of presets) {
      const dir = join(tmp, preset);
      initModel({ arch: values.arch, preset, outDir: dir, seed: 0 });
      const model = await QwenModel.load(gpu, dir);
      try {
        for (const batch of batches) {
          const shape = { batch, promptLen, newTokens, iterations };
          log(`${preset} ${values.arch} batch ${batch}, prompt ${promptLen}, ${newTokens} new tokens ...`);
          const row: PolicyBenchRow = { preset, arch: values.arch, ...shape, ours: await timeGeneration(model, shape) };
          if (python) {
            const t = torchGenerationTiming(python, dir, shape);
            torchDevice = t.device;
            row.torch = t;
          }
          log(`  prefill ${fmt(row.ours.prefillTokPerS)} tok/s (torch ${fmt(row.torch?.prefillTokPerS)}), decode ${fmt(row.ours.decodeTokPerS)} tok/s (torch ${fmt(row.torch?.decodeTokPerS)})`);
          rows.push(row);
        }
      } finally {
        model.dispose();
      }
    }
  } finally {
    gpu.destroy();
    rmSync(tmp, { recursive: true, force: true });
  }
  const a = gpu.adapter;
  const report = {
    command: `mlagent bench policy ${argv.join(' ')}`.trim(),
    date: new Date().toISOString(),
    adapter: [a.description || a.device, a.vendor, a.architecture].filter(Boolean).join(' / '),
    host: `${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}`,
    torch: torchDevice,
    rows,
  };
  const text = values.json ? JSON.stringify(report, null, 2) : markdown(report);
  if (values.out) writeFileSync(values.out, text + '\n');
  console.log(text);
}

function fmt(x: number | undefined): string {
  if (x === undefined || !Number.isFinite(x)) return '-';
  return x >= 100 ? x.toFixed(0) : x.toPrecision(3);
}

const ratio = (ours: number, torch: number | undefined) => (torch === undefined ? '-' : `${(ours / torch).toFixed(2)}x`);

function markdown(rep: { command: string; date: string; adapter: string; host: string; torch: string; rows: PolicyBenchRow[] }): string {
  return [
    `Command: \`${rep.command}\`  `,
    `Date: ${rep.date}  `,
    `Adapter: ${rep.adapter}; host: ${rep.host}  `,
    `Reference: ${rep.torch}, same weights and shapes, greedy, f32  `,
    '',
    '| model | batch | prompt | new | prefill tok/s | torch | ratio | decode tok/s | torch | ratio |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rep.rows.map(
      (r) =>
        `| ${r.arch} ${r.preset} | ${r.batch} | ${r.promptLen} | ${r.newTokens} | ${fmt(r.ours.prefillTokPerS)} | ${fmt(r.torch?.prefillTokPerS)} | ${ratio(r.ours.prefillTokPerS, r.torch?.prefillTokPerS)} | ${fmt(r.ours.decodeTokPerS)} | ${fmt(r.torch?.decodeTokPerS)} | ${ratio(r.ours.decodeTokPerS, r.torch?.decodeTokPerS)} |`,
    ),
  ].join('\n');
}
