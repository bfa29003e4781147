// Step-wise RL's draws when part of each iteration must come from the states where the expert edited a file.
// Under the v1 reward every valid non-editing action earns the same 0.5, so GRPO groups at those states rarely
// have a reward spread; drawing only edit states, though, leaves the other states with no KL anchor in the batch,
// and the policy drifts there (measured: docs/TRAINING.md). A fixed share of each draws keeps both.
import { ACTIONS, isActionName } from '@mlagent/env';
import type { CollectedStep } from '../collect/records.js';
import { StatesPool, type PoolCursor, type PoolSampler, type PoolState, type SamplingMode } from './states-pool.js';

/** Whether the expert's action at a collected step changed the workspace's files. */
export function expertEdited(step: CollectedStep): boolean {
  return step.action !== null && isActionName(step.action) && ACTIONS[step.action].isEdit;
}

interface Part {
  sampler: PoolSampler;
  count: number;
}

/** B states per iteration: round(share·B) from the edit states, the rest from the others (share null: the whole pool). */
export class StateDraws {
  private constructor(
    private readonly parts: Part[],
    /** Snapshot ids of the edit states, when the draws are split; null otherwise. */
    readonly editStates: ReadonlySet<string> | null,
  ) {}

  static create(
    collection: string,
    options: {
      perIteration: number;
      editShare: number | null;
      mode: SamplingMode;
      seed: number;
      cursors?: PoolCursor[] | null;
      /** The collection's whole pool, when the caller has it loaded already (used as is when editShare is null). */
      whole?: StatesPool;
      /** Snapshot ids never drawn (a held-out validation set). */
      exclude?: ReadonlySet<string>;
    },
  ): StateDraws {
    const { perIteration: b, editShare, whole, exclude } = options;
    const kept = (s: CollectedStep) => !exclude?.has(s.stateBefore);
    const specs: { pool: () => StatesPool; count: number }[] =
      editShare === null
        ? [{ pool: () => (exclude ? StatesPool.fromCollection(collection, { where: kept }) : (whole ?? StatesPool.fromCollection(collection))), count: b }]
        : [
            { pool: () => StatesPool.fromCollection(collection, { where: (s) => expertEdited(s) && kept(s) }), count: Math.round(editShare * b) },
            { pool: () => StatesPool.fromCollection(collection, { where: (s) => !expertEdited(s) && kept(s) }), count: b - Math.round(editShare * b) },
          ];
    const used = specs.filter((s) => s.count > 0);
    if (options.cursors && options.cursors.length !== used.length) {
      throw new Error(`ppo: the checkpoint holds ${options.cursors.length} pool cursor(s), but this config draws from ${used.length} pool(s)`);
    }
    const pools = used.map((s) => {
      try {
        return s.pool();
      } catch (e) {
        if (exclude && exclude.size > 0 && /passes the pool filter/.test((e as Error).message)) {
          throw new Error(`ppo.validationStates: the ${exclude.size} held-out validation states leave no state to train on${editShare === null ? '' : ' in one part of ppo.editStateShare'}; hold out fewer, or set ppo.validationHoldout: false`, { cause: e });
        }
        if (editShare === null) throw e;
        const edits = s === specs[0];
        throw new Error(`ppo.editStateShare is ${editShare}, but the collection at ${collection} has no state where the expert ${edits ? 'edited a file' : 'did not edit'}; set it to null or ${edits ? 0 : 1}`, { cause: e });
      }
    });
    const parts = pools.map((pool, i) => {
      const cursor = options.cursors?.[i];
      return { sampler: cursor ? pool.sampler({ cursor }) : pool.sampler({ mode: options.mode, seed: options.seed + i }), count: used[i].count };
    });
    // With a share of 0 no edit state is drawn, so none needs telling apart.
    const editPool = editShare !== null && used[0] === specs[0] ? pools[0] : null;
    const editStates = editShare === null ? null : new Set(editPool?.states.map((s) => s.snapshotId) ?? []);
    return new StateDraws(parts, editStates);
  }

  /** The next iteration's states: edit states first, then the others. */
  take(): PoolState[] {
    return this.parts.flatMap((p) => p.sampler.take(p.count));
  }

  get cursors(): PoolCursor[] {
    return this.parts.map((p) => p.sampler.cursor);
  }
}
