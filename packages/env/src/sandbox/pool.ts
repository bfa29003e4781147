import { runSandboxed } from './run.js';
import type { SandboxOptions, SandboxResult } from './types.js';

/**
 * A local pool: at most `concurrency` sandboxed runs at once, the rest wait in FIFO order. Each run keeps
 * its own limits; `defaults` fills options a run leaves out.
 */
export class SandboxPool {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    readonly concurrency: number,
    private readonly defaults: Partial<SandboxOptions> = {},
  ) {
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new TypeError(`SandboxPool: option 'concurrency' must be an integer >= 1, got ${String(concurrency)}`);
    }
  }

  /** Runs currently executing. */
  get active(): number {
    return this.running;
  }

  /** Runs waiting for a slot. */
  get pending(): number {
    return this.waiting.length;
  }

  async run(opts: SandboxOptions): Promise<SandboxResult> {
    if (this.running >= this.concurrency) await new Promise<void>((r) => this.waiting.push(r));
    else this.running++;
    try {
      return await runSandboxed({ ...this.defaults, ...opts });
    } finally {
      // Hand the slot straight to the next waiter, so the count never dips and lets a newcomer jump the queue.
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}
