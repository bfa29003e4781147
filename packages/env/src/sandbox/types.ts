/** What the sandbox itself can decide about one execution. */
export type SandboxOutcome = 'ok' | 'error' | 'timeout' | 'oom' | 'killed';

/** Every outcome of an Execute Script step; 'invalid-submission' is decided later, by the grader. */
export type ExecutionOutcome = SandboxOutcome | 'invalid-submission';

/** How strongly the run was isolated (see README): 'bwrap' > 'unshare' > 'none'. */
export type IsolationLevel = 'bwrap' | 'unshare' | 'none';

/** Which mechanism enforced the memory and process-count limits. */
export interface LimitMechanisms {
  memory: 'cgroup-v2' | 'cgroup-v1' | 'rlimit-as';
  processes: 'cgroup-v2' | 'cgroup-v1' | 'rlimit-nproc' | 'none';
}

export interface SandboxOptions {
  /** argv; command[0] should be an absolute path (e.g. '/usr/bin/python3'). */
  command: string[];
  /** Existing directory the command runs in; the only place it may write (besides a private /tmp). */
  workspace: string;
  /** Wall-clock limit; every descendant is killed when it passes. */
  timeoutMs: number;
  /** Memory limit in bytes (cgroup memory.max, else RLIMIT_AS). Default 2 GiB. */
  memoryBytes?: number;
  /** CPU-time limit per process in seconds (RLIMIT_CPU). Default: twice the wall-clock timeout. */
  cpuSeconds?: number;
  /** Process/thread-count limit (cgroup pids.max, else RLIMIT_NPROC for an unprivileged uid). Default 256. */
  maxProcesses?: number;
  /** Largest file the command may write, in bytes (RLIMIT_FSIZE). Default 1 GiB. */
  maxFileBytes?: number;
  /**
   * Disk the workspace may use, in bytes (allocated blocks, checked while the command runs). Past it the run is
   * killed and the files it created are removed. Default 2 GiB.
   */
  diskBytes?: number;
  /** Entries (files, directories, links) the workspace may hold, enforced the same way. Default 100 000. */
  maxWorkspaceFiles?: number;
  /**
   * Free space the run must leave on the workspace's filesystem, so that it cannot fill the disk the trainer
   * writes to (or less, when the run starts with less free). Enforced the same way. Default 1 GiB.
   */
  minFreeBytes?: number;
  /** Bytes of stdout and of stderr kept (half head, half tail). Default 10 000 each. */
  outputBytes?: number;
  /** Host paths visible read-only at the same path (task data). */
  readOnlyPaths?: string[];
  /**
   * What of the host the command sees under bwrap, read-only: 'system' (default) only the system's programs,
   * libraries and configuration (SANDBOX_SYSTEM_PATHS: /usr, /bin, /lib*, /etc, /sys; /etc's password hashes
   * masked), plus readOnlyPaths and the workspace, so the trainer's runs, checkpoints and home directories are not
   * there to read; 'all' the whole root file system.
   */
  hostView?: 'system' | 'all';
  /** Host paths masked so the command can neither read nor write them (answers, graders). */
  hiddenPaths?: string[];
  /** Extra environment variables; the host environment is never passed through. */
  env?: Record<string, string>;
  /** 'auto' (default) picks the strongest available; naming a level requires it (throws if unavailable). */
  isolation?: 'auto' | IsolationLevel;
  /**
   * bwrap: a seccomp filter that refuses new user namespaces, mounts, keyrings, bpf, perf events, userfaultfd,
   * io_uring and foreign ABIs (sandbox/seccomp.ts); default true. Where bwrap cannot apply it, a warning says so.
   */
  seccomp?: boolean;
  /** Use a cgroup for memory and process limits when one is writable (default true). */
  useCgroup?: boolean;
}

export interface SandboxResult {
  outcome: SandboxOutcome;
  /** Exit code of the command, or null when it died from a signal. */
  exitCode: number | null;
  /** Signal name (e.g. 'SIGKILL') when the command died from a signal. */
  signal: string | null;
  wallSeconds: number;
  /** Captured output, cut in the middle with a marker line when over budget. */
  stdout: string;
  stderr: string;
  /** Total bytes the command wrote to each stream, kept or not. */
  stdoutBytes: number;
  stderrBytes: number;
  /** For error/oom/killed: the traceback's last frames and exception line, or a one-line reason. */
  errorSummary?: string;
  isolation: IsolationLevel;
  limits: LimitMechanisms;
  /** When the disk guard stopped the run: what it did, e.g. "filled the workspace past its disk limit of 2048 MiB". */
  diskLimit?: string;
  /** Guarantees that could not be given for this run (e.g. hiddenPaths without bwrap). */
  warnings: string[];
}
