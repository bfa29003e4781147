import { execFile, spawn } from 'node:child_process';
import { existsSync, promises as fs, statSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import path from 'node:path';
import { createRunCgroup, type RunCgroup } from './cgroup.js';
import { classify } from './classify.js';
import { diskBaseline, diskViolation, removeAdded, watchDisk, type DiskLimits } from './disk-guard.js';
import { SANDBOX_SYSTEM_PATHS, SECCOMP_FD, availableIsolation, blockedAncestors, findTool, inside, seccompAvailable, wrapCommand } from './isolation.js';
import { seccompProgram } from './seccomp.js';
import type { Writable } from 'node:stream';
import { nprocLimit } from './nproc.js';
import { HeadTailBuffer } from './output.js';
import type { IsolationLevel, LimitMechanisms, SandboxOptions, SandboxResult } from './types.js';
import { leaseUid, type UidLease } from './uid-lease.js';
import { MAX_TIMER_MS } from '../timers.js';

const GiB = 2 ** 30;
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

interface Resolved {
  command: string[];
  workspace: string;
  timeoutMs: number;
  memoryBytes: number;
  cpuSeconds: number;
  maxProcesses: number;
  maxFileBytes: number;
  disk: DiskLimits;
  outputBytes: number;
  readOnlyPaths: string[];
  hiddenPaths: string[];
  hostView: 'system' | 'all';
  env: Record<string, string>;
  isolation: 'auto' | IsolationLevel;
  useCgroup: boolean;
  seccomp: boolean;
}

function bad(option: string, why: string): never {
  throw new TypeError(`runSandboxed: option '${option}' ${why}`);
}

function positiveInt(name: string, v: unknown, def: number, min = 1): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) bad(name, `must be an integer >= ${min}, got ${String(v)}`);
  return v;
}

/**
 * SandboxOptions.hostView, checked: with 'system', an absolute command must lie where the sandbox shows it (the
 * system directories, readOnlyPaths or the workspace), else it would fail inside with a bare "No such file".
 */
function hostViewOf(o: SandboxOptions): 'system' | 'all' {
  const view = o.hostView ?? 'system';
  if (view !== 'system' && view !== 'all') bad('hostView', `must be 'system' or 'all', got ${JSON.stringify(view)}`);
  const cmd: unknown = Array.isArray(o.command) ? o.command[0] : undefined;
  if (view === 'system' && typeof cmd === 'string' && path.isAbsolute(cmd) && existsSync(cmd)) {
    const seen = [...SANDBOX_SYSTEM_PATHS, ...(o.readOnlyPaths ?? []), o.workspace];
    if (!seen.some((dir) => inside(cmd, dir))) {
      bad('command', `${cmd} lies outside what the sandbox shows of the host (${SANDBOX_SYSTEM_PATHS.join(', ')}, readOnlyPaths and the workspace); add its directory to readOnlyPaths, or pass hostView: 'all'`);
    }
  }
  return view;
}

async function realPaths(name: string, v: unknown, mustExist: boolean): Promise<string[]> {
  if (v === undefined) return [];
  if (!Array.isArray(v)) bad(name, 'must be an array of absolute paths');
  const out: string[] = [];
  for (const p of v) {
    if (typeof p !== 'string' || !path.isAbsolute(p)) bad(name, `must hold absolute paths, got ${JSON.stringify(p)}`);
    // Resolve symlinks so a bind or mask lands on the real file, not on a link the command could retarget.
    const real = await fs.realpath(p).catch(() => null);
    if (real === null) {
      if (mustExist) bad(name, `names a path that does not exist: ${p}`);
      continue;
    }
    out.push(real);
  }
  return out;
}

