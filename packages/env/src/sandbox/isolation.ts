import { execFile, spawn } from 'node:child_process';
import { existsSync, lstatSync, readlinkSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { seccompProgram } from './seccomp.js';
import type { IsolationLevel } from './types.js';

const BIN_DIRS = ['/usr/bin', '/bin', '/usr/sbin', '/sbin', '/usr/local/bin'];

/** Absolute path of a system tool, looked up in fixed directories (never the caller's PATH). */
export function findTool(name: string): string | null {
  for (const dir of BIN_DIRS) {
    const p = path.join(dir, name);
    if (existsSync(p)) return p;
  }
  return null;
}

function works(argv: string[]): Promise<boolean> {
  return new Promise((resolve) => {
    execFile(argv[0], argv.slice(1), { timeout: 10_000 }, (err) => resolve(!err));
  });
}

let available: Promise<IsolationLevel[]> | undefined;

/**
 * The isolation levels this host supports, strongest first, probed once per process by running `true`
 * under each (namespaces can be missing or forbidden, e.g. in unprivileged containers).
 */
export function availableIsolation(): Promise<IsolationLevel[]> {
  available ??= (async () => {
    const levels: IsolationLevel[] = [];
    const t = findTool('true') ?? '/bin/true';
    const bwrap = findTool('bwrap');
    const bwrapProbe = ['--ro-bind', '/', '/', '--dev', '/dev', '--proc', '/proc', '--unshare-pid', '--unshare-net'];
    if (bwrap && (await works([bwrap, ...bwrapProbe, '--die-with-parent', '--cap-drop', 'ALL', t]))) {
      levels.push('bwrap');
    }
    const unshare = findTool('unshare');
    if (unshare && (await works([unshare, '--pid', '--fork', '--kill-child', '--mount-proc', '--net', t]))) {
      levels.push('unshare');
    }
    levels.push('none');
    return levels;
  })();
  return available;
}

let seccompProbe: Promise<boolean> | undefined;

/** Whether bwrap here applies the seccomp filter (a kernel without seccomp, or an old bwrap, would refuse it). */
export function seccompAvailable(): Promise<boolean> {
  seccompProbe ??= (async () => {
    const bwrap = findTool('bwrap');
    const program = seccompProgram();
    if (!bwrap || !program) return false;
    const t = findTool('true') ?? '/bin/true';
    return new Promise<boolean>((resolve) => {
      const child = spawn(bwrap, ['--ro-bind', '/', '/', '--unshare-pid', '--die-with-parent', '--seccomp', String(SECCOMP_FD), t], {
        stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.once('error', () => resolve(false));
      child.once('exit', (code) => {
        clearTimeout(timer);
        resolve(code === 0);
      });
      (child.stdio[3] as Writable).end(program);
    });
  })();
  return seccompProbe;
}

/** The child's file descriptor that carries the seccomp program to bwrap. */
export const SECCOMP_FD = 3;

function canSearch(dir: string, uid: number): boolean {
  const st = statSync(dir);
  // setpriv sets the gid to the uid and clears supplementary groups.
  const bits = st.uid === uid ? st.mode >> 6 : st.gid === uid ? st.mode >> 3 : st.mode;
  return (bits & 1) !== 0;
}

/**
 * The outermost directories above `paths` that `uid` may not search, so it could never reach those paths.
 * Directories under `fresh` are skipped: the sandbox mounts a new tmpfs there, and bwrap creates the
 * directories that lead to a bind itself.
 */
export function blockedAncestors(paths: string[], uid: number, fresh: string[] = []): string[] {
  const blocked = new Set<string>();
  for (const p of paths) {
    const chain: string[] = [];
    for (let dir = path.dirname(path.resolve(p)); ; dir = path.dirname(dir)) {
      chain.unshift(dir);
      if (dir === path.dirname(dir)) break;
    }
    for (const dir of chain) {
      if (fresh.some((f) => dir === f || dir.startsWith(f + path.sep))) break;
      if (!canSearch(dir, uid)) {
        blocked.add(dir);
        break;
      }
    }
  }
  return [...blocked].filter((d) => ![...blocked].some((o) => o !== d && d.startsWith(o + path.sep)));
}

/** Every directory above `paths` but the root, outermost first, each once. */
export function bindAncestors(paths: string[]): string[] {
  const dirs = new Set<string>();
  for (const p of paths) {
    const chain: string[] = [];
    for (let dir = path.dirname(path.resolve(p)); dir !== path.dirname(dir); dir = path.dirname(dir)) chain.unshift(dir);
    for (const dir of chain) dirs.add(dir);
  }
  return [...dirs].sort((a, b) => a.split(path.sep).length - b.split(path.sep).length);
}

/** Whether `child` is `parent` or lies below it (lexically; both absolute). */
export function inside(child: string, parent: string): boolean {
  return child === parent || child.startsWith(parent.endsWith(path.sep) ? parent : parent + path.sep);
}

/** What a sandboxed command sees of the host under bwrap by default (SandboxOptions.hostView 'system'), read-only. */
export const SANDBOX_SYSTEM_PATHS = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32', '/etc', '/sys'];

/** System files no sandboxed command sees (readable by uid 0, which bwrap runs as when the trainer is root). */
const MASKED_SYSTEM_FILES = ['/etc/shadow', '/etc/gshadow', '/etc/shadow-', '/etc/gshadow-'];

let hostLayout: { systemBinds: string[]; masked: string[] } | undefined;

/**
 * The bwrap arguments that rebuild SANDBOX_SYSTEM_PATHS as this host lays them out (merged-/usr links stay links),
 * and the masked files it has; read once per process, as the host's layout does not change under a run.
 */
function hostSystemLayout(): { systemBinds: string[]; masked: string[] } {
  if (hostLayout) return hostLayout;
  const systemBinds: string[] = [];
  for (const dir of SANDBOX_SYSTEM_PATHS) {
    const st = lstatSync(dir, { throwIfNoEntry: false });
    if (st?.isSymbolicLink()) systemBinds.push('--symlink', readlinkSync(dir), dir);
    else if (st?.isDirectory()) systemBinds.push('--ro-bind', dir, dir);
  }
  return (hostLayout = { systemBinds, masked: MASKED_SYSTEM_FILES.filter((f) => existsSync(f)) });
}

export interface WrapPlan {
  level: IsolationLevel;
  workspace: string;
  readOnlyPaths: string[];
  hiddenPaths: string[];
  /** bwrap: the system directories only, or the whole host root (SandboxOptions.hostView). */
  hostView: 'system' | 'all';
  /** Size of the private /tmp (bwrap only). */
  tmpBytes: number;
  /** Unprivileged uid to run as (when a cgroup cannot limit processes), or null. */
  uid: number | null;
  /** bwrap: load the seccomp filter from file descriptor SECCOMP_FD. */
  seccomp?: boolean;
  command: string[];
}

/** argv that runs `command` under the chosen isolation; rlimits and cgroup joining wrap it later. */
export function wrapCommand(p: WrapPlan): string[] {
  const root = process.getuid?.() === 0;
  const setpriv = findTool('setpriv');
  // Privilege drop inside the namespaces: no capabilities, no setuid gains, optionally another uid.
  const drop: string[] = [];
  if (setpriv && (root || p.uid !== null)) {
    drop.push(setpriv, '--no-new-privs');
    if (p.uid !== null) drop.push(`--reuid=${p.uid}`, `--regid=${p.uid}`, '--clear-groups');
    if (p.level !== 'bwrap') drop.push('--bounding-set=-all', '--inh-caps=-all');
    drop.push('--');
  }
  const inner = [...drop, ...p.command];
  if (p.level === 'none') return inner;
  if (p.level === 'unshare') {
    // A shell is pid 1 of the new PID namespace (pid 1 ignores signals such as SIGXCPU, so the command must
    // not be it); when the command exits, the shell exits and the kernel kills every descendant.
    const init = ['/bin/sh', '-c', '"$@"; exit $?', 'sandbox-init'];
    return [findTool('unshare')!, '--pid', '--fork', '--kill-child', '--mount-proc', '--net', '--ipc', '--uts', '--', ...init, ...inner];
  }
  const host = hostSystemLayout();
  // 'system': a fresh root holding only the system's directories, made read-only below.
  const a = [findTool('bwrap')!, ...(p.hostView === 'all' ? ['--ro-bind', '/', '/'] : host.systemBinds), '--dev', '/dev', '--proc', '/proc'];
  // The run is uid 0 when the trainer is root, and writing a sysctl checks only the file's mode, not capabilities:
  // a writable /proc/sys would let it set host-wide settings (kernel.core_pattern runs a program as host root).
  a.push('--ro-bind', '/proc/sys', '/proc/sys');
  a.push('--perms', '1777', '--size', String(p.tmpBytes), '--tmpfs', '/tmp');
  // Unix sockets of host daemons live in /run; connect() works even on a read-only mount.
  if (existsSync('/run')) a.push('--tmpfs', '/run');
  a.push('--unshare-pid', '--unshare-net', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup-try');
  a.push('--die-with-parent', '--new-session', '--cap-drop', 'ALL');
  if (p.uid !== null) {
    a.push('--cap-add', 'CAP_SETUID', '--cap-add', 'CAP_SETGID');
    // A directory the uid cannot pass through (a mode-0700 home or temp dir) above the workspace or the data
    // is replaced by an empty tmpfs; the binds below then recreate just the paths the run needs.
    for (const dir of blockedAncestors([p.workspace, ...p.readOnlyPaths], p.uid, ['/tmp', '/run'])) {
      a.push('--perms', '0755', '--tmpfs', dir);
    }
  }
  // bwrap makes the directories leading to a bind mode 0700, which an unprivileged uid cannot pass through
  // (absolute paths, such as the data link's target, would fail); these are made 0755 first.
  for (const dir of bindAncestors([p.workspace, ...p.readOnlyPaths])) a.push('--perms', '0755', '--dir', dir);
  for (const ro of p.readOnlyPaths) a.push('--ro-bind', ro, ro);
  a.push('--bind', p.workspace, p.workspace);
  // Hidden paths last, so they win over the workspace and data binds. A mode-000 tmpfs denies even uid 0,
  // which has no CAP_DAC_OVERRIDE in here; /dev/null bound without device access makes open() fail (EACCES).
  for (const h of [...p.hiddenPaths, ...host.masked]) {
    if (statSync(h).isDirectory()) a.push('--perms', '000', '--tmpfs', h, '--remount-ro', h);
    else a.push('--ro-bind', '/dev/null', h);
  }
  // The fresh root's own directories (the mount points made above) take no writes.
  if (p.hostView !== 'all') a.push('--remount-ro', '/');
  if (p.seccomp) a.push('--seccomp', String(SECCOMP_FD));
  a.push('--chdir', p.workspace, '--', ...inner);
  return a;
}
