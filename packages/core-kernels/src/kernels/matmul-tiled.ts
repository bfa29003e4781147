import { CPU_LANES } from './cpu-lanes.js';
import { common, type KernelSpec } from './matmul-wgsl.js';

/*
 * The register-tiled matmul kernels: `tiled`, the generic kernel for any adapter, and the storage-buffer
 * `cpu-tiled` fallback for CPU adapters (matmul-cpu.ts holds the uniform-window kernel that path prefers).
 */

// Register-tiled kernel: 8x8 threads, each 8x8 outputs (as 8x2 vec4) → 64x64 tiles, K in steps of 8 through
// shared memory.
// On lavapipe (8-wide AVX lanes across invocations) this shape measured fastest among 4x4/8x4/8x8/16x8 per thread
// and 16x16/16x8/8x8/8x4 thread grids.
const TX = 8;
const TY = 8;
const TM = 8;
const TN = 8;
export const BM = TY * TM;
export const BN = TX * TN;
export const BK = 8;

// CPU path: one 8-lane subgroup per workgroup, each lane CPU_R rows x CPU_V vec4 columns.
export const CPU_R = 16;
const CPU_V = 2;
export const CPU_BN = CPU_LANES * CPU_V * 4;

export function tiledWgsl(s: KernelSpec): string {
  const nt = TX * TY;
  // Tile loads: consecutive threads walk the operand's contiguous storage dimension.
  const loadA = s.transA
    ? `let mm = e % ${BM}u; let kk = e / ${BM}u;`
    : `let kk = e % ${BK}u; let mm = e / ${BK}u;`;
  const loadB = s.transB
    ? `let kk = e % ${BK}u; let nn = e / ${BK}u;`
    : `let nn = e % ${BN}u; let kk = e / ${BN}u;`;
  return /* wgsl */ `${common(s)}
var<workgroup> As: array<vec4<f32>, ${(BK * BM) / 4}>;  // [k][m], m in fours
var<workgroup> Bs: array<vec4<f32>, ${(BK * BN) / 4}>;  // [k][n], n in fours

@compute @workgroup_size(${TX}, ${TY})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  // Grid z: split layer x batch item. Layer l sums K from l·kPer (one layer of all of K unless split).
  let z = wid.z % p.zb;
  let kb = (wid.z / p.zb) * p.kPer;
  let ke = min(p.K, kb + p.kPer);
  let m0 = wid.y * ${BM}u;
  let n0 = wid.x * ${BN}u;
  var acc: array<array<vec4<f32>, ${TN / 4}>, ${TM}>;
  for (var k0 = kb; k0 < ke; k0 += ${BK}u) {
    for (var e = li; e < ${BK * BM}u; e += ${nt}u) {
      ${loadA}
      var v = 0.0;
      if (m0 + mm < p.M && k0 + kk < ke) { v = a_at(z, m0 + mm, k0 + kk); }
      let d = kk * ${BM}u + mm;
      As[d / 4u][d % 4u] = v;
    }
    for (var e = li; e < ${BK * BN}u; e += ${nt}u) {
      ${loadB}
      var v = 0.0;
      if (n0 + nn < p.N && k0 + kk < ke) { v = b_at(z, k0 + kk, n0 + nn); }
      let d = kk * ${BN}u + nn;
      Bs[d / 4u][d % 4u] = v;
    }
    workgroupBarrier();
    // vec4 reads of shared memory: lavapipe runs invocations as SIMD lanes, where a per-lane vec4 load costs
    // about what a scalar one does.
    for (var kk = 0u; kk < ${BK}u; kk++) {
      var a: array<vec4<f32>, ${TM / 4}>;
      var b: array<vec4<f32>, ${TN / 4}>;
      for (var i = 0u; i < ${TM / 4}u; i++) { a[i] = As[kk * ${BM / 4}u + lid.y * ${TM / 4}u + i]; }
      for (var j = 0u; j < ${TN / 4}u; j++) { b[j] = Bs[kk * ${BN / 4}u + lid.x * ${TN / 4}u + j]; }
      for (var i = 0u; i < ${TM}u; i++) {
        let ai = vec4<f32>(a[i / 4u][i % 4u]);
        for (var j = 0u; j < ${TN / 4}u; j++) { acc[i][j] = fma(ai, b[j], acc[i][j]); }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < ${TM}u; i++) {
    let m = m0 + lid.y * ${TM}u + i;
    for (var j = 0u; j < ${TN}u; j++) {
      let n = n0 + lid.x * ${TN}u + j;
      if (m < p.M && n < p.N) { store_c(wid.z, m, n, acc[i][j / 4u][j % 4u]); }
    }
  }
}`;
}

