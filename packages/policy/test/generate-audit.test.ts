// Audit of the library calls researchers use directly: generate, sequenceLogprobs, the tokenizer and the memory
// planner, with bad, extreme or odd arguments. Each test was seen failing without its fix.
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Gpu, isSoftwareAdapter } from '@mlagent/core-kernels';
import {
  MemoryPlanError,
  NonFiniteError,
  QwenModel,
  QwenTokenizer,
  TokenizerError,
  assertFits,
  bundledTokenizerDir,
  deviceLimits,
  formatMemoryReport,
  generate,
  measurePeak,
  planMemory,
  qwen25_7bConfig,
  sequenceLogprobs,
  type GenerateOptions,
} from '../src/index.js';
import { OptionError } from '../src/generate.js';
import { writeModel } from './fixtures.js';

let gpu: Gpu;
let model: QwenModel;
let dir: string;

beforeAll(async () => {
  gpu = await Gpu.create();
  // A 512-token vocabulary keeps the LM head cheap on lavapipe.
  dir = writeModel('qwen2', 41, 'F32', { vocabSize: 512 });
  model = await QwenModel.load(gpu, dir);
});

afterAll(() => {
  model?.dispose();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The rejection of `p`, which must be an OptionError from `fn` naming `option`, with a message matching `msg`. */
async function expectOptionError(p: Promise<unknown>, fn: string, option: string, msg: RegExp): Promise<void> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, `${fn} should have refused ${option}`).toBeInstanceOf(OptionError);
  expect(e).toMatchObject({ fn, option, name: 'OptionError' });
  expect((e as Error).message).toMatch(msg);
}

/** GPU bytes in use once the queue is idle. */
async function inUse(): Promise<number> {
  await gpu.sync();
  return gpu.memory().inUse;
}

describe('generate: temperatures the kernels cannot use', () => {
  it('refuses T above f32 range or below its smallest normal up front, instead of failing after the prefill', async () => {
    const P = [[1, 2, 3]];
    // 1e39 is finite in JS but +Infinity as f32: it came back as a NonFiniteError blaming the weights.
    await expectOptionError(generate(model, P, { maxNewTokens: 2, temperature: 1e39 }), 'generate', 'temperature', /temperature must be 0 \(greedy\) or within/);
    await expectOptionError(generate(model, P, { maxNewTokens: 2, temperature: 1e300 }), 'generate', 'temperature', /got 1e\+300/);
    // Below 2^-126 the sampler refused it only after caches and prefill, as 'sampleTokens: ...'.
    await expectOptionError(generate(model, P, { maxNewTokens: 2, temperature: 1e-39 }), 'generate', 'temperature', /got 1e-39/);
    // The edges themselves sample: a tiny T is near-greedy, with finite logprobs.
    const greedy = await generate(model, P, { maxNewTokens: 2, temperature: 0 });
    const cold = await generate(model, P, { maxNewTokens: 2, temperature: 2 ** -126, seed: 1 });
    expect(cold[0].ids).toEqual(greedy[0].ids);
    expect(cold[0].logprobs.every(Number.isFinite)).toBe(true);
  });
});

describe('sequenceLogprobs: a temperature below the smallest normal f32', () => {
  it('is refused naming the temperature, not reported as non-finite weights', async () => {
    const r = sequenceLogprobs(model, [[1, 2, 3]], { temperature: 1e-39 });
    await expect(r).rejects.not.toBeInstanceOf(NonFiniteError);
    await expectOptionError(r, 'sequenceLogprobs', 'temperature', /at least 2\^-126/);
    // A huge T is the uniform limit: log(1/V) for every token.
    const hot = await sequenceLogprobs(model, [[1, 2, 3]], { temperature: 1e300 });
    for (const lp of hot[0].logprobs.slice(1)) expect(lp).toBeCloseTo(-Math.log(512), 4);
  });
});