/** Checks every option and fills in defaults; throws a TypeError naming the bad option. */
async function resolveOptions(o: SandboxOptions): Promise<Resolved> {
  if (typeof o !== 'object' || o === null) bad('opts', 'must be an object');
  if (!Array.isArray(o.command) || o.command.length === 0 || o.command.some((a) => typeof a !== 'string' || a.includes('\0'))) {
    bad('command', 'must be a non-empty array of strings without NUL bytes');
  }
  if (typeof o.workspace !== 'string' || !path.isAbsolute(o.workspace)) bad('workspace', 'must be an absolute path');
  const workspace = await fs.realpath(o.workspace).catch(() => null);
  if (workspace === null || !statSync(workspace).isDirectory()) bad('workspace', `is not an existing directory: ${o.workspace}`);
  if (workspace === '/') bad('workspace', 'must not be /');
  if (typeof o.timeoutMs !== 'number' || !Number.isFinite(o.timeoutMs) || o.timeoutMs <= 0) {
    bad('timeoutMs', `must be a positive number of milliseconds, got ${String(o.timeoutMs)}`);
  }
  // Node fires a longer timer after 1 ms: every run would "time out" at once.
  if (o.timeoutMs > MAX_TIMER_MS) bad('timeoutMs', `must be at most ${MAX_TIMER_MS} (about 24.8 days, the longest timer Node keeps), got ${o.timeoutMs}`);
  const env = o.env ?? {};
  if (typeof env !== 'object' || Object.values(env).some((v) => typeof v !== 'string')) bad('env', 'must map names to strings');
  const isolation = o.isolation ?? 'auto';
  if (!['auto', 'bwrap', 'unshare', 'none'].includes(isolation)) bad('isolation', `must be auto|bwrap|unshare|none, got ${String(isolation)}`);
  if (o.useCgroup !== undefined && typeof o.useCgroup !== 'boolean') bad('useCgroup', 'must be a boolean');
  return {
    command: o.command,
    workspace,
    timeoutMs: o.timeoutMs,
    memoryBytes: positiveInt('memoryBytes', o.memoryBytes, 2 * GiB, 16 * 2 ** 20),
    cpuSeconds: positiveInt('cpuSeconds', o.cpuSeconds, Math.max(1, Math.ceil((2 * o.timeoutMs) / 1000))),
    maxProcesses: positiveInt('maxProcesses', o.maxProcesses, 256),
    maxFileBytes: positiveInt('maxFileBytes', o.maxFileBytes, GiB),
    disk: {
      workspaceBytes: positiveInt('diskBytes', o.diskBytes, 2 * GiB),
      workspaceFiles: positiveInt('maxWorkspaceFiles', o.maxWorkspaceFiles, 100_000),
      minFreeBytes: positiveInt('minFreeBytes', o.minFreeBytes, GiB, 0),
    },
    outputBytes: positiveInt('outputBytes', o.outputBytes, 10_000, 2),
    readOnlyPaths: await realPaths('readOnlyPaths', o.readOnlyPaths, true),
    hiddenPaths: await realPaths('hiddenPaths', o.hiddenPaths, false),
    hostView: hostViewOf(o),
    env,
    isolation,
    useCgroup: o.useCgroup ?? true,
    seccomp: o.seccomp ?? true,
  };
}

function run(file: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => execFile(file, args, (err) => (err ? reject(err) : resolve())));
}

const entries = (n: number) => `${n} ${n === 1 ? 'entry' : 'entries'}`;

function signalName(n: number): string | null {
  for (const [name, num] of Object.entries(osConstants.signals)) if (num === n) return name;
  return null;
}

/**
 * Runs a command in the sandbox and reports what happened. Throws only for invalid options or a host
 * that lacks what was explicitly required; anything the command does ends up in the result.
 */
