/**
 * Probes single subgroup-matrix operations on the device: one subgroup computes C = A·B for one fragment, with A
 * and B reaching the fragments in one of several ways (row- or column-major, from workgroup or storage memory,
 * the result stored directly or through workgroup memory). Each way is checked against the exact product, so a
 * failing kernel can be traced to the operation that differs from what the emulation assumes. Used by
 * tools/device/sgm-sweep.ts; with `emulate` it runs the same kernels on lavapipe's emulated operations (the
 * rehearsal), which checks the probe itself.
 */
import { roundToF16, type Gpu } from '../../packages/core-kernels/src/index.js';
import { DIRECTIVE, EMULATED, NATIVE, emulation, type MatrixOps } from '../../packages/core-kernels/src/kernels/matmul-sgm.js';
import type { SubgroupMatrixConfig } from '../../packages/core-kernels/src/runtime/features.js';

export interface ProbeResult {
  name: string;
  /** max |C - exact| / max |exact|; undefined when the kernel failed. */
  err?: number;
  error?: string;
}

interface Probe {
  name: string;
  /** Stages a / b into workgroup memory (lanes), loads the fragments, and writes C[m][n] into `cout` row-major. */
  body: (ops: MatrixOps) => string;
  /** Native only (the emulation has no column-major stores). */
  nativeOnly?: boolean;
  /** What `cout` should hold, from the exact C [M][N] (default: C itself). */
  want?: (exact: Float64Array) => Float64Array;
}

const PAD = 8;

