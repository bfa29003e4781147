import { Gpu, attentionDecodePath, attentionForwardPath, attentionPath, describeMatmulPath, formatBytes, type MatmulPathInfo } from '@mlagent/core-kernels';
import { existsSync } from 'node:fs';
import { DEFAULT_PYTHON, SANDBOX_SYSTEM_PATHS, checkSandbox, mlagentHome, taskCacheDir, type SandboxCheck } from '@mlagent/env';
import { parse } from '../args.js';

const SHOWN_LIMITS = [
  'maxBufferSize',
  'maxStorageBufferBindingSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
  'minStorageBufferOffsetAlignment',
];

export const doctorUsage = `mlagent doctor [--json]
  Prints the WebGPU adapter, its features and limits, the kernel variants chosen for it, the path a matmul
  takes at a few Qwen2.5-7B-sized shapes, and the attention kernels' path by head dim (decode: one new token
  for 2 query heads per KV head, as in the init-model presets). Then runs one script the way agent code runs:
  the sandbox's isolation and limits, its warnings, and which task modules (numpy, pandas, sklearn, torch,
  xgboost) the tasks' Python imports there, with $MLAGENT_HOME's prepared data mounted as task data is.`;

/** Head dims whose attention path `doctor` shows: Qwen2.5-7B's, the mini policy's, and one the CPU kernels refuse. */
const ATTENTION_HEAD_DIMS = [128, 32, 6];
/** Query rows per KV head of a decode step: the init-model presets' 2 query heads per KV head, one new token. */
const DECODE_ROWS = 2;

/** Shapes whose matmul path `doctor` shows: a 7B projection at prefill and decode, a square f32 product, a weight gradient. */
function matmulPaths(gpu: Gpu): Array<{ case: string } & MatmulPathInfo> {
  const w = gpu.variants.weightDType;
  return [
    { case: `prefill x[512,3584] · W[3584,3584]ᵀ (${w} W)`, ...describeMatmulPath(gpu, 'f32', w, 512, 3584, 3584, { transB: true }) },
    { case: `decode x[1,3584] · W[3584,3584]ᵀ (${w} W)`, ...describeMatmulPath(gpu, 'f32', w, 1, 3584, 3584, { transB: true }) },
    { case: 'f32 [1024,1024] · [1024,1024]', ...describeMatmulPath(gpu, 'f32', 'f32', 1024, 1024, 1024) },
    { case: 'weight gradient dY[512,3584]ᵀ · x[512,3584]', ...describeMatmulPath(gpu, 'f32', 'f32', 3584, 3584, 512, { transA: true }) },
  ];
}

export async function doctor(argv: string[]): Promise<void> {
  const { values } = parse('doctor', argv, { json: { type: 'boolean', default: false } });
  const gpu = await Gpu.create();
  try {
    const report = {
      adapter: gpu.adapter,
      features: gpu.features,
      variants: gpu.variants,
      matmulPaths: matmulPaths(gpu),
      attentionPaths: ATTENTION_HEAD_DIMS.map((D) => ({
        headDim: D,
        forward: attentionForwardPath(gpu, D, gpu.variants.weightDType),
        backward: attentionPath(gpu, D),
        decode: attentionDecodePath(gpu, D, DECODE_ROWS),
      })),
      limits: gpu.limits,
      node: process.version,
      sandbox: await sandboxCheck(),
    };
    // The report is printed either way; a sandbox that cannot run the tasks' Python fails the check.
    if (report.sandbox.outcome !== 'ok') process.exitCode = 1;
    if (values.json) {
      console.log(JSON.stringify(report, null, 2));
      return;
    }
    const a = gpu.adapter;
    const lines = [
      `adapter     ${a.description || a.device || '(unnamed)'}  [vendor ${a.vendor || '?'}, arch ${a.architecture || '?'}]`,
      `features    shader-f16=${yes(gpu.features.shaderF16)} subgroups=${yes(gpu.features.subgroups)} ` +
        `timestamp-query=${yes(gpu.features.timestampQuery)} subgroup-matrix=${yes(gpu.features.subgroupMatrix)}`,
    ];
    for (const c of gpu.features.subgroupMatrixConfigs) {
      lines.push(`            subgroup matrix ${c.componentType}->${c.resultComponentType} M=${c.M} N=${c.N} K=${c.K}`);
    }
    lines.push(`dawn flags  ${a.dawnFlags.join(' ')}`);
    lines.push('variants');
    for (const [k, v] of Object.entries(gpu.variants)) lines.push(`            ${k.padEnd(12)} ${v}`);
    lines.push('matmul paths');
    for (const m of report.matmulPaths) {
      const a = m.aFrom
        ? `, A from ${m.aFrom === 'texture' ? 'a texture' : 'storage'}`
        : m.aF32
          ? `, f32 A as two f16 parts (${m.aF32})`
          : m.gemv
            ? `, ${m.gemv === 'vec' ? '16-byte loads of W (vec)' : 'scalar loads'}`
            : '';
      lines.push(`            ${m.case.padEnd(48)} ${m.path}${a}`);
    }
    lines.push(`attention paths (${gpu.variants.weightDType} forward, backward, decode)`);
    for (const a of report.attentionPaths) {
      lines.push(`            ${`head dim ${a.headDim}`.padEnd(48)} ${a.forward}, ${a.backward}, ${a.decode}`);
    }
    lines.push('limits');
    for (const k of SHOWN_LIMITS) {
      const v = gpu.limits[k];
      const bytes = /Size$/.test(k) && v >= 1024 ? `  (${formatBytes(v)})` : '';
      lines.push(`            ${k.padEnd(36)} ${v}${bytes}`);
    }
    lines.push(...sandboxLines(report.sandbox));
    console.log(lines.join('\n'));
  } finally {
    gpu.destroy();
  }
}

function yes(b: boolean): string {
  return b ? 'yes' : 'no';
}

/** A sandboxed run like the agent's, with the prepared task data (or $MLAGENT_HOME) mounted read-only. */
function sandboxCheck(): Promise<SandboxCheck> {
  const data = [taskCacheDir(), mlagentHome()].find((d) => existsSync(d));
  return checkSandbox(DEFAULT_PYTHON, data);
}

function sandboxLines(s: SandboxCheck): string[] {
  const limits = s.limits.memory === s.limits.processes ? s.limits.memory : `memory ${s.limits.memory}, processes ${s.limits.processes}`;
  const view = s.isolation === 'bwrap' ? ` (shows the host's ${SANDBOX_SYSTEM_PATHS.join(' ')}, read-only)` : '';
  const lines = [`sandbox     ${s.isolation} isolation${view}, ${limits} limits; ${s.python}: ${s.outcome}`];
  if (s.outcome === 'ok') {
    lines.push(`            ${Object.entries(s.modules).map(([m, v]) => `${m} ${v ?? 'MISSING'}`).join(', ')}`);
    const pins = Object.entries(s.kernelPins);
    lines.push(`            math kernels ${pins.length ? `pinned to AVX2, the same scores on every host (${pins.map(([k, v]) => `${k}=${v}`).join(' ')})` : 'as the host picks (no AVX2 pins)'}`);
  } else if (s.error) {
    lines.push(`            ${s.error.trim().split('\n').pop()}`);
  }
  for (const w of s.warnings) lines.push(`            warning: ${w}`);
  return lines;
}
