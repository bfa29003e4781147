import { runSandboxed } from './run.js';
import type { SandboxOptions, SandboxResult } from './types.js';

/** A pool run's options: those the pool's defaults fill (the time limit among them) may be left out. */
export type SandboxPoolRunOptions = Omit<SandboxOptions, 'timeoutMs'> & { timeoutMs?: number };

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

  /** Runs `opts` over the pool's defaults; a time limit in neither is refused (runSandboxed's error). */
  async run(opts: SandboxPoolRunOptions): Promise<SandboxResult> {
    if (this.running >= this.concurrency) await new Promise<void>((r) => this.waiting.push(r));
    else this.running++;
    try {
      return await runSandboxed({ ...this.defaults, ...opts } as SandboxOptions);
    } finally {
      // Hand the slot straight to the next waiter, so the count never dips and lets a newcomer jump the queue.
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}
