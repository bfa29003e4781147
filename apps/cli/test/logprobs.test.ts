import { spawnSync } from 'node:child_process';
import { cpSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QwenTokenizer } from '@mlagent/policy';
import { writePeftAdapter } from './peft-adapter.js';
import { mlagent, tinyModel } from './run-cli.js';

let tmp: string;
let model: string;

beforeAll(async () => {
  ({ tmp, model } = await tinyModel('qwen3', 5));
}, 120_000);

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const ORACLE_DIR = fileURLToPath(new URL('../../../tools/oracle', import.meta.url));

/** log p(ids[i] | ids[<i]) for i >= 1 from the float64 PyTorch oracle, with the adapter applied and without. */
function oracleLogprobs(adapter: string, ids: number[]): { adapted: number[]; base: number[] } {
  const script = [
    'import json, os, sys, torch',
    'sys.path.insert(0, sys.argv[1])',
    'import qwen_oracle as q',
    'cfg = json.load(open(os.path.join(sys.argv[2], "config.json")))',
    'w = q.load_weights(sys.argv[2])',
    'lora, scale = q.load_adapter(sys.argv[3])',
    'ids = json.loads(sys.argv[4])',
    'def score(lora):',
    '    with torch.no_grad():',
    '        lp = torch.log_softmax(q.hidden(cfg, w, [ids], lora, scale) @ q.lm_head(cfg, w).T, -1)[0]',
    '    return [lp[i - 1, ids[i]].item() for i in range(1, len(ids))]',
    'print(json.dumps({"adapted": score(lora), "base": score(None)}))',
  ].join('\n');
  const r = spawnSync('/usr/bin/python3', ['-c', script, ORACLE_DIR, model, adapter, JSON.stringify(ids)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`oracle failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

describe('mlagent logprobs', () => {
  it('scores --ids so that they agree with the logprobs generate reported for the same tokens', async () => {
    const g = JSON.parse((await mlagent('generate', '--model', model, '--prompt', 'import numpy as', '--max-new-tokens', '3', '--temperature', '0', '--json')).stdout);
    const ids: number[] = [...g.prompt_ids, ...g.ids];
    const r = await mlagent('logprobs', '--model', model, '--ids', ids.join(','), '--json');
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(Object.keys(out)).toEqual(['ids', 'logprobs']);
    expect(out.ids).toEqual(ids);
    expect(out.logprobs).toHaveLength(ids.length);
    expect(out.logprobs[0]).toBeNull();
    // Greedy generate reports log softmax(logits) of each token it picked: the same quantity, computed by the
    // KV-cache decode path instead of the fused head over the whole sequence.
    const tail = out.logprobs.slice(g.prompt_ids.length);
    tail.forEach((lp: number, i: number) => expect(Math.abs(lp - g.logprobs[i]), `token ${i}`).toBeLessThan(1e-4));
  });

  it('--text is tokenized without special tokens (its ids are in the table printed without --json)', async () => {
    const text = 'Hello, world! <|im_end|>';
    const ids = QwenTokenizer.fromDir(model).encode(text, { addSpecialTokens: false });
    const table = await mlagent('logprobs', '--model', model, '--text', text);
    expect(table.code).toBe(0);
    const lines = table.stdout.trim().split('\n');
    expect(lines).toHaveLength(ids.length + 1);
    expect(lines.slice(0, -1).map((l) => Number(l.split('\t')[1]))).toEqual(ids);
    expect(lines[0]).toMatch(/^0\t\d+\t"Hello"\t-$/);
    expect(lines[lines.length - 1]).toMatch(new RegExp(`^sum -\\d+\\.\\d{4} over ${ids.length - 1} predicted tokens$`));
  });

  it('--adapter applies a PEFT LoRA adapter: logprobs change and match the PyTorch oracle with that adapter', async () => {
    const adapter = writePeftAdapter(join(tmp, 'adapter'), model);
    const ids = [9707, 11, 1879, 0, 220, 3555, 374];
    const r = await mlagent('logprobs', '--model', model, '--adapter', adapter, '--ids', ids.join(','), '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/with LoRA r=4 from/);
    const adapted = JSON.parse(r.stdout).logprobs;
    const ref = oracleLogprobs(adapter, ids);
    let changed = 0;
    for (let i = 1; i < ids.length; i++) {
      changed = Math.max(changed, Math.abs(ref.adapted[i - 1] - ref.base[i - 1]));
      expect(Math.abs(adapted[i] - ref.adapted[i - 1]), `token ${i}`).toBeLessThan(1e-3);
    }
    // The adapter matters: without it the logprobs would be off by more than the tolerance.
    expect(changed).toBeGreaterThan(1e-2);
    const bad = await mlagent('logprobs', '--model', model, '--adapter', model, '--ids', '1,2');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--adapter .* has no adapter_config\.json/);
  });

  it('rejects bad arguments', async () => {
    const cases: [string[], RegExp][] = [
      [['--model', model, '--json'], /exactly one of --text TEXT or --ids 1,2,3/],
      [['--model', model, '--ids', '1,2,x'], /'x' is not one/],
      [['--model', model, '--ids', '1,,2'], /'' is not one/],
      [['--model', model, '--ids', '1,999999'], /token id 999999 is outside this model's vocabulary \[0, 151936\)/],
      [['--model', model, '--text', 'x', '--adapter', join(tmp, 'no-adapter')], /--adapter .*no-adapter has no adapter_config\.json/],
    ];
    for (const [args, message] of cases) {
      const r = await mlagent('logprobs', ...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(message);
    }
  });

  it('says what is wrong with a broken model directory, without a stack trace, in every model command', async () => {
    const broken = (name: string, damage: (dir: string) => void) => {
      const dir = join(tmp, name);
      cpSync(model, dir, { recursive: true });
      damage(dir);
      return dir;
    };
    const dirs: [string, RegExp][] = [
      [broken('no-tokenizer', (d) => rmSync(join(d, 'tokenizer.json'))), /has no tokenizer\.json/],
      [broken('no-weights', (d) => rmSync(join(d, 'model.safetensors'))), /has no model\.safetensors or model\.safetensors\.index\.json/],
      [
        broken('llama', (d) => {
          const cfg = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
          writeFileSync(join(d, 'config.json'), JSON.stringify({ ...cfg, architectures: ['LlamaForCausalLM'], model_type: 'llama' }));
        }),
        /unsupported architecture/,
      ],
      [broken('not-a-tokenizer', (d) => writeFileSync(join(d, 'tokenizer.json'), '{}')), /tokenizer\.json: not a Hugging Face tokenizer \(/],
      // Found only when the weights are read: the loader's error, still without a stack trace.
      [broken('truncated', (d) => truncateSync(join(d, 'model.safetensors'), 1000)), /corrupt or truncated/],
    ];
    const data = join(tmp, 'sft.jsonl');
    writeFileSync(data, `${JSON.stringify({ prompt: 'a', response: 'b' })}\n${JSON.stringify({ prompt: 'c', response: 'd' })}\n`);
    for (const [dir, message] of dirs) {
      for (const args of [['logprobs', '--model', dir, '--ids', '1,2'], ['sft', '--model', dir, '--data', data, '--out', join(tmp, 'sft-out')]]) {
        const r = await mlagent(args[0], ...args.slice(1));
        expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
        expect(r.stderr).toMatch(message);
        expect(r.stderr).not.toMatch(/\n\s+at /);
      }
    }
  }, 120_000);

  it('refuses a sequence longer than the context before loading the weights, in one line', async () => {
    const small = join(tmp, 'ctx16');
    cpSync(model, small, { recursive: true });
    const cfg = JSON.parse(readFileSync(join(small, 'config.json'), 'utf8'));
    writeFileSync(join(small, 'config.json'), JSON.stringify({ ...cfg, max_position_embeddings: 16 }));
    const ids = new Array(40).fill('5').join(',');
    const r = await mlagent('logprobs', '--model', small, '--ids', ids);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^mlagent logprobs: the sequence has 40 tokens, more than the model's 16-token context; shorten --ids\n$/);
    const text = await mlagent('logprobs', '--model', small, '--text', 'a b '.repeat(20));
    expect(text.code).toBe(2);
    expect(text.stderr).toMatch(/^mlagent logprobs: the sequence has \d+ tokens, more than the model's 16-token context; shorten --text\n$/);
    expect((await mlagent('logprobs', '--model', small, '--ids', new Array(16).fill('5').join(','), '--json')).code).toBe(0);
  });

  it('fails on NaN weights, naming the tensor, instead of printing null logprobs', async () => {
    const nan = join(tmp, 'nan-weights');
    cpSync(model, nan, { recursive: true });
    nanTensor(join(nan, 'model.safetensors'), 'model.norm.weight');
    const r = await mlagent('logprobs', '--model', nan, '--ids', '1,2,3', '--json');
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/\nmlagent logprobs: non-finite log-probability of token 1 of sequence 0; the weights in \S+nan-weights hold NaN or Inf values \('model\.norm\.weight'\)\n$/);
  });
});

/** Sets every value of F32 tensor `name` of a safetensors file to NaN. */
function nanTensor(file: string, name: string): void {
  const buf = readFileSync(file);
  const headerLen = Number(buf.readBigUInt64LE(0));
  const [from, to] = (JSON.parse(buf.subarray(8, 8 + headerLen).toString()) as Record<string, { data_offsets: [number, number] }>)[name].data_offsets;
  for (let o = 8 + headerLen + from; o < 8 + headerLen + to; o += 4) buf.writeFloatLE(NaN, o);
  writeFileSync(file, buf);
}