export async function runSandboxed(opts: SandboxOptions): Promise<SandboxResult> {
  const o = await resolveOptions(opts);
  const levels = await availableIsolation();
  if (o.isolation !== 'auto' && !levels.includes(o.isolation)) {
    throw new Error(`runSandboxed: option 'isolation' is '${o.isolation}', which this host does not support (available: ${levels.join(', ')})`);
  }
  const level: IsolationLevel = o.isolation === 'auto' ? levels[0] : o.isolation;
  const prlimit = findTool('prlimit');
  if (!prlimit) throw new Error('runSandboxed: prlimit (util-linux) is required but was not found');

  const warnings: string[] = [];
  const cg: RunCgroup | null = o.useCgroup
    ? await createRunCgroup(o.memoryBytes, o.maxProcesses, (why) => warnings.push(`could not create the run's cgroup (${why}); rlimits limit it instead`))
    : null;
  const cgName = cg ? (`cgroup-v${cg.version}` as const) : null;
  const root = process.getuid?.() === 0;
  // Without a pids cgroup, RLIMIT_NPROC is the only process limit, and the kernel ignores it for root.
  // One uid per concurrent run on the host, since RLIMIT_NPROC counts all of a uid's processes.
  const lease: UidLease | null = !cg && root && findTool('setpriv') ? leaseUid() : null;
  const uid = lease?.uid ?? null;
  const limits: LimitMechanisms = {
    memory: cgName ?? 'rlimit-as',
    processes: cgName ?? (root && uid === null ? 'none' : 'rlimit-nproc'),
  };
  if (level !== 'bwrap') warnings.push('no filesystem isolation: readOnlyPaths and hiddenPaths are not enforced');
  if (level === 'none') warnings.push('no network isolation and no PID namespace');
  if (level === 'none' && !cg) warnings.push('daemonized descendants may survive the run');
  if (limits.processes === 'none') warnings.push('no process-count limit');

  try {
    if (uid !== null) {
      // The unprivileged uid must be able to write its workspace; the (root) trainer can still use it.
      await run(findTool('chown') ?? '/bin/chown', ['-R', `${uid}:${uid}`, o.workspace]);
      // bwrap enters the workspace as root without CAP_DAC_OVERRIDE, so a mode-0700 one (mkdtemp) would shut it out.
      await fs.chmod(o.workspace, (statSync(o.workspace).mode & 0o7777) | 0o001);
      if (level !== 'bwrap') {
        for (const dir of blockedAncestors([o.workspace, ...o.readOnlyPaths], uid)) {
          warnings.push(`uid ${uid} cannot search ${dir}, so the command cannot reach the workspace or data below it`);
        }
      }
    }
    const seccomp = level === 'bwrap' && o.seccomp ? (seccompProgram() !== null && (await seccompAvailable()) ? seccompProgram() : null) : null;
    if (level === 'bwrap' && o.seccomp && !seccomp) warnings.push(`no seccomp filter (bwrap could not apply one on ${process.arch})`);
    const inner = wrapCommand({
      seccomp: seccomp !== null,
      level,
      workspace: o.workspace,
      readOnlyPaths: o.readOnlyPaths,
      hiddenPaths: o.hiddenPaths,
      hostView: o.hostView,
      tmpBytes: o.memoryBytes,
      uid,
      command: o.command,
    });
    const rl = [`--cpu=${o.cpuSeconds}:${o.cpuSeconds + 1}`, `--fsize=${o.maxFileBytes}`, '--core=0'];
    if (!cg) rl.push(`--as=${o.memoryBytes}`);
    if (!cg && limits.processes === 'rlimit-nproc') rl.push(`--nproc=${nprocLimit(uid ?? process.getuid?.() ?? 0, o.maxProcesses)}`);
    let argv = [prlimit, ...rl, '--', ...inner];
    if (cg) {
      // Join the cgroup(s) before exec, so nothing the command runs is ever outside the limits.
      const join = 'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n-1)); done; exec "$@"';
      argv = ['/bin/sh', '-c', join, 'sandbox', String(cg.procsFiles.length), ...cg.procsFiles, ...argv];
    }
    return await execute(o, argv, level, limits, warnings, cg, seccomp);
  } finally {
    await cg?.destroy();
    lease?.release();
  }
}

