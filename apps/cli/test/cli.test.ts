import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { cpuKernelPins } from '@mlagent/env';

const bin = fileURLToPath(new URL('../bin/mlagent.js', import.meta.url));

function mlagent(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 240_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('mlagent', () => {
  it('prints usage and exits 2 with no command, and names an unknown command', () => {
    expect(mlagent().code).toBe(2);
    const r = mlagent('frobnicate');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown command 'frobnicate'/);
  });

  it("prints one command's usage for --help, -h and help COMMAND, and runs nothing", () => {
    for (const args of [['train', '--help'], ['train', '-h'], ['help', 'train']]) {
      const r = mlagent(...args);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^usage: mlagent train /);
      expect(r.stdout).not.toMatch(/mlagent doctor/);
    }
  });

  it('doctor --json reports the adapter, features, limits, variants and the sandbox', () => {
    const r = mlagent('doctor', '--json');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.limits.maxStorageBufferBindingSize).toBeGreaterThan(0);
    expect(typeof report.features.shaderF16).toBe('boolean');
    expect(['tiled', 'subgroup-matrix']).toContain(report.variants.matmulF16);
    expect(report.adapter.dawnFlags).toContain('enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia');
    // One script run as agent code runs: the sandbox it got, and the task modules importable there.
    expect(report.sandbox).toMatchObject({ python: '/usr/bin/python3', outcome: 'ok' });
    expect(['bwrap', 'unshare', 'none']).toContain(report.sandbox.isolation);
    expect(report.sandbox.modules.sklearn).toMatch(/^\d/);
    expect(report.sandbox.kernelPins).toEqual(cpuKernelPins());
    const paths = report.matmulPaths as Array<{ case: string; path: string; aFrom?: string }>;
    expect(paths.map((m) => m.case)).toHaveLength(4);
    for (const m of paths) expect(['tiled', 'gemv', 'subgroup-matrix', 'cpu-tiled', 'cpu-gemv']).toContain(m.path);
    if (report.adapter.architecture === 'software') {
      // lavapipe: decode's GEMV, the windowed kernel with A from a texture, and from storage for Aᵀ.
      expect(paths.map((m) => [m.path, m.aFrom])).toEqual([
        ['cpu-tiled', 'texture'],
        ['cpu-gemv', undefined],
        ['cpu-tiled', 'texture'],
        ['cpu-tiled', 'storage'],
      ]);
      // Head dims that are a multiple of 4 take the CPU attention kernels (decode up to head dim 128).
      expect(report.attentionPaths).toEqual([
        { headDim: 128, forward: 'cpu-tiled', backward: 'cpu-tiled', decode: 'cpu-tiled' },
        { headDim: 32, forward: 'cpu-tiled', backward: 'cpu-tiled', decode: 'cpu-tiled' },
        { headDim: 6, forward: 'scalar', backward: 'scalar', decode: 'scalar' },
      ]);
    } else {
      // GPUs: the tensor-core forward where the adapter has f16 subgroup matrices and the head dim fits them.
      const sgm = report.variants.matmulF16 === 'subgroup-matrix';
      for (const a of report.attentionPaths) {
        expect([a.forward, a.backward, a.decode]).toEqual([sgm && a.headDim % 16 === 0 ? 'subgroup-matrix' : 'scalar', 'scalar', 'scalar']);
      }
    }
  });

  it('names a file-system failure in one line, without a stack trace unless asked (exit 1)', () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'cli-fs-')), 'a-file');
    writeFileSync(file, 'not a directory');
    const r = mlagent('train', '--preset', 'tiny', '--out', file);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe(`mlagent train: EEXIST: file already exists, mkdir '${file}' (MLAGENT_STACK=1 shows where)`);
    expect(readFileSync(file, 'utf8')).toBe('not a directory');
    const withStack = spawnSync(process.execPath, [bin, 'train', '--preset', 'tiny', '--out', file], { encoding: 'utf8', env: { ...process.env, MLAGENT_STACK: '1' } });
    expect(withStack.status).toBe(1);
    expect(withStack.stderr).toMatch(/EEXIST[^\n]*\n.*\n\s+at /);
    rmSync(path.dirname(file), { recursive: true });
  });

  it('rejects bad options with a usage error', () => {
    const r = mlagent('bench', 'kernels', '--iterations', 'zero');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--iterations must be a positive integer/);
    expect(mlagent('doctor', '--bogus').stderr).toMatch(/doctor: .*bogus/);
    expect(mlagent('bench', 'gpus').stderr).toMatch(/unknown target 'gpus'/);
  });

  it('bench kernels --json times a case against torch in alternating rounds, or unpaired on request', () => {
    const r = mlagent('bench', 'kernels', '--json', '--filter', 'add f32', '--iterations', '2', '--rounds', '3');
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.torch).toMatch(/^torch .*; paired, 3 alternating rounds per case/);
    expect(report.results.length).toBeGreaterThan(0);
    for (const x of report.results) {
      expect(x.ms).toBeGreaterThan(0);
      expect(x.rounds).toBe(3);
      expect(x.ratio).toBeGreaterThan(0);
      expect(x.ratioRange[0]).toBeLessThanOrEqual(x.ratio);
      expect(x.ratioRange[1]).toBeGreaterThanOrEqual(x.ratio);
    }
    const u = mlagent('bench', 'kernels', '--filter', 'add f32', '--iterations', '2', '--unpaired');
    expect(u.code, u.stderr).toBe(0);
    expect(u.stdout).toMatch(/Reference: torch .*; unpaired/);
    expect(u.stdout).toMatch(/\| add f32 n=\d+ \| [\d.]+ \|.*\| [\d.]+x \|/);
    expect(mlagent('bench', 'kernels', '--rounds', '0').stderr).toMatch(/--rounds must be a positive integer, got '0'/);
    expect(mlagent('bench', 'kernels', '--rounds', '2', '--unpaired').stderr).toMatch(/--rounds applies to paired timing only/);
  }, 240_000);
});

