/** The metric names the built-in tasks and graders know. */
export type MetricName = 'accuracy' | 'auc' | 'logloss' | 'mae' | 'rmse' | 'rmsle' | 'mcrmse' | 'qwk' | 'map@5' | 'pcc';

export type Modality =
  | 'image-classification'
  | 'image-denoising'
  | 'tabular-regression'
  | 'tabular-classification'
  | 'text-classification'
  | 'text-regression'
  | 'graph-node-classification';

export type TaskSplit = 'held-in' | 'held-out';

/** Limits for one execution of the agent's code. */
export interface TaskBudgets {
  timeoutSec: number;
  memoryMb: number;
  cpuSec: number;
  maxProcs: number;
  /** Disk the workspace may use, in MiB (optional; default DEFAULT_DISK_MB). */
  diskMb?: number;
}

/** task.json, validated (see docs/task-format.md). */
export interface TaskSpec {
  name: string;
  title: string;
  modality: Modality;
  split: TaskSplit;
  paperAnalogue?: string;
  /** Metric name (one of MetricName for built-in tasks; imported tasks may name others) and its direction. */
  metric: { name: string; direction: 'maximize' | 'minimize' };
  /** m_init: the shipped baseline's score. */
  baseline: number | null;
  /** m_best: a reference best score. */
  best: number | null;
  budgets: TaskBudgets;
  seed: number;
}

/** One scripted-expert improvement: exact find/replace edits of the baseline train.py. */
export interface TaskIdea {
  idea: string;
  edits: { find: string; replace: string }[];
}

/** Where a listed task comes from: shipped with this package, or in the user's task store. */
export type TaskOrigin = 'built-in' | 'user';

/** A task found by the registry (not yet prepared). */
export interface TaskEntry {
  spec: TaskSpec;
  dir: string;
  origin: TaskOrigin;
}

/** The result of grading one submission. */
export type GradeResult = { ok: true; score: number } | { ok: false; error: string };

/**
 * A task whose data has been prepared: everything an episode needs. The public data directory is mounted
 * read-only at `data/` in every workspace; `privateDir` and the grader stay outside any sandbox.
 */
export interface PreparedTask {
  spec: TaskSpec;
  /** The task directory (task.json, prepare.py, grade.py, env/, ...). */
  dir: string;
  researchProblem: string;
  dataDescription: string;
  /** The starting workspace files (the task's env/). */
  envDir: string;
  /** Prepared public data, read-only. */
  publicDir: string;
  /** Hidden answers: never mounted into a sandbox. */
  privateDir: string;
  ideas: TaskIdea[];
  /** Scores the submission file at `submissionPath` with the task's grader. Never throws for a bad submission. */
  grade(submissionPath: string): Promise<GradeResult>;
}