async function execute(
  o: Resolved,
  argv: string[],
  level: IsolationLevel,
  limits: LimitMechanisms,
  warnings: string[],
  cg: RunCgroup | null,
  seccomp: Buffer | null,
): Promise<SandboxResult> {
  const env = {
    PATH: DEFAULT_PATH,
    HOME: '/tmp',
    TMPDIR: '/tmp',
    LANG: 'C.UTF-8',
    PYTHONUNBUFFERED: '1',
    PYTHONDONTWRITEBYTECODE: '1',
    MPLBACKEND: 'Agg',
    ...o.env,
  };
  const out = new HeadTailBuffer(o.outputBytes);
  const err = new HeadTailBuffer(o.outputBytes);
  const disk = await diskBaseline(o.workspace);
  const started = performance.now();
  // detached: the child leads a new process group (and session), so the group can be killed as one.
  // bwrap reads the seccomp program from SECCOMP_FD (3), the pipe after stderr.
  const child = spawn(argv[0], argv.slice(1), { cwd: o.workspace, env, detached: true, stdio: ['ignore', 'pipe', 'pipe', seccomp ? 'pipe' : 'ignore'] });
  if (seccomp) (child.stdio[SECCOMP_FD] as Writable).on('error', () => undefined).end(seccomp);
  const outStream = child.stdout!;
  const errStream = child.stderr!;
  outStream.on('data', (c: Buffer) => out.push(c));
  errStream.on('data', (c: Buffer) => err.push(c));
  const streamsDone = Promise.all([outStream, errStream].map((s) => new Promise((r) => s.once('close', r))));

  const killTree = async () => {
    try {
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
    } catch {
      /* group already gone */
    }
    await cg?.kill();
  };
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    void killTree();
  }, o.timeoutMs);
  let diskLimit: string | undefined;
  const diskWatch = watchDisk(o.workspace, o.disk, disk, (why) => {
    diskLimit = why;
    void killTree();
  });

  const exit = await new Promise<{ code: number | null; signal: string | null; spawnError?: string }>((resolve) => {
    child.once('error', (e) => resolve({ code: null, signal: null, spawnError: e.message }));
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const wallSeconds = (performance.now() - started) / 1000;
  clearTimeout(timer);
  await diskWatch.stop();
  await killTree(); // leftovers, e.g. daemons when there is no PID namespace
  // A run that broke a limit and ended between two of the watch's checks is caught here.
  diskLimit ??= await diskViolation(o.workspace, o.disk, disk).catch(() => undefined);
  // Stopped for its files: they go too, so that the next run, the snapshot store and the trainer have the disk back.
  const cleanup = diskLimit !== undefined ? await removeAdded(o.workspace, disk) : undefined;
  if (cleanup?.failed.length) warnings.push(`could not remove what the run added to the workspace: ${cleanup.failed.slice(0, 5).join(', ')}`);
  // Descendants that escaped (level 'none', no cgroup) may hold the pipes open: stop waiting after a while.
  const grace = new Promise((r) => setTimeout(r, 2000).unref());
  await Promise.race([streamsDone, grace]);
  outStream.destroy();
  errStream.destroy();
  const stats = (await cg?.stats()) ?? { oomKills: 0, pidsMaxHits: 0 };

  let { code: exitCode, signal } = exit;
  // bwrap's and unshare's init report the command's death by signal N as exit code 128+N.
  if (level !== 'none' && exitCode !== null && exitCode > 128 && exitCode < 128 + 65) {
    signal = signalName(exitCode - 128);
    if (signal) exitCode = null;
  }
  const stderr = err.toString();
  const verdict = exit.spawnError
    ? { outcome: 'error' as const, errorSummary: `Could not start the sandbox: ${exit.spawnError}` }
    : classify({
        exitCode,
        signal,
        timedOut,
        diskLimit: diskLimit && `The run ${diskLimit}; what it added to the workspace (${entries(cleanup?.removed ?? 0)}) was removed.`,
        timeoutSeconds: o.timeoutMs / 1000,
        oomKills: stats.oomKills,
        pidsMaxHits: stats.pidsMaxHits,
        memoryBytes: o.memoryBytes,
        cpuSeconds: o.cpuSeconds,
        maxProcesses: o.maxProcesses,
        stderr,
      });
  return {
    ...verdict,
    exitCode,
    signal,
    wallSeconds,
    stdout: out.toString(),
    stderr,
    stdoutBytes: out.total,
    stderrBytes: err.total,
    ...(diskLimit !== undefined ? { diskLimit } : {}),
    isolation: level,
    limits,
    warnings,
  };
}