export async function probeSubgroupMatrix(gpu: Gpu, cfg: SubgroupMatrixConfig, sg: number, emulate: boolean): Promise<ProbeResult[]> {
  const { M, N, K } = cfg;
  const SA = K + PAD; // row stride of A [M][K] in workgroup memory
  const SAT = M + PAD; // row stride of Aᵀ [K][M]
  const SB = N + PAD; // B [K][N]
  const SBT = K + PAD; // Bᵀ [N][K]
  const SC = N + 4;
  const left = `subgroup_matrix_left<f16, ${K}, ${M}>`;
  const right = `subgroup_matrix_right<f16, ${N}, ${K}>`;
  const result = `subgroup_matrix_result<f32, ${N}, ${M}>`;
  const WA = Math.max(M * SA, K * SAT);
  const WB = Math.max(K * SB, N * SBT);
  // Lanes copy a [rows][cols] storage matrix (a, b, at or bt) into workgroup memory with a row stride.
  const stage = (dst: string, src: string, rows: number, cols: number, stride: number, off = 0) =>
    `for (var e = li; e < ${rows * cols}u; e += ${sg}u) { ${dst}[${off}u + (e / ${cols}u) * ${stride}u + e % ${cols}u] = ${src}[e]; }`;
  const copyOut = `for (var e = li; e < ${M * N}u; e += ${sg}u) { cout[e] = wc[(e / ${N}u) * ${SC}u + e % ${N}u]; }`;
  // A and B staged as given, one product C = A·B of the given fragment loads, then `finish` (default: stored to cout).
  const product = (staging: string[], l: (o: MatrixOps) => string, r: (o: MatrixOps) => string, finish?: (o: MatrixOps) => string) => (o: MatrixOps) =>
    `${staging.join('\n')}\nworkgroupBarrier();
var acc = ${o.zero(result)};
acc = ${o.mma(l(o), r(o), 'acc')};
${finish ? finish(o) : `${o.store('cout', '0u', 'acc', N)};`}`;
  const aRows = (o: MatrixOps) => o.load(left, 'wa', '0u', false, SA);
  const bRows = (o: MatrixOps) => o.load(right, 'wb', '0u', false, SB);
  const stageA = stage('wa', 'a', M, K, SA);
  const stageB = stage('wb', 'b', K, N, SB);
  const stageBT = stage('wb', 'bt', N, K, SBT);
  const probes: Probe[] = [
    { name: 'A row-major, B row-major, from workgroup memory (as the matmul kernel)', body: product([stageA, stageB], aRows, bRows) },
    {
      name: 'B column-major from workgroup memory (as the attention kernel reads K)',
      body: product([stageA, stageBT], aRows, (o) => o.load(right, 'wb', '0u', true, SBT)),
    },
    {
      name: 'A column-major from workgroup memory',
      body: product([stage('wa', 'at', K, M, SAT), stageB], (o) => o.load(left, 'wa', '0u', true, SAT), bRows),
    },
    { name: 'B column-major from storage memory', body: product([stageA], aRows, (o) => o.load(right, 'bt', '0u', true, K)) },
    {
      name: 'result through workgroup memory, read back by lanes (as the attention kernel reads S)',
      body: product([stageA, stageB], aRows, bRows, (o) => `${o.store('wc', '0u', 'acc', SC)};\nworkgroupBarrier();\n${copyOut}`),
    },
    {
      name: 'two K steps accumulated, B column-major at an offset (as S = Q·Kᵀ over the head dim)',
      // C = A·B + A·B, the second B read from wb2, where it starts PAD elements in.
      want: (x) => x.map((v) => 2 * v),
      body: product(
        [stageA, stageBT, stage('wb2', 'bt', N, K, SBT, PAD)],
        aRows,
        (o) => o.load(right, 'wb', '0u', true, SBT),
        (o) => `acc = ${o.mma(aRows(o), o.load(right, 'wb2', `${PAD}u`, true, SBT), 'acc')};\n${o.store('cout', '0u', 'acc', N)};`,
      ),
    },
    {
      name: 'result stored column-major to storage',
      nativeOnly: true,
      want: (x) => transposeBack(x, M, N),
      body: product([stageA, stageB], aRows, bRows, () => `subgroupMatrixStore(&cout, 0u, acc, true, ${M}u);`),
    },
  ];

  const rnd = (n: number, seed: number) => {
    let s = seed >>> 0;
    return roundToF16(Float32Array.from({ length: n }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1));
  };
  const a = rnd(M * K, 11);
  const b = rnd(K * N, 12);
  const at = new Float32Array(K * M);
  const bt = new Float32Array(N * K);
  for (let m = 0; m < M; m++) for (let k = 0; k < K; k++) at[k * M + m] = a[m * K + k];
  for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) bt[n * K + k] = b[k * N + n];
  const exact = new Float64Array(M * N);
  for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) exact[m * N + n] += a[m * K + k] * b[k * N + n];
  const inputs = [gpu.tensor([M * K], 'f16', a), gpu.tensor([K * N], 'f16', b), gpu.tensor([K * M], 'f16', at), gpu.tensor([N * K], 'f16', bt)];
  const out: ProbeResult[] = [];
  for (const [i, probe] of probes.entries()) {
    if (emulate && probe.nativeOnly) continue;
    const row: ProbeResult = { name: probe.name };
    const c = gpu.tensor([M * N], 'f32');
    try {
      const ops = emulate ? EMULATED : NATIVE;
      const wgsl = `enable f16;\nenable subgroups;\n${emulate ? '' : `enable chromium_experimental_subgroup_matrix;\n${DIRECTIVE}`}
@group(0) @binding(0) var<storage, read> a: array<f16>;
@group(0) @binding(1) var<storage, read> b: array<f16>;
@group(0) @binding(2) var<storage, read> at: array<f16>;
@group(0) @binding(3) var<storage, read> bt: array<f16>;
@group(0) @binding(4) var<storage, read_write> cout: array<f32>;
var<workgroup> wa: array<f16, ${WA}>;
var<workgroup> wb: array<f16, ${WB}>;
var<workgroup> wb2: array<f16, ${WB + PAD}>;
var<workgroup> wc: array<f32, ${M * SC}>;
${
  emulate
    ? emulation(
        cfg,
        [
          { kind: 'l', arr: 'wa', size: WA },
          { kind: 'r', arr: 'wb', size: WB },
          { kind: 'r', arr: 'wb2', size: WB + PAD },
          { kind: 'r', arr: 'bt', size: N * K },
        ],
        [
          { arr: 'cout', size: M * N },
          { arr: 'wc', size: M * SC },
        ],
      )
    : ''
}
@compute @workgroup_size(${sg})
fn main(@builtin(local_invocation_index) li: u32) {
  // Touch every binding so the auto layout keeps them all.
  if (li == 1000u) { cout[0] = f32(a[0] + b[0] + at[0] + bt[0]) + f32(wb2[0]) + wc[0]; }
  ${probe.body(ops).replaceAll('\n', '\n  ')}
}`;
      const pipeline = await gpu.checkPipeline(`sgm-probe-${i}-${emulate ? 'emu' : 'native'}-${M}x${N}x${K}`, () => wgsl);
      gpu.dispatch({ op: 'sgm-probe', pipeline, bindings: [...inputs, c], workgroups: [1] });
      const got = await c.read();
      const want = probe.want ? probe.want(exact) : exact;
      let d = 0;
      let mx = 0;
      for (let j = 0; j < want.length; j++) {
        d = Math.max(d, Number.isFinite(got[j]) ? Math.abs(got[j] - want[j]) : Infinity);
        mx = Math.max(mx, Math.abs(want[j]));
      }
      row.err = d / mx;
    } catch (e) {
      row.error = String((e as Error).message ?? e).slice(0, 300);
    }
    c.dispose();
    out.push(row);
  }
  inputs.forEach((t) => t.dispose());
  return out;
}

/** The exact C [M][N] laid out column-major, as the column-major store writes it. */
function transposeBack(x: Float64Array, M: number, N: number): Float64Array {
  const t = new Float64Array(M * N);
  for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) t[n * M + m] = x[m * N + n];
  return t;
}