describe('generate: a signal aborted before the call', () => {
  it('runs nothing: no prefill, no caches, no onToken, and empty results', async () => {
    const ac = new AbortController();
    ac.abort();
    const seen: number[] = [];
    await gpu.sync();
    gpu.allocator.resetPeak();
    const before = gpu.memory().inUse;
    const r = await generate(model, [[1, 2, 3], [4, 5]], { maxNewTokens: 4, temperature: 0, signal: ac.signal, onToken: (_b, id) => seen.push(id) });
    await gpu.sync();
    // It used to prefill in full, then sample and stream one token per prompt for a caller already gone.
    expect(seen).toEqual([]);
    expect(r).toEqual([
      { ids: [], logprobs: [], finishReason: 'length' },
      { ids: [], logprobs: [], finishReason: 'length' },
    ]);
    expect(gpu.memory().peak).toBe(before);
    // Bad input is still reported as such.
    await expectOptionError(generate(model, [[1]], { maxNewTokens: 0, signal: ac.signal }), 'generate', 'maxNewTokens', /positive integer/);
  });

  it('(guard) mid-way, or through an onToken that throws, GPU memory returns to where it was', async () => {
    await generate(model, [[1, 2]], { maxNewTokens: 2, temperature: 0 });
    const before = await inUse();
    const ac = new AbortController();
    const r = await generate(model, [[1, 2], [3, 4, 5]], { maxNewTokens: 6, temperature: 0, signal: ac.signal, onToken: (b) => b === 1 && ac.abort() });
    expect(r.map((x) => x.ids.length)).toEqual([1, 1]);
    expect(await inUse()).toBe(before);
    let n = 0;
    const boom = generate(model, [[1, 2], [3, 4, 5]], {
      maxNewTokens: 6,
      temperature: 1,
      seed: 3,
      onToken: () => {
        if (++n === 3) throw new Error('consumer failed');
      },
    });
    await expect(boom).rejects.toThrow('consumer failed');
    expect(await inUse()).toBe(before);
  });

  it('an async onToken that rejects stops the generation and rejects generate, rather than end the process', async () => {
    const before = await inUse();
    const unhandled: unknown[] = [];
    const record = (e: unknown) => unhandled.push(e);
    process.on('unhandledRejection', record);
    try {
      let calls = 0;
      const p = generate(model, [[1, 2]], {
        maxNewTokens: 8,
        temperature: 1,
        seed: 5,
        stopTokenIds: [],
        onToken: async () => {
          calls++;
          throw new Error('stream closed');
        },
      });
      await expect(p).rejects.toThrow('stream closed');
      expect(calls).toBe(1); // stopped at the next step, not after all 8 tokens
      // The last step's rejection too: a one-token call.
      await expect(generate(model, [[1, 2]], { maxNewTokens: 1, temperature: 0, onToken: async () => Promise.reject(new Error('late')) })).rejects.toThrow('late');
      await new Promise((r) => setTimeout(r, 50));
      expect(unhandled).toEqual([]);
      expect(await inUse()).toBe(before);
    } finally {
      process.off('unhandledRejection', record);
    }
  });
});

describe('generate: stop options and callbacks of the wrong type', () => {
  const decode = (ids: number[]) => ids.map((id) => `<${id}>`).join('');
  it('are refused naming the option (a non-string stop was dropped silently; a bare string or id failed as "not iterable")', async () => {
    const P = [[1, 2, 3]];
    const base: GenerateOptions = { maxNewTokens: 3, temperature: 0 };
    // A stop string the caller meant (e.g. an id where a string belongs) must not be ignored without a word.
    await expectOptionError(generate(model, P, { ...base, stopStrings: [5 as unknown as string], decode }), 'generate', 'stopStrings', /stopStrings\[0\] must be a string, got number/);
    await expectOptionError(generate(model, P, { ...base, stopStrings: '</s>' as unknown as string[], decode }), 'generate', 'stopStrings', /must be an array of strings/);
    await expectOptionError(generate(model, P, { ...base, stopTokenIds: 7 as unknown as number[] }), 'generate', 'stopTokenIds', /must be an array of token ids, got number/);
    // A decode that is not a function failed only at the first step, after the prefill.
    await expectOptionError(generate(model, P, { ...base, stopStrings: ['x'], decode: 'tok' as unknown as GenerateOptions['decode'] }), 'generate', 'decode', /decode must be a function, got string/);
    await expectOptionError(generate(model, P, { ...base, onToken: {} as unknown as GenerateOptions['onToken'] }), 'generate', 'onToken', /onToken must be a function/);
    // Empty stop strings are still skipped (they would match at once), without needing decode.
    const r = await generate(model, P, { ...base, stopStrings: [''] });
    expect(r[0].ids).toHaveLength(3);
  });
});

describe('prompts and sequences that are not plain arrays of ids', () => {
  it('a hole in a prompt is refused (it reached the GPU as token 0); a typed array is not called empty', async () => {
    const holed = [1, 2, 3];
    delete (holed as (number | undefined)[])[1];
    await expectOptionError(generate(model, [[4, 5], holed], { maxNewTokens: 2, temperature: 0 }), 'generate', 'prompts', /prompt 1 has a hole at \[1, 1\]/);
    await expectOptionError(sequenceLogprobs(model, [holed]), 'sequenceLogprobs', 'sequences', /sequence 0 has a hole at \[0, 1\]/);
    const typed = new Int32Array([1, 2]) as unknown as number[];
    await expectOptionError(generate(model, [typed], { maxNewTokens: 2 }), 'generate', 'prompts', /prompt 0 must be an array of token ids, got Int32Array \(use Array\.from\)/);
    await expectOptionError(sequenceLogprobs(model, [typed]), 'sequenceLogprobs', 'sequences', /sequence 0 must be an array of token ids, got Int32Array/);
  });
});