/**
 * CPU-adapter kernel (lavapipe/llvmpipe). There every storage or shared load whose address is not a compile-time
 * constant runs as a scalar loop over the 8 SIMD lanes with a bounds check per element, so the cost is the number
 * of lane-elements loaded; arithmetic is nearly free. One workgroup is one 8-lane subgroup computing CPU_R rows ×
 * 64 columns; lane l owns CPU_V vec4 columns. For each step of 8 along K, lane l loads A[m, k0 + l] of every row
 * once and subgroupBroadcast (a register shuffle there) hands each value to all lanes, instead of every lane
 * loading the same element. B is loaded as vec4 along N, each element once per workgroup, and reused for CPU_R
 * rows. No shared memory, no barriers; out-of-range rows and columns are clamped on load and not stored, so every
 * lane stays active for the broadcasts.
 */
export function cpuTiledWgsl(s: KernelSpec): string {
  let decl = '';
  let loadA = '';
  let step = '';
  let stash = '';
  for (let r = 0; r < CPU_R; r++) {
    loadA += `let a${r} = A[base_a + min(m0 + ${r}u, p.M - 1u) * p.lda + ka];\n`;
    step += `{ let s = vec4<f32>(subgroupShuffle(a${r}, kk));\n`;
    for (let v = 0; v < CPU_V; v++) {
      decl += `var acc${r}_${v} = vec4<f32>();\n`;
      step += `acc${r}_${v} = fma(s, b${v}, acc${r}_${v});\n`;
      stash += `res[${r * CPU_V + v}] = acc${r}_${v};\n`;
    }
    step += '}\n';
  }
  let loadB = '';
  for (let v = 0; v < CPU_V; v++) loadB += `let b${v} = vec4<f32>(B[base_b + (k0 + kk) * ldq + min(nb + ${v}u, nq - 1u)]);\n`;
  return /* wgsl */ `enable subgroups;
${common(s, true)}
@compute @workgroup_size(${CPU_LANES})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let z = wid.z;
  let m0 = wid.y * ${CPU_R}u;
  let nb = (wid.x * ${CPU_LANES}u + li) * ${CPU_V}u;  // this lane's first vec4 column
  let nq = p.N / 4u;
  let ldq = p.ldb / 4u;
  let base_a = p.offA + z * p.sA;
  let base_b = (p.offB + z * p.sB) / 4u;
  ${decl}
  for (var k0 = 0u; k0 < p.K; k0 += ${CPU_LANES}u) {
    let ka = min(k0 + li, p.K - 1u);
    ${loadA}
    // Not unrolled: the unrolled body's code size made it ~2.5x slower on llvmpipe.
    for (var kk = 0u; kk < min(${CPU_LANES}u, p.K - k0); kk++) {
      ${loadB}
      ${step}
    }
  }
  // One store loop instead of ${CPU_R * CPU_V} unrolled ones keeps compile time down.
  var res: array<vec4<f32>, ${CPU_R * CPU_V}>;
  ${stash}
  for (var i = 0u; i < ${CPU_R * CPU_V}u; i++) {
    let m = m0 + i / ${CPU_V}u;
    let n = (nb + i % ${CPU_V}u) * 4u;
    if (m < p.M && n < p.N) {
      for (var j = 0u; j < 4u; j++) { store_c(z, m, n + j, res[i][j]); }
    }
  }
}`;
}
