import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { add, allBenches, findTorchPython, runBenchmarks, selectCases, TorchSession, type BenchCase, type TorchTimer } from '../src/index.js';
import { testGpu } from './helpers.js';

/** A real (tiny) kernel case whose runs are logged, so the order of ours and torch's rounds can be checked. */
function loggedCase(log: string[], torch = true): BenchCase {
  return {
    family: 'test',
    name: 'logged add',
    size: 'cpu',
    flops: 64,
    torch: torch ? { setup: 'a=torch.ones(64); b=torch.ones(64)', run: 'a+b' } : undefined,
    prepare(gpu) {
      const a = gpu.tensor([64], 'f32');
      const b = gpu.tensor([64], 'f32');
      const c = gpu.tensor([64], 'f32');
      return {
        run: () => {
          log.push('ours');
          add(gpu, a, b, c);
        },
        dispose: () => [a, b, c].forEach((t) => t.dispose()),
      };
    },
  };
}

/** Torch stand-in: round r's runs take `msPerRound[r]` each (after one estimating call). */
function fakeTorch(log: string[], msPerRound: number[], failSetup = false): TorchTimer & { dropped: string[] } {
  let calls = 0;
  const dropped: string[] = [];
  return {
    device: 'fake torch',
    dropped,
    setup: async () => {
      if (failSetup) throw new Error('NameError: torch snippet broke');
    },
    time: async (_name, iters) => {
      const ms = calls === 0 ? 1 : msPerRound[calls - 1];
      calls++;
      log.push('torch');
      return Array.from({ length: iters }, () => ms);
    },
    drop: async (name) => void dropped.push(name),
    close: () => undefined,
  };
}

describe('paired kernel benchmark', () => {
  it('alternates our iterations and torch in rounds, flips the order each round, and reports the median round ratio', async () => {
    const gpu = await testGpu();
    const log: string[] = [];
    const torch = fakeTorch(log, [1, 10, 100, 1000, 10000]);
    const [r] = await runBenchmarks(gpu, [loggedCase(log)], { torch, rounds: 5, iterations: 2 });
    // Warm-up and estimate, torch's estimate, then rounds: ours first in even rounds, torch first in odd ones.
    const rounds = log.slice(3).join(' ');
    expect(log.slice(0, 3)).toEqual(['ours', 'ours', 'torch']);
    expect(rounds).toBe(
      ['ours ours torch', 'torch ours ours', 'ours ours torch', 'torch ours ours', 'ours ours torch'].join(' '),
    );
    expect(r.rounds).toBe(5);
    expect(r.torchDevice).toBe('fake torch');
    expect(r.torchMs).toBe(100);
    expect(r.ms).toBeGreaterThan(0);
    expect(r.torchError).toBeUndefined();
    expect(torch.dropped).toEqual(['logged add']);
    // Each round's ratio is torch's ms over ours; the report keeps their median and range.
    const [lo, hi] = r.ratioRange!;
    expect(lo).toBeLessThanOrEqual(r.ratio!);
    expect(hi).toBeGreaterThanOrEqual(r.ratio!);
    expect(hi / lo).toBeGreaterThan(100); // torch's rounds went from 1 to 10,000 ms; ours did not move that much
  });

  it('keeps timing ours when torch fails on a case, and names the failure', async () => {
    const gpu = await testGpu();
    const log: string[] = [];
    const torch = fakeTorch(log, [1], true);
    const [r] = await runBenchmarks(gpu, [loggedCase(log)], { torch, iterations: 3 });
    expect(r.torchError).toMatch(/NameError: torch snippet broke/);
    expect(r.ratio).toBeUndefined();
    expect(r.ms).toBeGreaterThan(0);
    expect(log.filter((x) => x === 'ours')).toHaveLength(2 + 3);
  });

  it('does not blame torch for an error of ours', async () => {
    const gpu = await testGpu();
    const bad: BenchCase = {
      ...loggedCase([]),
      prepare: () => {
        let n = 0;
        return {
          run: () => {
            if (++n > 2) throw new Error('our kernel broke');
          },
          dispose: () => undefined,
        };
      },
    };
    await expect(runBenchmarks(gpu, [bad], { torch: fakeTorch([], [1, 1, 1]), rounds: 3, iterations: 1 })).rejects.toThrow(/our kernel broke/);
  });

  it('times cases without a torch snippet alone', async () => {
    const gpu = await testGpu();
    const log: string[] = [];
    const [r] = await runBenchmarks(gpu, [loggedCase(log, false)], { torch: fakeTorch(log, [1]), iterations: 2 });
    expect(log).not.toContain('torch');
    expect(r.ratio).toBeUndefined();
    expect(r.torchError).toBeUndefined();
  });
});

