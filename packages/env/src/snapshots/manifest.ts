// The manifest of one saved state: everything needed to rebuild the workspace and continue the episode.

/** The format tag written into every manifest. */
export const MANIFEST_FORMAT = 'mlagent-state/1';

/** Stands for the task's public data directory in a link target, so a state does not pin a host path. */
export const PUBLIC_DATA_TARGET = '@public-data';

export interface ManifestFile {
  /** Path relative to the workspace, '/'-separated. */
  path: string;
  /** sha256 of the content (hex), the blob's name. */
  hash: string;
  size: number;
  /** Permission bits (e.g. 0o644). */
  mode: number;
}

/** One step of the episode as the agent saw it. */
export interface StepRecord {
  step: number;
  /** The raw model response. */
  response: string;
  action: string | null;
  actionInput: unknown;
  observation: string;
  outcome: string;
  metric: number | null;
  durationSec: number;
}

export interface StateManifest {
  format: typeof MANIFEST_FORMAT;
  /** TaskSpec.name of the task the state belongs to. */
  task: string;
  /** The state this one was reached from, when saved by an episode after a step. */
  parent: string | null;
  /** Steps taken so far. */
  step: number;
  done: boolean;
  /** The state's metric: the last graded run's, or the task's baseline. */
  metric: number | null;
  files: ManifestFile[];
  /** Directories, including empty ones. */
  dirs: string[];
  /** Symbolic links and their targets (PUBLIC_DATA_TARGET for the data link). */
  links: { path: string; target: string }[];
  /** Entries not saved (over the size limit, or not regular files); the restore leaves them out. */
  omitted: { path: string; size: number; reason: string }[];
  /** Undo history per file: earlier contents (blob hashes; null = the file did not exist), oldest first. */
  undo: Record<string, (string | null)[]>;
  steps: StepRecord[];
}
