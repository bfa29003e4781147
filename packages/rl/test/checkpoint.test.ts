import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { latestCheckpoint, listCheckpoints, saveCheckpoint } from '../src/checkpoint/checkpoint.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'rl-ckpt-'));

describe('checkpoints', () => {
  it('round-trip step, RNG, pool cursor, config, extras and files; keep the newest N', async () => {
    const run = tmp();
    for (const step of [1, 2, 3]) {
      await saveCheckpoint(run, {
        step,
        rng: { seed: 7, state: [step, 2] },
        poolCursor: { epoch: 0, index: step * 4 },
        config: { ppo: { clipRatio: 0.2 } },
        files: { 'critic.bin': new Uint8Array([step, 1, 2]), 'adapter/adapter_config.json': '{"r":8}' },
        write: (dir) => writeFileSync(join(dir, 'optimizer.bin'), new Uint8Array(100).fill(step)),
        keep: 2,
      });
    }
    const latest = latestCheckpoint(run)!;
    expect(latest.step).toBe(3);
    expect(latest.rng).toEqual({ seed: 7, state: [3, 2] });
    expect(latest.poolCursor).toEqual({ epoch: 0, index: 12 });
    expect(latest.config).toEqual({ ppo: { clipRatio: 0.2 } });
    expect([...latest.read('critic.bin')]).toEqual([3, 1, 2]);
    expect(latest.read('adapter/adapter_config.json').toString()).toBe('{"r":8}');
    expect(latest.read('optimizer.bin')).toEqual(Buffer.alloc(100, 3));
    expect(() => latest.path('missing.bin')).toThrow(/has no file 'missing.bin'/);
    expect(listCheckpoints(run).map((c) => c.step)).toEqual([3, 2]);
  });

  it('ignores a partial temporary directory left by a kill, and the next save clears it', async () => {
    const run = tmp();
    await saveCheckpoint(run, { step: 2, files: { 'a.bin': new Uint8Array(10) } });
    const partial = join(run, 'checkpoints', '.tmp-step-00000004-999-abcd');
    mkdirSync(join(partial, 'adapter'), { recursive: true });
    writeFileSync(join(partial, 'adapter', 'adapter_model.safetensors'), new Uint8Array(5));
    expect(latestCheckpoint(run)!.step).toBe(2);
    await saveCheckpoint(run, { step: 3 });
    expect(existsSync(partial)).toBe(false);
    expect(latestCheckpoint(run)!.step).toBe(3);
  });

  it('skips a damaged checkpoint for the previous one, saying why', async () => {
    const run = tmp();
    await saveCheckpoint(run, { step: 1, files: { 'a.bin': new Uint8Array(10).fill(1) } });
    const damaged = await saveCheckpoint(run, { step: 2, files: { 'a.bin': new Uint8Array(10).fill(2), 'b.bin': new Uint8Array(4) } });
    const skipped: string[] = [];
    writeFileSync(damaged.path('a.bin'), new Uint8Array(10).fill(9)); // same size, other bytes
    expect(latestCheckpoint(run, { onSkip: (_d, why) => skipped.push(why) })!.step).toBe(1);
    expect(skipped).toEqual(['a.bin does not match its SHA-256']);
    truncateSync(damaged.path('b.bin'), 1);
    expect(listCheckpoints(run)[0].problem).toBe('b.bin has 1 bytes, the manifest says 4');
    rmSync(join(damaged.dir, 'checkpoint.json'));
    expect(listCheckpoints(run)[0].problem).toMatch(/^checkpoint\.json is missing or unreadable/);
    expect(latestCheckpoint(tmp())).toBeNull();
  });

  it('a re-save of a step killed between its two renames still leaves that step loadable', async () => {
    const run = tmp();
    const first = await saveCheckpoint(run, { step: 5, extra: { v: 1 } });
    // The state right after `rename(final -> .old-...)`: the new directory never arrived.
    const aside = join(run, 'checkpoints', '.old-step-00000005-1-ffff');
    const { renameSync } = await import('node:fs');
    renameSync(first.dir, aside);
    expect(latestCheckpoint(run)!.extra).toEqual({ v: 1 });
    await saveCheckpoint(run, { step: 6 });
    expect(listCheckpoints(run).map((c) => c.step)).toEqual([6, 5]);
    expect(readdirSync(join(run, 'checkpoints')).filter((e) => e.startsWith('.'))).toEqual([]);
  });

  it('rejects bad arguments by name', async () => {
    await expect(saveCheckpoint(tmp(), { step: -1 })).rejects.toThrow(/step must be a non-negative integer, got -1/);
    await expect(saveCheckpoint(tmp(), { step: 1, files: { '../x': '' } })).rejects.toThrow(/must be a relative path inside the checkpoint/);
    await expect(saveCheckpoint(tmp(), { step: 1, keep: 0 })).rejects.toThrow(/keep must be an integer ≥ 1/);
  });

  it('kill -9 during saves (mid-save and at drifting moments) never leaves a corrupt latest checkpoint', async () => {
    const run = tmp();
    const script = new URL('./fixtures/checkpoint-writer.ts', import.meta.url).pathname;
    for (let round = 0; round < 4; round++) {
      const child = spawn(process.execPath, ['--import', 'tsx', script, run], { stdio: ['ignore', 'pipe', 'inherit'] });
      const exited = new Promise<void>((r) => child.on('exit', () => r()));
      // Even rounds: kill as soon as the second save of this run is halfway. Odd rounds: a while after one completes.
      const trigger = round % 2 === 0 ? 'mid 2' : 'done 1';
      await new Promise<void>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes(trigger + '\n')) resolve();
        });
        void exited.then(() => reject(new Error(`the writer exited on its own before '${trigger}'`)));
      });
      if (round % 2 === 1) await new Promise((r) => setTimeout(r, 5 + round * 10));
      child.kill('SIGKILL');
      await exited;
      if (round % 2 === 0) expect(readdirSync(join(run, 'checkpoints')).some((e) => e.startsWith('.tmp-'))).toBe(true);
      const latest = latestCheckpoint(run);
      expect(latest).not.toBeNull();
      const save = (latest!.extra as { save: number }).save;
      expect(latest!.step).toBe(Math.floor(save / 2));
      expect(latest!.rng).toEqual({ state: save });
      expect(latest!.read('adapter/adapter_model.safetensors').every((b) => b === save % 251)).toBe(true);
      expect(latest!.read('optimizer.bin')).toHaveLength(1 << 20);
    }
  }, 60_000);
});
