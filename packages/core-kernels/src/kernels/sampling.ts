import type { Gpu } from '../runtime/gpu.js';
import { Params } from '../runtime/params.js';
import { ShapeError } from '../runtime/errors.js';
import type { Tensor } from '../runtime/tensor.js';
import { LINEAR_WORKGROUP, enableF16, wgslType } from './wgsl.js';

/** Bins per radix pass: 4 bits of the 32-bit key, so a threshold is found in 8 passes over the row. */
const NB = 16;

/** The smallest normal f32: positive temperatures below it are refused (1/T overflows f32, or the GPU flushes T to 0). */
const MIN_TEMPERATURE = 2 ** -126;

export interface SampleOptions {
  /**
   * Global temperature, or an f32[B] tensor of per-row temperatures. 0 (or less) means greedy. Default 1. NaN, +∞
   * and positive values below 2^-126 (the smallest normal f32, where 1/T overflows or the GPU may flush T to 0) are
   * refused; in a per-row tensor, where the host does not see them, they give that row the sentinel (sampleTokens).
   */
  temperature?: number | Tensor;
  /** Keep the k largest logits (ties at the k-th value are all kept, as in Hugging Face). 0/absent: off. */
  topK?: number;
  /**
   * Nucleus: keep the smallest set of largest-probability tokens whose mass reaches topP of the (top-k) mass
   * (ties at the boundary all kept). >= 1 or absent: off. Applied after top-k, as in Hugging Face.
   */
  topP?: number;
  /** Argmax for every row (lowest index on ties), whatever the temperature. */
  greedy?: boolean;
  /** u32 seed. The uniform draw of a row is a hash of (seed, step, row): reproducible, order-independent. */
  seed?: number;
  /** u32 counter mixed into the hash, e.g. the decoding step, so each step draws fresh numbers. */
  step?: number;
  /** Preallocated outputs. */
  out?: Partial<SampleResult>;
}

export interface SampleResult {
  /** i32[B] sampled token ids; -1 for a row that has nothing to sample (see sampleTokens). */
  ids: Tensor<'i32'>;
  /**
   * f32[B] log-probability of the sampled token under the distribution actually sampled from: softmax(logits/T)
   * restricted to the top-k/top-p set and renormalized. 0 for greedy rows (a point mass).
   */
  logprobs: Tensor<'f32'>;
  /**
   * f32[B] log-probability under the plain temperature-scaled policy, log softmax(logits/T), ignoring top-k/top-p:
   * what PPO-style training wants. For greedy rows T is taken as 1 (log softmax of the raw logits).
   */
  tempLogprobs: Tensor<'f32'>;
}

const dummies = new WeakMap<Gpu, Tensor>();

/** Fills the per-row temperature slot when the temperature is global (the shader reads element 0, ignores it). */
function unusedTemps(gpu: Gpu): Tensor {
  let t = dummies.get(gpu);
  if (!t || t.isDisposed) dummies.set(gpu, (t = gpu.tensor([1], 'f32', [1], 'sampleTokens')));
  return t;
}

/** Threads per row; the per-thread bin columns need 2·NB·WG words of workgroup memory. */
function workgroupSize(gpu: Gpu): number {
  return (gpu.limits.maxComputeWorkgroupStorageSize ?? 16384) >= 2 * NB * 256 * 4 + 4096 ? 256 : 128;
}

/** The 32-bit hash used for the uniform draws (Wellons' lowbias32), shared with the CPU reference. */
const HASH = /* wgsl */ `
fn hash32(x0: u32) -> u32 {
  var x = x0;
  x ^= x >> 16u; x *= 0x7feb352du;
  x ^= x >> 15u; x *= 0x846ca68bu;
  x ^= x >> 16u;
  return x;
}
fn uniform01(seed: u32, step: u32, row: u32) -> f32 {
  let h = hash32(hash32(hash32(seed + 0x9e3779b9u) ^ step) ^ row);
  return f32(h >> 8u) * (1.0 / 16777216.0);
}
`;