describe("the CPU reference's BLAS (tools/oracle/blas_info.py)", () => {
  // OpenBLAS 0.3.21 ran its SSE3 'Prescott' kernels on session 29's Intel host (a model it does not know), so torch
  // took 35-42 ms at f32 1024^3 against 15-16 with its Haswell kernels, and the ratio read 0.7x instead of 0.27x.
  it('names a pre-AVX2 fallback on a CPU with AVX2, and only there', () => {
    const oracle = fileURLToPath(new URL('../../../tools/oracle', import.meta.url));
    const kernels = (coretype: string) =>
      spawnSync('/usr/bin/python3', ['-c', `import sys; sys.path.insert(0, ${JSON.stringify(oracle)}); import numpy, blas_info; print(blas_info.blas_kernels())`], {
        encoding: 'utf8',
        env: { ...process.env, OPENBLAS_CORETYPE: coretype },
      }).stdout.trim();
    const avx2 = process.arch === 'x64' && /^flags\s*:.*\bavx2\b/m.test(readFileSync('/proc/cpuinfo', 'utf8'));
    if (avx2) {
      expect(kernels('Prescott')).toMatch(/^OpenBLAS [\d.]+, Prescott kernels \(a fallback: this CPU has AVX2; OPENBLAS_CORETYPE=Haswell or SkylakeX/);
      expect(kernels('Haswell')).toMatch(/^OpenBLAS [\d.]+, Haswell kernels$/);
    } else {
      expect(kernels('Prescott')).toMatch(/^OpenBLAS [\d.]+, Prescott kernels$/);
    }
  });
});

describe('TorchSession (torch_bench.py --serve)', () => {
  it('sets up, times and drops cases in one Python process, and survives a failing snippet', async () => {
    const python = findTorchPython();
    expect(python, 'a python3 with torch (scripts/setup.sh installs python3-torch)').toBeDefined();
    const session = (await TorchSession.start(python))!;
    try {
      expect(session.device).toMatch(/^torch \S+ on /);
      // A CPU reference names its BLAS kernels (scripts/setup.sh installs OpenBLAS): AVX2 or AVX-512 ones move the ratio.
      if (/ on cpu /.test(session.device)) expect(session.device).toMatch(/ on cpu \(\d+ threads, OpenBLAS [\d.]+, \w+ kernels( \(a fallback: this CPU has AVX2; [^)]*\))?\)/);
      const c = loggedCase([]);
      await session.setup(c);
      const ms = await session.time(c.name, 3);
      expect(ms).toHaveLength(3);
      for (const x of ms) expect(x).toBeGreaterThan(0);
      await expect(session.setup({ ...c, name: 'broken', torch: { setup: 'x = 1 / 0', run: 'x' } })).rejects.toThrow(/ZeroDivisionError/);
      await expect(session.time('never set up', 1)).rejects.toThrow(/no case named 'never set up'/);
      await session.drop(c.name);
      await expect(session.time(c.name, 1)).rejects.toThrow(/no case named/);
    } finally {
      session.close();
    }
    await expect(session.time('x', 1)).rejects.toThrow(/torch benchmark session is closed/);
  }, 120_000);
});

describe('benchmark cases', () => {
  it('are filtered by family or name, or by one exact name with =', async () => {
    const gpu = await testGpu();
    const names = (filter: string[]) => selectCases(gpu, allBenches, { filter, all: true }).map((c) => c.name);
    const att = 'attention fwd causal f16 B1 T2048 Hq28 Hkv4 D128';
    // The default case's name begins every tile variant's.
    expect(names([att]).length).toBeGreaterThan(2);
    expect(names([att]).every((n) => n.startsWith(att))).toBe(true);
    expect(names([`=${att}`])).toEqual([att]);
    expect(new Set(names([`=${att}`, '=matmul f16 4096x4096x4096']))).toEqual(new Set([att, 'matmul f16 4096x4096x4096']));
    expect(names(['=matmul f16 4096'])).toEqual([]);
  });

  const sgmAttention = allBenches.find((c) => c.name.startsWith('attention fwd causal f16') && c.name.endsWith('(subgroup-matrix path)'));

  it('time the subgroup-matrix attention forward beside the default one, where the adapter has subgroup matrices', async () => {
    expect(sgmAttention?.needs).toEqual(['shader-f16', 'subgroup-matrix']);
    const gpu = await testGpu();
    const [r] = await runBenchmarks(gpu, [sgmAttention as BenchCase], { all: true, iterations: 1 });
    if (gpu.variants.matmulF16 === 'subgroup-matrix') expect(r.ms).toBeGreaterThan(0);
    else expect(r.skipped).toBe('needs subgroup-matrix');
  });

  it('time candidate tiles only where subgroup matrices exist, each under its own name', () => {
    const tiled = allBenches.filter((c) => / \(tile [^)]+\)$/.test(c.name));
    expect(tiled.map((c) => c.name.replace(/^.* \(tile /, '')).sort()).toEqual(
      [
        ...['2x2.2x4.k64)', '2x2.4x4.k32.g8)', '4x2.2x4.k32)', '4x2.2x4.k32)', 's2.k32.kt)', 's4.k32)', 's4.k32.2p.kt)', 's4.k32.frag.kt)'],
        ...['2x2.4x4.k32.st)', '2x2.4x4.k64.st)', '2x4.4x4.k32.st)', '4x2.4x4.k32.st)'],
        ...['s4.k32.kvs)', 's4.k64.kvs)', 's4.k64.frag.kvs)', 's4.k64.2p.kvs)', 's1.k64.frag.kvs)'],
      ].sort(),
    );
    for (const c of tiled) expect(c.needs).toContain('subgroup-matrix');
    expect(new Set(allBenches.map((c) => `${c.name} [${c.size}]`)).size).toBe(allBenches.length);
  });

  it('force that path, rather than quietly timing the default kernel', async () => {
    const gpu = await testGpu();
    const prepared = (sgmAttention as BenchCase).prepare(gpu);
    try {
      if (gpu.variants.matmulF16 === 'subgroup-matrix') expect(() => prepared.run()).not.toThrow();
      else expect(() => prepared.run()).toThrow(/subgroup-matrix attention needs an adapter with f16 subgroup matrices/);
    } finally {
      prepared.dispose();
    }
  });
});