describe('mlagent bench kernels --check', () => {
  it('samples each case against float64, shows the error in the table, and writes --out after every case', async () => {
    const { mkdtempSync, readFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const out = join(mkdtempSync(join(tmpdir(), 'mlagent-bench-')), 'bench.md');
    const r = mlagent('bench', 'kernels', '--filter', 'linear gemv T=1 3584,add f32', '--no-torch', '--iterations', '1', '--check', '--out', out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/\| ratio \(ours\/torch throughput\) \| check \|/);
    // The GEMV has a check (err well under its bound); add has none.
    expect(r.stdout).toMatch(/\| linear gemv T=1 3584->3584 f16 W \| .* \| err \d\.\de-\d+ \|/);
    expect(r.stdout).toMatch(/\| add f32 n=\d+ \| .* \| - \|/);
    expect(r.stderr).toMatch(/\[1\/2\] linear gemv .* err \d/);
    expect(readFileSync(out, 'utf8').trim()).toBe(r.stdout.trim());
    const plain = mlagent('bench', 'kernels', '--filter', 'add f32', '--no-torch', '--iterations', '1');
    expect(plain.stdout).not.toMatch(/check \|/);
    expect(plain.stdout).toMatch(/^Adapter: [^[]*; host:/m);
    // More Dawn toggles travel with the figures.
    const env = { ...process.env, MLAGENT_DAWN_TOGGLES: 'disable_robustness' };
    const toggled = spawnSync(process.execPath, [bin, 'bench', 'kernels', '--filter', 'add f32', '--no-torch', '--iterations', '1'], { encoding: 'utf8', env });
    expect(toggled.status, toggled.stderr).toBe(0);
    expect(toggled.stdout).toMatch(/^Adapter: .*\[enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia,disable_robustness .*\]; host:/m);
  }, 240_000);

  it('marks a case whose check failed as WRONG in the table', async () => {
    const { markdown } = await import('../src/commands/bench.js');
    const base = { family: 'matmul', ms: 1, timer: 'wall' as const };
    const text = markdown({
      command: 'x',
      date: 'd',
      adapter: 'a',
      host: 'h',
      torch: 't',
      timer: 'wall',
      results: [
        { ...base, name: 'right', check: { err: 1e-6, tol: 5e-3, samples: 4, ok: true } },
        { ...base, name: 'wrong', check: { err: 0.25, tol: 5e-3, samples: 4, ok: false } },
        { ...base, name: 'nan', check: { err: Infinity, tol: 5e-3, samples: 4, ok: false } },
      ],
    });
    expect(text).toMatch(/\| right \| .* \| err 1\.0e-6 \|/);
    expect(text).toMatch(/\| wrong \| .* \| WRONG: err 2\.5e-1 > 0\.005 \|/);
    expect(text).toMatch(/\| nan \| .* \| WRONG: err inf > 0\.005 \|/);
  });
});

describe('mlagent init-model', () => {
  it('writes a tiny model and refuses bad arguments', async () => {
    const { mkdtempSync, existsSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const out = join(mkdtempSync(join(tmpdir(), 'mlagent-cli-')), 'tiny');
    const r = mlagent('init-model', '--arch', 'qwen3', '--preset', 'tiny', '--out', out);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/wrote qwen3 tiny/);
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) expect(existsSync(join(out, f))).toBe(true);
    expect(mlagent('init-model', '--arch', 'llama', '--out', out).stderr).toMatch(/--arch must be qwen2 or qwen3/);
    expect(mlagent('init-model', '--arch', 'qwen2').stderr).toMatch(/--out DIR is required/);
    // A model already there is kept unless --force; the dtype is spelled as other commands spell it.
    const again = mlagent('init-model', '--arch', 'qwen3', '--preset', 'tiny', '--out', out, '--seed', '1');
    expect(again.code).toBe(2);
    expect(again.stderr).toContain(`init-model: ${out} already holds a model; pass --force to replace it`);
    const forced = mlagent('init-model', '--arch', 'qwen3', '--preset', 'tiny', '--out', out, '--dtype', 'f16', '--force');
    expect(forced.code, forced.stderr).toBe(0);
    const { readFileSync } = await import('node:fs');
    expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).torch_dtype).toBe('float16');
    expect(mlagent('init-model', '--arch', 'qwen3', '--out', out, '--dtype', 'bf16', '--force').stderr).toMatch(/--dtype must be f32 or f16 \(or float32, float16\), got 'bf16'/);
  });

  it('refuses a --tokenizer that is missing, a file or lacks the tokenizer files, in one line', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mlagent-cli-tok-'));
    try {
      writeFileSync(path.join(dir, 'afile'), '');
      writeFileSync(path.join(dir, 'tokenizer.json'), '{}');
      const cases: [string, RegExp][] = [
        [path.join(dir, 'nowhere'), /^mlagent init-model: --tokenizer \S+nowhere is not a directory\n$/],
        [path.join(dir, 'afile'), /^mlagent init-model: --tokenizer \S+afile is not a directory\n$/],
        [dir, /^mlagent init-model: --tokenizer \S+ has no tokenizer_config\.json\n$/],
      ];
      for (const [tok, message] of cases) {
        const r = mlagent('init-model', '--arch', 'qwen2', '--preset', 'tiny', '--out', path.join(dir, 'out'), '--tokenizer', tok);
        expect(r.code, tok).toBe(2);
        expect(r.stderr).toMatch(message);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.runIf(process.platform === 'linux')('fails cleanly for an --out under /proc, where a recursive mkdir would never return', () => {
    const r = spawnSync(process.execPath, [bin, 'init-model', '--arch', 'qwen2', '--preset', 'tiny', '--out', '/proc/mlagent-cli-test/m'], { encoding: 'utf8', timeout: 30_000 });
    expect(r.signal, 'killed by the timeout: init-model hung').toBeNull();
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^mlagent init-model: ENOENT: no such file or directory, mkdir '\/proc\/mlagent-cli-test'/);
  }, 60_000);
});