describe('typed errors that name the option', () => {
  it('generate, sequenceLogprobs and planMemory refuse bad input with an OptionError (it was a bare Error)', async () => {
    await expectOptionError(generate(model, [[1]], { maxNewTokens: 2, topP: 1.5 }), 'generate', 'topP', /topP must be in \(0, 1\], got 1.5/);
    await expectOptionError(generate(model, [[1]], { maxNewTokens: 2, seed: 2 ** 32 }), 'generate', 'seed', /u32/);
    await expectOptionError(generate(model, [[1]], { maxNewTokens: 2, topK: -1 }), 'generate', 'topK', /topK/);
    // A string that looks valid is shown as one ('got 0.5' read as if 0.5 were refused).
    await expectOptionError(generate(model, [[1]], { maxNewTokens: 2, temperature: '0.5' as unknown as number }), 'generate', 'temperature', /got string "0\.5"$/);
    await expectOptionError(generate(model, [], { maxNewTokens: 2 }), 'generate', 'prompts', /at least one prompt/);
    await expectOptionError(generate(model, [[1, 512]], { maxNewTokens: 2 }), 'generate', 'prompts', /token id 512 at \[0, 1\] is outside the vocabulary \[0, 512\)/);
    // Without options: it failed destructuring undefined.
    await expectOptionError(generate(model, [[1]], undefined as unknown as GenerateOptions), 'generate', 'opts', /maxNewTokens/);
    await expectOptionError(sequenceLogprobs(model, [[1, 2]], { temperature: -1 }), 'sequenceLogprobs', 'temperature', /temperature must be a finite number > 0/);
    // null options failed reading null's temperature.
    await expectOptionError(sequenceLogprobs(model, [[1, 2]], null as unknown as object), 'sequenceLogprobs', 'opts', /options must be an object, got null/);
    expect(() => planMemory(qwen25_7bConfig(), { batch: 0, seqLen: 8 })).toThrow(OptionError);
    expect(() => planMemory(qwen25_7bConfig(), { batch: 1, seqLen: 8, training: true })).toThrow(expect.objectContaining({ option: 'lora' }));
  });
});

describe('assertFits with a budget that is not a number', () => {
  const plan = planMemory(qwen25_7bConfig(), { batch: 1, seqLen: 16 });
  it('refuses NaN or a missing budget and a NaN maxBufferSize (NaN compared false, so anything fitted)', () => {
    expect(() => assertFits(plan, { budgetBytes: NaN })).toThrow(expect.objectContaining({ name: 'OptionError', option: 'budgetBytes' }));
    expect(() => assertFits(plan, {} as { budgetBytes: number })).toThrow(/budgetBytes must be a number >= 0/);
    expect(() => assertFits(plan, { budgetBytes: 2 ** 50, maxBufferSize: NaN })).toThrow(expect.objectContaining({ option: 'maxBufferSize' }));
    // A plan whose total is NaN fits nothing.
    expect(() => assertFits({ ...plan, total: NaN }, { budgetBytes: 2 ** 50 })).toThrow(expect.objectContaining({ option: 'plan' }));
    // Infinity (a device that reports no size) still lets it through; a real budget still refuses it.
    expect(() => assertFits(plan, { budgetBytes: Infinity })).not.toThrow();
    expect(() => assertFits(plan, { budgetBytes: 2 ** 30 })).toThrow(MemoryPlanError);
  });

  it('deviceLimits names a NaN or negative budget as such (NaN read as "WebGPU does not report device memory")', () => {
    expect(() => deviceLimits(gpu, NaN)).toThrow(expect.objectContaining({ name: 'OptionError', option: 'budgetBytes' }));
    expect(() => deviceLimits(gpu, -1)).toThrow(/budgetBytes must be a finite number >= 0, got -1/);
    expect(deviceLimits(gpu, 2 ** 30)).toMatchObject({ budgetBytes: 2 ** 30 });
  });
});

describe('planMemory options that were accepted and planned wrong', () => {
  const cfg = qwen25_7bConfig();
  const lora = { r: 8, targets: ['q_proj'] as const };
  it('refuses a NaN or non-positive maxBinding (the total came out NaN) and an unknown logits mode (planned as fused)', () => {
    const cpuStep = { batch: 1, seqLen: 16, training: true, lora, headKernel: 'cpu' } as const;
    expect(() => planMemory(cfg, { ...cpuStep, maxBinding: NaN })).toThrow(expect.objectContaining({ option: 'maxBinding' }));
    expect(() => planMemory(cfg, { ...cpuStep, maxBinding: 0 })).toThrow(/maxBinding must be a positive integer/);
    expect(Number.isFinite(planMemory(cfg, { ...cpuStep, maxBinding: 2 ** 27 }).total)).toBe(true);
    expect(() => planMemory(cfg, { batch: 1, seqLen: 16, logits: 'none' as 'all' })).toThrow(expect.objectContaining({ option: 'logits' }));
  });

  it('counts a LoRA target named twice once, as the adapter (checkLoraConfig) keeps it', () => {
    const once = planMemory(cfg, { batch: 1, seqLen: 16, lora });
    const twice = planMemory(cfg, { batch: 1, seqLen: 16, lora: { r: 8, targets: ['q_proj', 'q_proj'] } });
    expect(twice.lora).toBe(once.lora);
    expect(twice.total).toBe(once.total);
  });
});

