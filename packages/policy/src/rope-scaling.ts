import type { RopeScaling } from '@mlagent/core-kernels';

/**
 * RoPE settings of a config.json: theta, and the frequencies a `rope_scaling` (transformers 4.x) or
 * `rope_parameters` (transformers 5, which moves rope_theta in there) of type linear or yarn gives. Types whose
 * frequencies depend on the sequence length (dynamic, longrope) or on other models' layouts are refused by name.
 */
export interface RopeSettings {
  theta: number;
  /** Undefined for plain RoPE. */
  scaling?: RopeScaling;
}

type Fail = (message: string) => never;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export function ropeSettings(raw: Record<string, unknown>, headDim: number, maxPositionEmbeddings: number, source: string, fail: Fail): RopeSettings {
  const params = raw.rope_parameters;
  if (params !== undefined && params !== null && !isObject(params)) fail(`${source}: rope_parameters must be an object, got ${JSON.stringify(params)}`);
  // transformers 5 reads rope_parameters and writes rope_scaling's fields into it: where both exist it wins.
  const spec = isObject(params) ? params : raw.rope_scaling;
  const field = isObject(params) ? 'rope_parameters' : 'rope_scaling';
  if (isObject(params) && Object.values(params).some(isObject)) {
    fail(`${source}: rope_parameters holds settings per layer type (${Object.keys(params).join(', ')}); only one RoPE for all layers is supported`);
  }
  const nested = isObject(params) ? params.rope_theta : undefined;
  const top = raw.rope_theta;
  for (const [where, v] of [['rope_theta', top], ['rope_parameters.rope_theta', nested]] as const) {
    if (v !== undefined && v !== null && !(typeof v === 'number' && Number.isFinite(v) && v > 1)) fail(`${source}: '${where}' must be a number > 1, got ${JSON.stringify(v)}`);
  }
  // Two thetas that disagree: reading either would be a silent guess.
  if (typeof top === 'number' && typeof nested === 'number' && top !== nested) fail(`${source}: rope_theta ${top} and rope_parameters.rope_theta ${nested} differ`);
  const theta = (typeof nested === 'number' ? nested : typeof top === 'number' ? top : 10000) as number;
  for (const p of [raw.partial_rotary_factor, isObject(spec) ? spec.partial_rotary_factor : undefined]) {
    if (p !== undefined && p !== null && p !== 1) fail(`${source}: partial_rotary_factor ${JSON.stringify(p)} is not supported (RoPE over the whole head dim only)`);
  }
  if (spec === undefined || spec === null) return { theta };
  if (!isObject(spec)) fail(`${source}: ${field} must be an object, got ${JSON.stringify(spec)}`);
  const type = spec.rope_type ?? spec.type;
  // HF refuses a rope_scaling without a type; reading it as plain RoPE would silently drop e.g. its factor.
  if (type === undefined || type === null) {
    if (field === 'rope_parameters' && spec.factor === undefined) return { theta };
    fail(`${source}: ${field} ${JSON.stringify(spec)} has no type/rope_type`);
  }
  const number = (key: string, ok: (v: number) => boolean, want: string): number | undefined => {
    const v = spec[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) fail(`${source}: ${field}.${key} must be ${want}, got ${JSON.stringify(v)}`);
    return v;
  };
  const half = headDim / 2;
  const plain = (i: number) => theta ** ((-2 * i) / headDim);
  if (type === 'default') return { theta };
  if (type === 'linear') {
    const factor = number('factor', (v) => v >= 1, 'a number >= 1') ?? fail(`${source}: ${field} of type linear needs a factor`);
    return { theta, scaling: { invFreq: Array.from({ length: half }, (_, i) => plain(i) / factor) } };
  }
  if (type === 'yarn') return { theta, scaling: yarn(number, plain, half, headDim, theta, maxPositionEmbeddings, spec, `${source}: ${field}`, fail) };
  return fail(`${source}: ${field} of type ${JSON.stringify(type)} is not supported (default, linear and yarn are)`);
}

/**
 * YaRN (Peng et al. 2023) as transformers >= 4.57 and vLLM compute it: the factor as given (4.51 to 4.56 took
 * max_position_embeddings / original_max_position_embeddings instead), pairs that turn fewer than beta_slow times
 * over the original context interpolated (inv_freq / factor), those that turn more than beta_fast times kept, a
 * linear ramp between, and cos/sin scaled by the attention factor 0.1·ln(factor) + 1 (or DeepSeek's mscale ratio).
 */
function yarn(
  number: (key: string, ok: (v: number) => boolean, want: string) => number | undefined,
  plain: (i: number) => number,
  half: number,
  headDim: number,
  theta: number,
  maxPositionEmbeddings: number,
  spec: Record<string, unknown>,
  where: string,
  fail: Fail,
): RopeScaling {
  const factor = number('factor', (v) => v >= 1, 'a number >= 1') ?? fail(`${where} of type yarn needs a factor`);
  const original = number('original_max_position_embeddings', (v) => Number.isInteger(v) && v > 0, 'a positive integer') ?? maxPositionEmbeddings;
  const betaFast = number('beta_fast', (v) => v > 0, 'a positive number') ?? 32;
  const betaSlow = number('beta_slow', (v) => v > 0, 'a positive number') ?? 1;
  const truncate = spec.truncate ?? true;
  if (typeof truncate !== 'boolean') fail(`${where}.truncate must be true or false, got ${JSON.stringify(truncate)}`);
  const mscale = number('mscale', (v) => v > 0, 'a positive number');
  const mscaleAllDim = number('mscale_all_dim', (v) => v > 0, 'a positive number');
  const gain = (m: number) => (factor <= 1 ? 1 : 0.1 * m * Math.log(factor) + 1);
  const attentionFactor = number('attention_factor', (v) => v > 0, 'a positive number') ?? (mscale && mscaleAllDim ? gain(mscale) / gain(mscaleAllDim) : gain(1));
  // The pair index at which a frequency turns `turns` times over the original context.
  const pairTurning = (turns: number) => (headDim * Math.log(original / (turns * 2 * Math.PI))) / (2 * Math.log(theta));
  let low = pairTurning(betaFast);
  let high = pairTurning(betaSlow);
  if (truncate) [low, high] = [Math.floor(low), Math.ceil(high)];
  [low, high] = [Math.max(low, 0), Math.min(high, headDim - 1)];
  if (low === high) high += 0.001;
  const invFreq = Array.from({ length: half }, (_, i) => {
    const interpolated = Math.min(1, Math.max(0, (i - low) / (high - low)));
    return plain(i) * (interpolated / factor + (1 - interpolated));
  });
  return { invFreq, attentionFactor };
}
