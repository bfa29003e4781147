import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkSandbox, cpuKernelPins, taskSandboxEnv } from '../src/index.js';

const dir = mkdtempSync(path.join(tmpdir(), 'mlagent-sandbox-check-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('checkSandbox (mlagent doctor)', () => {
  it("runs a script as agent code runs, with the data mounted, and reports the task modules' versions", async () => {
    const data = path.join(dir, 'data');
    mkdirSync(data);
    writeFileSync(path.join(data, 'train.csv'), 'x\n1\n');
    const r = await checkSandbox('/usr/bin/python3', data);
    expect(r.outcome, r.error).toBe('ok');
    expect(['bwrap', 'unshare', 'none']).toContain(r.isolation);
    expect(Object.keys(r.modules)).toEqual(['numpy', 'pandas', 'sklearn', 'torch', 'xgboost']);
    // setup installs Debian's stack, which every task needs.
    for (const [m, v] of Object.entries(r.modules)) expect(v, m).toMatch(/^\d/);
    // The script saw the kernel pins agent code gets (none on hosts without AVX2).
    expect(r.kernelPins).toEqual(cpuKernelPins());
  }, 60_000);

  it('pins the math kernels on AVX2 hosts unless MLAGENT_CPU_KERNEL_PINS=off', () => {
    const avx2 = process.arch === 'x64' && /^flags\s*:.*\bavx2\b/m.test(readFileSync('/proc/cpuinfo', 'utf8'));
    expect(Object.keys(cpuKernelPins())).toEqual(avx2 ? ['ATEN_CPU_CAPABILITY', 'ONEDNN_MAX_CPU_ISA', 'DNNL_MAX_CPU_ISA', 'OPENBLAS_CORETYPE'] : []);
    expect(taskSandboxEnv(2)).toMatchObject({ OMP_NUM_THREADS: '2', ...cpuKernelPins() });
    process.env.MLAGENT_CPU_KERNEL_PINS = 'off';
    try {
      expect(cpuKernelPins()).toEqual({});
      expect(taskSandboxEnv(1)).not.toHaveProperty('OPENBLAS_CORETYPE');
    } finally {
      delete process.env.MLAGENT_CPU_KERNEL_PINS;
    }
  });

  it('says what went wrong when the Python cannot run', async () => {
    const r = await checkSandbox('/no/such/python3');
    expect(r.outcome).toBe('error');
    expect(r.error).toMatch(/No such file/);
    expect(Object.values(r.modules).every((v) => v === null)).toBe(true);
  });
});