describe("planMemory for generation when prompts are shorter than seqLen", () => {
  it('covers prefill runs that pack more of them than whole seqLen-token prompts would fit', async () => {
    // 4 prompts of 90 tokens + 12 new (seqLen 102) in runs of 192 tokens: generate prefills 2 prompts a run (180
    // tokens); the plan took one 102-token prompt a run and came out 23% under the measured peak.
    const d = writeModel('qwen2', 61, 'F32', { vocabSize: 2048 });
    try {
      const prompts = [0, 1, 2, 3].map((b) => Array.from({ length: 90 }, (_, i) => (i * 37 + b * 11) % 2048));
      await gpu.sync();
      gpu.allocator.emptyCache();
      const base = gpu.memory().inUse;
      let m: QwenModel | undefined;
      const { peak } = await measurePeak(gpu, async () => {
        m = await QwenModel.load(gpu, d);
        await generate(m, prompts, { maxNewTokens: 12, temperature: 0, prefillTokens: 192 });
      });
      m!.dispose();
      const head = { headKernel: isSoftwareAdapter(gpu.adapter) ? 'cpu' : 'tiled', maxBinding: gpu.maxBinding } as const;
      const plan = planMemory(m!.config, { batch: 4, seqLen: 102, kvCache: true, prefillTokens: 192, ...head });
      // The plan must not undercount (it is what refuses work that will not fit), and stay within 10% above.
      expect(plan.total, formatMemoryReport(plan, peak - base)).toBeGreaterThanOrEqual(peak - base);
      expect(plan.total).toBeLessThanOrEqual(1.1 * (peak - base));
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  }, 120_000);
});

describe('QwenTokenizer with arguments of the wrong type', () => {
  const tok = QwenTokenizer.fromDir(bundledTokenizerDir());
  it('encode refuses a non-string (a number encoded to [] silently, undefined was a bare TypeError)', () => {
    expect(() => tok.encode(5 as unknown as string)).toThrow(TokenizerError);
    expect(() => tok.encode(undefined as unknown as string)).toThrow(/encode: text must be a string, got undefined/);
    expect(tok.encode('')).toEqual([]);
  });

  it('decode refuses negative and non-integer ids (-1 decoded to nothing; 1.5 got "must be a non-empty array")', () => {
    // -1 is what sampling gives a row with NaN logits: it must not vanish from a transcript silently.
    expect(() => tok.decode([9707, -1])).toThrow(/decode: ids\[1\] is number -1, not a token id/);
    expect(() => tok.decode([1.5])).toThrow(TokenizerError);
    expect(() => tok.decode(new Int32Array([9707]) as unknown as number[])).toThrow(/ids must be an array of token ids, got Int32Array \(use Array\.from\)/);
    // Documented: ids past the tokenizer (a model's padding rows) decode to nothing, and no ids to ''.
    expect(tok.decode([9707, tok.size + 5])).toBe('Hello');
    expect(tok.decode([])).toBe('');
  });

  it('checkModelVocab refuses a vocab_size that is not a positive integer (NaN passed, no error and no warning)', () => {
    expect(() => tok.checkModelVocab(NaN)).toThrow(TokenizerError);
    expect(() => tok.checkModelVocab(undefined as unknown as number, '/m/config.json')).toThrow(/vocabSize must be a positive integer \(\/m\/config\.json's vocab_size\), got undefined/);
    expect(tok.checkModelVocab(151936)).toBeUndefined();
  });

  it('applyChatTemplate refuses a non-array, a null message and a non-boolean addGenerationPrompt', () => {
    expect(() => tok.applyChatTemplate('hi' as unknown as [])).toThrow(TokenizerError);
    expect(() => tok.applyChatTemplate([null as unknown as { role: 'user'; content: string }], { template: 'ml-agent' })).toThrow(/message 0: needs role/);
    // 'false' is truthy: it opened an assistant turn the caller asked not to have.
    expect(() => tok.applyChatTemplate([{ role: 'user', content: 'a' }], { addGenerationPrompt: 'false' as unknown as boolean })).toThrow(/addGenerationPrompt must be a boolean/);
  });
});