/**
 * Samples one token per row of logits [B, V] on the GPU, one workgroup per row, without sorting the vocabulary:
 *  1. one pass: max, argmax and sum of exp (online softmax) of z = logits/T, and each thread's maximum;
 *  2. a bound from the threads' maxima (each a distinct token): for top-k with k <= WG, the k-th largest of them
 *     (at least k tokens reach it); for top-p alone with V > NB·WG, the smallest. One pass gathers the tokens at
 *     or above it into workgroup memory (the radix bins' NB·WG words; typically a few times k, or WG, tokens) and
 *     a bitonic sort orders them by value: top-k keeps the first k and their ties; top-p alone succeeds if their
 *     mass reaches top_p of the row's, the nucleus then being among them;
 *  3. otherwise (k > WG, more tokens at the bound than fit, or a nucleus wider than the bound), top-k and top-p
 *     are radix selects of the threshold over the order-preserving u32 key of z, 4 bits per pass (up to 8 passes
 *     each) with per-bin counts (top-k) or masses (top-p) reduced over the workgroup, each stopping once its kept
 *     set is settled (the chosen bin holds one candidate, or is kept whole); after top-k, one more pass gathers
 *     the kept set if it fits (or if V does, top-k or not);
 *  4. on a gathered set, top-p and the draw read no more of the row: the nucleus by a scan in value order, a sort
 *     back to index order and the inverse CDF;
 *  5. otherwise the inverse CDF walks the row's kept set {z >= threshold} in index order: per-thread chunk sums,
 *     a scan, then the thread whose chunk holds the draw walks it.
 * On lavapipe, top-k 50 then top-p 0.9 over 152k normal logits takes 0.15–0.18x the time of the radix passes;
 * top-p 0.9 alone 0.37x at T 0.3 and 1.06x on a flat row whose nucleus the bound misses (docs/BENCHMARKS.md).
 *
 * Non-finite logits, which only the GPU sees (no readback here), have defined results:
 *  - -∞ (a masked token) has zero mass and is never drawn;
 *  - a finite logit whose logit/T overflows f32 (a tiny T) is the limit of a growing logit: the row's distribution
 *    is uniform over those tokens, so with one of them that token is drawn with logprob 0, with n of them one is
 *    drawn with logprob -log n (top-k/top-p and greedy alike);
 *  - a row with any NaN or +∞ logit (an overflow in the model, e.g. in f16), or all logits -∞, or a per-row
 *    temperature that would be refused as a number, gets the sentinel: id -1 and NaN logprobs and tempLogprobs
 *    (greedy too). Callers that check the logprobs for non-finite values (policy's generate) catch it there; none
 *    of them can mistake it for a token.
 */
export function sampleTokens(gpu: Gpu, logits: Tensor, opts: SampleOptions = {}): SampleResult {
  return sampleGathering(gpu, logits, opts, Infinity);
}

/**
 * sampleTokens gathering kept sets of at most maxGathered tokens (and at most what the workgroup memory holds);
 * 0 always takes the passes over the row. Not in the public API: tests compare the two ways.
 */
