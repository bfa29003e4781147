// Executes steps in this process (the sandbox pool limits concurrent scripts): the reference the queue matches.
import type { StepResult } from '../episode/types.js';
import { StepContext, type StepContextOptions } from './execute-step.js';
import { normalizeRequest, type ExecuteRequest, type Executor } from './types.js';

export class LocalExecutor implements Executor {
  private readonly ctx: StepContext;

  constructor(options: StepContextOptions) {
    this.ctx = new StepContext(options);
  }

  async execute(request: ExecuteRequest): Promise<StepResult> {
    return this.ctx.run(normalizeRequest(request));
  }

  async close(): Promise<void> {}
}
