// One step from a saved state, as a stateless function: restore, step (execute + grade), save, remove the
// workspace. Used by LocalExecutor and by the queue worker, so both give the same results.
import { Episode } from '../episode/episode.js';
import type { StepResult } from '../episode/types.js';
import type { HelperLlmConfig } from '../helper-llm/client.js';
import type { SandboxPool } from '../sandbox/pool.js';
import type { SnapshotStore } from '../snapshots/store.js';
import { prepareTask } from '../tasks/prepare.js';
import { TaskFormatError } from '../tasks/spec.js';
import type { PreparedTask } from '../tasks/types.js';
import { ExecutionRequestError, type ExecutionJobData } from './types.js';

export interface StepContextOptions {
  store: SnapshotStore;
  /** Where workspaces are created. Default os.tmpdir()/mlagent-ws. */
  workRoot?: string;
  pool?: SandboxPool;
  helperLlm?: HelperLlmConfig | null;
  /** Math-library threads of the agent's code. Default 1. */
  threads?: number;
  /** Prepares a task by name; default prepareTask (deterministic, cached on disk). */
  prepare?: (name: string) => Promise<PreparedTask>;
}

export class StepContext {
  private readonly tasks = new Map<string, Promise<PreparedTask>>();

  constructor(readonly options: StepContextOptions) {
    if (!options?.store) throw new TypeError('StepContext: option "store" (a SnapshotStore) is required');
  }

  /** The prepared task, prepared once per process. */
  task(name: string): Promise<PreparedTask> {
    let p = this.tasks.get(name);
    if (!p) {
      const prepare = this.options.prepare ?? ((n: string) => prepareTask(n));
      p = prepare(name).catch((e: Error) => {
        this.tasks.delete(name);
        // A failing prepare.py (a download that broke off, a full disk) may well work on another try or machine:
        // only a task that does not exist or is invalid makes the request one that can never succeed.
        const request = e instanceof TaskFormatError || e instanceof TypeError || /^(unknown task '|no task directory at )/.test(String(e?.message));
        const message = `cannot prepare task '${name}': ${e?.message}`;
        throw request ? new ExecutionRequestError(message) : new Error(message);
      });
      this.tasks.set(name, p);
    }
    return p;
  }

  /** Runs the step; the result's state is in the context's store. */
  async run(d: ExecutionJobData): Promise<StepResult> {
    const task = await this.task(d.task);
    const o = this.options;
    const from = d.fromSnapshot ?? '(initial)';
    if (d.fromSnapshot !== null) {
      // What is wrong with the request (no such state, another task's) is told apart from what is wrong here
      // (an unwritable or full work root, a damaged cache): only the former can never succeed, anywhere.
      const m = await o.store.load(d.fromSnapshot).catch((e: Error) => {
        throw new ExecutionRequestError(`cannot restore state ${from} of task '${d.task}': ${e.message}`);
      });
      if (m.task !== task.spec.name) throw new ExecutionRequestError(`cannot restore state ${from} of task '${d.task}': it belongs to task '${m.task}'`);
    }
    let ep: Episode;
    try {
      ep = await Episode.start(task, {
        store: o.store,
        workRoot: o.workRoot,
        pool: o.pool,
        helperLlm: o.helperLlm ?? null,
        threads: o.threads,
        maxSteps: d.maxSteps,
        maxObservationChars: d.maxObservationChars,
        runEditedScripts: d.runEditedScripts,
        fromSnapshot: d.fromSnapshot ?? undefined,
      });
    } catch (e) {
      // This machine's fault: another worker (or this one, later) may well succeed, so the job is retried.
      throw new Error(`cannot set up the workspace of state ${from} of task '${d.task}' here: ${(e as Error).message}`);
    }
    try {
      if (ep.done) throw new ExecutionRequestError(`state ${d.fromSnapshot} of task '${d.task}' is a finished episode (step ${ep.stepIndex}); no step can follow it`);
      return await ep.step(d.response);
    } finally {
      await ep.close();
    }
  }
}
