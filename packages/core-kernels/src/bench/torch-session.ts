import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { BenchCase } from './types.js';
import { findTorchPython, torchScriptPath } from './torch.js';

/** What the paired benchmark needs of a torch timer; a fake stands in for it in tests. */
export interface TorchTimer {
  /** The torch version and device, for the report. */
  readonly device: string;
  /** Runs the case's setup and one warm-up run; rejects with the snippet's error. */
  setup(c: BenchCase): Promise<void>;
  /** Times `iters` runs of a set-up case, one millisecond figure per run. */
  time(name: string, iters: number): Promise<number[]>;
  /** Frees a case's tensors. */
  drop(name: string): Promise<void>;
  close(): void;
}

type Reply = { device?: string; ok?: boolean; ms?: number[]; error?: string };

/**
 * A long-lived `torch_bench.py --serve` process, so that torch can be timed in the same rounds as our kernels:
 * on a shared machine either side's speed drifts by 2x within minutes, and only rounds that alternate the two
 * give a ratio that does not move with it.
 */
export class TorchSession implements TorchTimer {
  private readonly waiting: Array<{ resolve: (r: Reply) => void; reject: (e: Error) => void }> = [];
  private exited: Error | undefined;
  private closed = false;
  private stderr = '';

  private constructor(
    private readonly proc: ChildProcessWithoutNullStreams,
    public device = '',
  ) {
    createInterface({ input: proc.stdout }).on('line', (line) => {
      const next = this.waiting.shift();
      if (!next) return;
      try {
        next.resolve(JSON.parse(line) as Reply);
      } catch {
        next.reject(new Error(`torch benchmark answered something that is not JSON: ${line.slice(0, 200)}`));
      }
    });
    proc.stderr.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-4000);
    });
    proc.on('exit', (code, signal) => {
      this.exited = new Error(`torch benchmark process exited (${signal ?? `code ${code}`}): ${this.stderr.slice(-2000)}`);
      for (const w of this.waiting.splice(0)) w.reject(this.exited);
    });
    proc.stdin.on('error', (e) => {
      this.exited ??= e;
      for (const w of this.waiting.splice(0)) w.reject(e);
    });
    proc.on('error', (e) => {
      this.exited = e;
      for (const w of this.waiting.splice(0)) w.reject(e);
    });
  }

  /** Starts the server with the first Python that has torch; undefined when there is none. */
  static async start(python = findTorchPython()): Promise<TorchSession | undefined> {
    if (!python) return undefined;
    const proc = spawn(python, [torchScriptPath(), '--serve'], { stdio: ['pipe', 'pipe', 'pipe'] });
    const session = new TorchSession(proc);
    try {
      session.device = (await session.request({ cmd: 'hello' })).device ?? 'torch';
    } catch (e) {
      session.close();
      throw e;
    }
    return session;
  }

  private request(msg: object): Promise<Reply> {
    if (this.closed) return Promise.reject(new Error('torch benchmark session is closed'));
    if (this.exited) return Promise.reject(this.exited);
    return new Promise<Reply>((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.proc.stdin.write(JSON.stringify(msg) + '\n');
    }).then((r) => {
      if (r.error !== undefined) throw new Error(r.error);
      return r;
    });
  }

  async setup(c: BenchCase): Promise<void> {
    if (!c.torch) throw new Error(`${c.name} has no torch snippet`);
    await this.request({ cmd: 'setup', name: c.name, setup: c.torch.setup, run: c.torch.run });
  }

  async time(name: string, iters: number): Promise<number[]> {
    const r = await this.request({ cmd: 'time', name, iters });
    if (!Array.isArray(r.ms)) throw new Error(`torch benchmark sent no times for ${name}`);
    return r.ms;
  }

  async drop(name: string): Promise<void> {
    await this.request({ cmd: 'drop', name });
  }

  close(): void {
    this.closed = true;
    this.proc.stdin.end();
    if (this.proc.exitCode === null) this.proc.kill();
  }
}