export function sampleGathering(gpu: Gpu, logits: Tensor, opts: SampleOptions, maxGathered: number): SampleResult {
  const op = 'sampleTokens';
  const shapes = `${logits}`;
  if (logits.rank !== 2 || (logits.dtype !== 'f32' && logits.dtype !== 'f16')) {
    throw new ShapeError('logits must be f32 or f16 [B, V]', { op, shapes });
  }
  const [B, V] = logits.shape;
  if (V === 0) throw new ShapeError('empty vocabulary', { op, shapes });
  const temp = opts.temperature ?? 1;
  const perRow = typeof temp !== 'number';
  if (perRow && (temp.dtype !== 'f32' || temp.size !== B)) {
    throw new ShapeError(`per-row temperature must be f32[${B}]`, { op, shapes: `${shapes}, T ${temp}` });
  }
  if (!perRow && Number.isNaN(temp)) throw new ShapeError('temperature is NaN', { op, shapes });
  // 1/T must be a finite f32 for the kernel's logits/T (the kernel gives a per-row tensor's such rows the sentinel).
  if (!perRow && (temp === Infinity || (temp > 0 && temp < MIN_TEMPERATURE))) {
    throw new ShapeError(`temperature must be finite and 0 (greedy) or at least 2^-126, got ${temp}`, { op, shapes });
  }
  for (const [name, x] of [['seed', opts.seed], ['step', opts.step]] as const) {
    if (x !== undefined && !(Number.isInteger(x) && x >= 0 && x < 2 ** 32)) throw new ShapeError(`${name} must be a u32 integer, got ${x}`, { op, shapes });
  }
  const topK = opts.topK ?? 0;
  const topP = opts.topP ?? 1;
  if (!Number.isInteger(topK) || topK < 0) throw new ShapeError(`topK must be a non-negative integer, got ${topK}`, { op, shapes });
  if (!(topP > 0)) throw new ShapeError(`topP must be > 0, got ${topP}`, { op, shapes });
  const out = opts.out ?? {};
  const ids = out.ids ?? gpu.tensor([B], 'i32', undefined, op);
  const logprobs = out.logprobs ?? gpu.tensor([B], 'f32', undefined, op);
  const tempLogprobs = out.tempLogprobs ?? gpu.tensor([B], 'f32', undefined, op);
  for (const [name, t, dt] of [['ids', ids, 'i32'], ['logprobs', logprobs, 'f32'], ['tempLogprobs', tempLogprobs, 'f32']] as const) {
    if (t.size !== B || t.dtype !== dt) throw new ShapeError(`${name} must be ${dt}[${B}]`, { op, shapes: `${shapes} -> ${t}` });
  }
  if (B === 0) return { ids, logprobs, tempLogprobs };

  const WG = workgroupSize(gpu);
  const lanes = WG / NB;
  const compactCap = Math.min(maxGathered, NB * WG);
  const t = wgslType(logits.dtype);
  const pipeline = gpu.pipeline(`sample:${logits.dtype}:${WG}`, () => /* wgsl */ `
${enableF16([logits.dtype])}
struct P { rows: u32, v: u32, row0: u32, seed: u32, step: u32, top_k: u32, top_p: f32, temperature: f32, greedy: u32,
           phases: u32, passes: u32, per_row: u32, cap: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> logits: array<${t}>;
@group(0) @binding(2) var<storage, read> temps: array<f32>;
@group(0) @binding(3) var<storage, read_write> ids: array<i32>;
@group(0) @binding(4) var<storage, read_write> lp: array<f32>;
@group(0) @binding(5) var<storage, read_write> lp_temp: array<f32>;
${LINEAR_WORKGROUP}
${HASH}
const NEG = -3.4028234e38;
const NONE = 0xffffffffu;
var<workgroup> red_m: array<f32, ${WG}>;
var<workgroup> red_s: array<f32, ${WG}>;
var<workgroup> red_i: array<u32, ${WG}>;
var<workgroup> bin_mass: array<f32, ${NB * WG}>;
var<workgroup> bin_cnt: array<u32, ${NB * WG}>;
var<workgroup> bsum_m: array<f32, ${NB}>;
var<workgroup> bsum_c: array<u32, ${NB}>;
var<workgroup> sh_f: f32;
var<workgroup> sh_prefix: u32;
var<workgroup> sh_u: u32;
var<workgroup> sh_done: u32;
var<workgroup> sh_n: u32;
var<workgroup> sh_pick: u32;
var<workgroup> sh_total: f32;
var<workgroup> sh_count: atomic<u32>;
var<workgroup> sh_lo: atomic<u32>;
var<workgroup> sh_nan: atomic<u32>;

// Order-preserving map from f32 to u32: a > b as floats iff key(a) > key(b) as integers.
fn key(z: f32) -> u32 {
  let b = bitcast<u32>(z);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

var<private> row_base: u32;
var<private> inv_t: f32;
fn z_at(i: u32) -> f32 { return f32(logits[row_base + i]) * inv_t; }
var<private> row_max: f32;

// exp(z - m) and z - m, but 1 and 0 where z == m: +inf tokens under a +inf maximum weigh 1 each (the limit of a
// growing logit), not exp(inf - inf) = NaN. Finite z == m gives the same either way; m is never -inf (NEG floor).
fn wexp(z: f32, m: f32) -> f32 { return select(exp(z - m), 1.0, z == m); }
fn zdiff(z: f32, m: f32) -> f32 { return select(z - m, 0.0, z == m); }
// From the bits, which compilers may not fold away as they may a z != z.
fn is_nan(z: f32) -> bool { return (bitcast<u32>(z) & 0x7fffffffu) > 0x7f800000u; }
// A quiet NaN for the sentinel row, from a variable: a NaN constant is a shader-creation error.
var<private> nan_bits: u32 = 0x7fc00000u;

// A kept set of at most NB·WG tokens is gathered into the bins' memory once the top-k pass is done with it:
// candidate j's logit/T in bin_mass[j], its index in bin_cnt[j]; index NONE pads to a power of two and sorts last.
fn goes_before(a: u32, b: u32, by_value: bool) -> bool {
  let ia = bin_cnt[a];
  let ib = bin_cnt[b];
  if (by_value && ia != NONE && ib != NONE && bin_mass[a] != bin_mass[b]) { return bin_mass[a] > bin_mass[b]; }
  return ia < ib;
}

// Bitonic sort of the first n2 (a power of two) candidates: largest value first (ties by index), or by index.
fn sort_kept(n2: u32, li: u32, by_value: bool) {
  for (var k = 2u; k <= n2; k <<= 1u) {
    for (var j = k >> 1u; j > 0u; j >>= 1u) {
      for (var t = li; t < n2 / 2u; t += ${WG}u) {
        let a = ((t & ~(j - 1u)) << 1u) | (t & (j - 1u));
        let b = a + j;
        if (select(goes_before(a, b, by_value), goes_before(b, a, by_value), (a & k) == 0u)) {
          let z = bin_mass[a]; bin_mass[a] = bin_mass[b]; bin_mass[b] = z;
          let i = bin_cnt[a]; bin_cnt[a] = bin_cnt[b]; bin_cnt[b] = i;
        }
      }
      workgroupBarrier();
    }
  }
}

fn pow2_at_least(n: u32) -> u32 {
  var q = 1u;
  while (q < n) { q <<= 1u; }
  return q;
}

// Gathers the tokens with key >= lo (the first p.cap of them, in no particular order) and returns how many there
// are; if they all fit, pads them with NONE to a power of two.
fn gather(lo: u32, li: u32) -> u32 {
  if (li == 0u) { atomicStore(&sh_count, 0u); }
  workgroupBarrier();
  for (var i = li; i < p.v; i += ${WG}u) {
    let z = z_at(i);
    if (key(z) >= lo) {
      let slot = atomicAdd(&sh_count, 1u);
      if (slot < p.cap) { bin_mass[slot] = z; bin_cnt[slot] = i; }
    }
  }
  workgroupBarrier();
  if (li == 0u) { sh_pick = atomicLoad(&sh_count); }
  let n = workgroupUniformLoad(&sh_pick);
  if (n <= p.cap) {
    for (var j = n + li; j < pow2_at_least(n); j += ${WG}u) { bin_cnt[j] = NONE; }
  }
  workgroupBarrier();
  return n;
}

// A lower bound for the k-th largest key (k <= WG), from the threads' maxima in bin_cnt[0, WG) (0 for a thread
// that saw no finite logit): the largest maximum that k threads' maxima reach, as each is a distinct token; 0 if
// fewer than k threads saw one.
fn kth_max_bound(k: u32, li: u32) -> u32 {
  if (li == 0u) { atomicStore(&sh_lo, 0u); }
  workgroupBarrier();
  let mine = bin_cnt[li];
  var reach = 0u;
  for (var t = 0u; t < ${WG}u; t++) { reach += select(0u, 1u, bin_cnt[t] >= mine); }
  if (mine != 0u && reach >= k) { atomicMax(&sh_lo, mine); }
  workgroupBarrier();
  if (li == 0u) { sh_pick = atomicLoad(&sh_lo); }
  return workgroupUniformLoad(&sh_pick);
}

// The number of candidates up to q (sorted by value) and every one tied with q, below n.
fn through_ties(q: u32, n: u32, li: u32) -> u32 {
  if (li == 0u) {
    var e = q + 1u;
    while (e < n && bin_mass[e] == bin_mass[q]) { e++; }
    sh_n = e;
  }
  return workgroupUniformLoad(&sh_n);
}

// The smallest of the threads' finite maxima: at least as many tokens reach it as threads saw a finite logit.
fn least_max(li: u32) -> u32 {
  if (li == 0u) { atomicStore(&sh_lo, NONE); }
  workgroupBarrier();
  if (bin_cnt[li] != 0u) { atomicMin(&sh_lo, bin_cnt[li]); }
  workgroupBarrier();
  if (li == 0u) { sh_pick = atomicLoad(&sh_lo); }
  let lo = workgroupUniformLoad(&sh_pick);
  return select(lo, 0u, lo == NONE);
}

fn reaches(acc: f32, goal: f32, strict: bool) -> bool { return select(acc >= goal, acc > goal, strict); }

// Over the first n candidates in their order: the first of positive weight where the running sum of exp(z - max)
// reaches frac of whole (of their own total if whole is 0; exceeds it, if strict), or the last of positive weight
// if the sum falls short. Sets sh_total to their total. Per-thread chunk sums and a serial scan by thread 0, as
// for the row's inverse CDF.
fn find_mass(n: u32, frac: f32, whole: f32, strict: bool, li: u32) -> u32 {
  let chunk = (n + ${WG - 1}u) / ${WG}u;
  let start = min(li * chunk, n);
  let end = min(start + chunk, n);
  var part = 0.0;
  for (var j = start; j < end; j++) { part += wexp(bin_mass[j], row_max); }
  red_s[li] = part;
  workgroupBarrier();
  if (li == 0u) {
    var acc = 0.0;
    for (var j = 0u; j < ${WG}u; j++) { acc += red_s[j]; red_m[j] = acc; }
    let goal = frac * select(acc, whole, whole > 0.0);
    var owner = NONE;
    var last = 0u;
    for (var j = 0u; j < ${WG}u; j++) {
      if (red_s[j] > 0.0) {
        last = j;
        if (owner == NONE && reaches(red_m[j], goal, strict)) { owner = j; }
      }
    }
    sh_u = select(owner, last, owner == NONE);
    sh_f = goal;
    sh_total = acc;
  }
  workgroupBarrier();
  if (li == sh_u) {
    var acc = select(0.0, red_m[li - 1u], li > 0u);
    var pick = NONE;
    var last = start;
    for (var j = start; j < end; j++) {
      let w = wexp(bin_mass[j], row_max);
      if (w > 0.0) { last = j; }
      acc += w;
      if (w > 0.0 && reaches(acc, sh_f, strict)) { pick = j; break; }
    }
    sh_pick = select(pick, last, pick == NONE);
  }
  return workgroupUniformLoad(&sh_pick);
}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let r = linear_wg(wid, nwg);
  if (r >= p.rows) { return; }
  let row = p.row0 + r;
  row_base = r * p.v;
  if (li == 0u) { sh_f = select(p.temperature, temps[row * p.per_row], p.per_row != 0u); atomicStore(&sh_nan, 0u); }
  let temperature = workgroupUniformLoad(&sh_f);
  // A per-row temperature the host would refuse: NaN, +inf or a positive subnormal (by its bits, before any flush).
  let tb = bitcast<u32>(temperature);
  let bad_t = is_nan(temperature) || tb == 0x7f800000u || (tb > 0u && tb < 0x00800000u);
  let greedy = p.greedy != 0u || !(temperature > 0.0);
  inv_t = select(1.0 / temperature, 1.0, greedy);

  // Online softmax statistics and argmax (first index wins ties).
  var m = NEG;
  var s = 0.0;
  var idx = NONE;
  var nan_seen = false;
  for (var i = li; i < p.v; i += ${WG}u) {
    let z = z_at(i);
    // A +inf logit is an overflow in the model (f16 activations), not a choice: the row has no distribution.
    nan_seen = nan_seen || is_nan(z) || bitcast<u32>(f32(logits[row_base + i])) == 0x7f800000u;
    if (z > m) { s = s * exp(m - z) + 1.0; m = z; idx = i; }
    else { s += wexp(z, m); if (idx == NONE) { idx = i; } }
  }
  if (nan_seen) { atomicStore(&sh_nan, 1u); }
  red_m[li] = m; red_s[li] = s; red_i[li] = idx;
  bin_cnt[li] = select(0u, key(m), m > NEG);
  workgroupBarrier();
  for (var k = ${WG / 2}u; k > 0u; k >>= 1u) {
    if (li < k) {
      let m1 = red_m[li]; let m2 = red_m[li + k];
      let mm = max(m1, m2);
      red_s[li] = red_s[li] * wexp(m1, mm) + red_s[li + k] * wexp(m2, mm);
      var i1 = red_i[li]; let i2 = red_i[li + k];
      if (m2 > m1 || (m2 == m1 && i2 < i1)) { i1 = i2; }
      red_i[li] = i1;
      red_m[li] = mm;
    }
    workgroupBarrier();
  }
  let mx = red_m[0];
  let total_s = red_s[0];
  let amax = red_i[0];
  row_max = mx;
  workgroupBarrier();
  // The sentinel row: NaN logits, a bad per-row temperature, or nothing to draw (all -inf: total_s = 0).
  if (li == 0u) { sh_pick = select(0u, 1u, atomicLoad(&sh_nan) != 0u || bad_t || !(total_s > 0.0)); }
  if (workgroupUniformLoad(&sh_pick) != 0u) {
    if (li == 0u) { ids[row] = -1; lp[row] = bitcast<f32>(nan_bits); lp_temp[row] = bitcast<f32>(nan_bits); }
    return;
  }

  if (greedy) {
    if (li == 0u) { ids[row] = i32(amax); lp[row] = 0.0; lp_temp[row] = -log(total_s); }
    return;
  }

  // Threshold key tau: kept = {key(z) >= tau}. Phase 0 is top-k (by count), phase 1 top-p (by mass, among
  // the top-k). Each is a radix select, 4 bits per pass from the top: per-bin counts and masses of candidates
  // whose key matches the prefix so far; thread 0 picks the highest bin where the running total from the
  // top reaches the need. Loop bounds come from uniforms so compilers do not unroll them.
  var tau = 0u;
  var kept_mass = total_s;
  var kept_n = p.v;
  var compact = false;
  var by_value = false;
  var nucleus = false;
  // Top-k from the tokens at or above a bound that k of the threads' maxima reach: typically a few times k of
  // them (~100 for k = 50 of 152k), so when they fit they are gathered and sorted instead of radix passes.
  let top_k_on = p.top_k > 0u && p.top_k < p.v;
  if (top_k_on && p.top_k <= ${WG}u && p.cap > 0u) {
    let bound = kth_max_bound(p.top_k, li);
    let n = gather(bound, li);
    tau = bound; // if they do not fit, the radix passes start from the bound
    if (n <= p.cap) {
      sort_kept(pow2_at_least(n), li, true);
      kept_n = through_ties(p.top_k - 1u, n, li);
      compact = true;
      by_value = true;
    }
  } else if (!top_k_on && p.top_p < 1.0 && p.v > p.cap && p.cap > 0u) {
    // Top-p alone: the tokens at or above the smallest thread maximum (a few times WG of them on typical rows)
    // hold the nucleus if their mass reaches top_p of the row's. If not, the radix passes find it.
    let n = gather(least_max(li), li);
    if (n <= p.cap) {
      sort_kept(pow2_at_least(n), li, true);
      let q = find_mass(n, p.top_p, total_s, false, li);
      if (li == 0u) { sh_u = select(0u, 1u, sh_total >= p.top_p * total_s * 1.00001); }
      if (workgroupUniformLoad(&sh_u) != 0u) {
        kept_n = through_ties(q, n, li);
        compact = true;
        by_value = true;
        nucleus = true;
      }
    }
  }
  for (var phase = select(0u, p.phases, compact); phase < p.phases; phase++) {
    // Top-p and the draw on the gathered kept set, when it fits, instead of passes over the row.
    if (phase == 1u && kept_n <= p.cap) {
      compact = true;
      kept_n = gather(tau, li);
      break;
    }
    let by_count = phase == 0u;
    let on = select((p.top_p < 1.0), top_k_on, by_count);
    if (!on) { continue; }
    let need = select(p.top_p * kept_mass, f32(p.top_k), by_count);
    let lo = tau;
    var prefix = 0u;
    var above_c = 0u;
    var above_m = 0.0;
    for (var ps = 0u; ps < p.passes; ps++) {
      let shift = 28u - 4u * ps;
      for (var b = 0u; b < ${NB}u; b++) { bin_mass[b * ${WG}u + li] = 0.0; bin_cnt[b * ${WG}u + li] = 0u; }
      for (var i = li; i < p.v; i += ${WG}u) {
        let z = z_at(i);
        let k = key(z);
        let kb = k >> shift;
        if (k >= lo && (kb >> 4u) == prefix) {
          let c = (kb & ${NB - 1}u) * ${WG}u + li; // this thread's own column: no races
          bin_cnt[c] += 1u;
          bin_mass[c] += wexp(z, mx);
        }
      }
      workgroupBarrier();
      // ${lanes} threads per bin sum its columns, then one thread per bin finishes.
      let bin = li / ${lanes}u;
      var sm = 0.0;
      var sc = 0u;
      for (var j = li % ${lanes}u; j < ${WG}u; j += ${lanes}u) { sm += bin_mass[bin * ${WG}u + j]; sc += bin_cnt[bin * ${WG}u + j]; }
      red_m[li] = sm;
      red_i[li] = sc;
      workgroupBarrier();
      if (li < ${NB}u) {
        var tm = 0.0;
        var tc = 0u;
        for (var l = 0u; l < ${lanes}u; l++) { tm += red_m[li * ${lanes}u + l]; tc += red_i[li * ${lanes}u + l]; }
        bsum_m[li] = tm;
        bsum_c[li] = tc;
      }
      workgroupBarrier();
      if (li == 0u) {
        // If rounding leaves the need unmet, fall back to the lowest non-empty bin (keep all candidates).
        var chosen = NONE;
        var lowest = 0u;
        var c = above_c;
        var m = above_m;
        for (var bi = 0u; bi < ${NB}u; bi++) {
          let b = ${NB - 1}u - bi;
          if (bsum_c[b] == 0u) { continue; }
          lowest = b;
          if (select(m + bsum_m[b] >= need, f32(c + bsum_c[b]) >= need, by_count)) { chosen = b; break; }
          c += bsum_c[b];
          m += bsum_m[b];
        }
        let fell_back = chosen == NONE;
        if (fell_back) {
          chosen = lowest;
          c = above_c;
          m = above_m;
          for (var b = ${NB - 1}u; b > chosen; b--) { c += bsum_c[b]; m += bsum_m[b]; }
        }
        above_c = c;
        above_m = m;
        sh_prefix = (prefix << 4u) | chosen;
        sh_f = m + bsum_m[chosen];
        sh_n = c + bsum_c[chosen];
        // The kept set is settled once the chosen bin holds one candidate, or is kept whole (top-k reaching k
        // exactly, or the fallback): later passes would only narrow tau down to its lowest candidate.
        let exact_k = by_count && c + bsum_c[chosen] == p.top_k;
        sh_done = select(0u, 1u, bsum_c[chosen] == 1u || exact_k || fell_back);
      }
      prefix = workgroupUniformLoad(&sh_prefix);
      if (workgroupUniformLoad(&sh_done) != 0u) {
        // Every key in the bin is at least its prefix followed by zeros; candidates are also >= lo.
        prefix = max(prefix << shift, lo);
        break;
      }
    }
    tau = prefix;
    kept_mass = workgroupUniformLoad(&sh_f);
    if (by_count) { kept_n = workgroupUniformLoad(&sh_n); }
  }

  if (compact) {
    var m = kept_n;
    if (p.top_p < 1.0 && !nucleus) {
      if (!by_value) { sort_kept(pow2_at_least(kept_n), li, true); }
      // Keep up to the first token whose running mass reaches top_p, and every token tied with it.
      m = through_ties(find_mass(kept_n, p.top_p, 0.0, false, li), kept_n, li);
    }
    // The draw walks the kept set in index order, as over the row.
    let m2 = pow2_at_least(m);
    for (var j = m + li; j < m2; j += ${WG}u) { bin_cnt[j] = NONE; }
    workgroupBarrier();
    sort_kept(m2, li, false);
    let pick = find_mass(m, uniform01(p.seed, p.step, row), 0.0, true, li);
    if (li == 0u) {
      let zl = zdiff(bin_mass[pick], mx);
      ids[row] = i32(bin_cnt[pick]);
      lp[row] = zl - log(sh_total);
      lp_temp[row] = zl - log(total_s);
    }
    return;
  }

  // Inverse CDF in index order: contiguous chunk per thread, serial scan of the chunk sums by thread 0.
  let chunk = (p.v + ${WG - 1}u) / ${WG}u;
  let start = min(li * chunk, p.v);
  let end = min(start + chunk, p.v);
  var part = 0.0;
  for (var i = start; i < end; i++) {
    let z = z_at(i);
    if (key(z) >= tau) { part += wexp(z, mx); }
  }
  red_s[li] = part;
  workgroupBarrier();
  if (li == 0u) {
    var acc = 0.0;
    for (var j = 0u; j < ${WG}u; j++) { acc += red_s[j]; red_m[j] = acc; }
    let goal = uniform01(p.seed, p.step, row) * acc;
    var owner = NONE;
    var last = 0u;
    for (var j = 0u; j < ${WG}u; j++) {
      if (red_s[j] > 0.0) { last = j; }
      if (owner == NONE && red_m[j] > goal) { owner = j; }
    }
    if (owner == NONE) { owner = last; }
    sh_u = owner;
    sh_f = goal;
  }
  workgroupBarrier();
  if (li == sh_u) {
    let total = red_m[${WG - 1}u];
    let goal = sh_f;
    var acc = select(0.0, red_m[li - 1u], li > 0u);
    var pick = NONE;
    var last = start;
    for (var i = start; i < end; i++) {
      let z = z_at(i);
      if (key(z) < tau) { continue; }
      let w = wexp(z, mx);
      if (w > 0.0) { last = i; }
      acc += w;
      if (acc > goal && w > 0.0) { pick = i; break; }
    }
    if (pick == NONE) { pick = last; }
    let zl = zdiff(z_at(pick), mx);
    ids[row] = i32(pick);
    lp[row] = zl - log(total);
    lp_temp[row] = zl - log(total_s);
  }
}`);

  const bytes = logits.dtype === 'f16' ? 2 : 4;
  for (const w of gpu.windows(B * V, bytes, V)) {
    const rows = w.count / V;
    gpu.dispatch({
      op,
      shapes,
      pipeline,
      params: new Params()
        .u32(rows)
        .u32(V)
        .u32(w.start / V)
        .u32(opts.seed ?? 0)
        .u32(opts.step ?? 0)
        .u32(topK)
        .f32(Math.min(topP, 1))
        .f32(perRow ? 0 : temp)
        .u32(opts.greedy ? 1 : 0)
        .u32(2)
        .u32(8)
        .u32(perRow ? 1 : 0)
        .u32(compactCap)
        .bytes(),
      bindings: [logits.binding(w.start * bytes, w.count * bytes), perRow ? temp : unusedTemps(gpu), ids, logprobs, tempLogprobs],
      workgroups: gpu.grid(rows),
    });
  }
  return { ids: ids as Tensor<'i32'>, logprobs: logprobs as Tensor<'f32'>, tempLogprobs: tempLogprobs as Tensor<'f32'> };
}

/** The uniform draw the sampler uses for (seed, step, row), on the host: for references and tests. */
export function sampleUniform(seed: number, step: number, row: number): number {
  const h = hash32(hash32(hash32((seed + 0x9e3779b9) >>> 0) ^ step) ^ row);
  return (h >>> 8) / 16777216;
}

function hash32(x0: number): number {
  let x = x0 >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  x ^= x >>> 16;
  return x >>> 0;
}
