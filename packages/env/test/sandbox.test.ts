import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { readdir, readFile, statfs } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { availableIsolation, runSandboxed, SandboxPool, summarizeError, type SandboxOptions } from '../src/index.js';
import { pythonPrefixPaths } from '../src/tasks/python.js';

// Debian's Python: the first python3 on PATH may be another one.
const PY = '/usr/bin/python3';
const MiB = 2 ** 20;
let root: string;
let ws: string;
let data: string;
let secret: string;
let hostTmp: string;

beforeAll(() => {
  // Outside /tmp: the sandbox gets a private /tmp, which would hide these paths anyway and prove nothing.
  root = mkdtempSync(path.join(existsSync('/var/tmp') ? '/var/tmp' : tmpdir(), 'mlagent-sbx-test-'));
  hostTmp = mkdtempSync(path.join(tmpdir(), 'mlagent-sbx-host-'));
  writeFileSync(path.join(hostTmp, 'host.txt'), 'host\n');
  ws = path.join(root, 'workspace');
  data = path.join(root, 'data');
  secret = path.join(root, 'private');
  for (const d of [ws, data, secret]) mkdirSync(d);
  writeFileSync(path.join(data, 'train.csv'), 'x,y\n1,2\n');
  writeFileSync(path.join(secret, 'answers.csv'), 'id,label\n1,SECRET\n');
  writeFileSync(path.join(root, 'grader.py'), 'SECRET = 1\n');
  writeFileSync(path.join(root, 'outside.txt'), 'original\n');
});

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
  rmSync(hostTmp, { recursive: true, force: true });
});

function py(code: string, extra: Partial<SandboxOptions> = {}) {
  return runSandboxed({
    command: [PY, '-u', '-c', code],
    workspace: ws,
    timeoutMs: 5000,
    memoryBytes: 512 * MiB,
    maxProcesses: 64,
    readOnlyPaths: [data],
    hiddenPaths: [secret, path.join(root, 'grader.py')],
    ...extra,
  });
}

/** Host pids whose command line contains `marker` (our sandboxed processes tag themselves with one). */
function pidsWith(marker: string): number[] {
  const found: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(marker)) found.push(Number(p));
    } catch {
      /* exited meanwhile */
    }
  }
  return found;
}

async function countWith(marker: string): Promise<number> {
  const pids = (await readdir('/proc')).filter((p) => /^\d+$/.test(p));
  const lines = await Promise.all(pids.map((p) => readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '')));
  return lines.filter((l) => l.includes(marker)).length;
}

/** Python that leaves a daemon (double fork + setsid) sleeping with `marker` in its argv, then spins. */
function daemonThenSpin(marker: string): string {
  return `
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv('${PY}', ['${PY}', '-c', 'import time; time.sleep(1000)', '${marker}'])
    os._exit(0)
print('daemon started', flush=True)
while True:
    pass
`;
}

describe('runSandboxed', () => {
  it('reports the isolation it used (bubblewrap is installed by scripts/setup.sh)', async () => {
    expect(await availableIsolation()).toContain('bwrap');
    const r = await py('print("hello"); import sys; print("err", file=sys.stderr)');
    expect(r.outcome).toBe('ok');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe('hello\n');
    expect(r.stderr).toBe('err\n');
    expect(r.isolation).toBe('bwrap');
    expect(r.warnings).toEqual([]);
    expect(r.wallSeconds).toBeGreaterThan(0);
  });

  it('runs a script file in the workspace, which it may write', async () => {
    writeFileSync(path.join(ws, 'train.py'), 'open("submission.csv", "w").write("id,y\\n1,3\\n")\nprint(open("' + data + '/train.csv").read())\n');
    const r = await runSandboxed({ command: [PY, '-u', 'train.py'], workspace: ws, timeoutMs: 5000, readOnlyPaths: [data] });
    expect(r.outcome).toBe('ok');
    expect(r.stdout).toContain('x,y');
    expect(readFileSync(path.join(ws, 'submission.csv'), 'utf8')).toBe('id,y\n1,3\n');
  });

  it('classifies an exception as error with the traceback summary', async () => {
    const code = 'def a(): b()\ndef b(): c()\ndef c(): d()\ndef d(): raise ValueError("bad column")\nprint("before")\na()';
    const r = await py(code);
    expect(r.outcome).toBe('error');
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toBe('before\n');
    expect(r.errorSummary).toMatch(/^Traceback \(last 3 of 5 frames\):/);
    expect(r.errorSummary).toContain('in d');
    expect(r.errorSummary).not.toContain('in <module>');
    expect(r.errorSummary!.split('\n').at(-1)).toBe('ValueError: bad column');
  });

  it('kills an infinite loop and every descendant, daemons included, at the timeout', async () => {
    const marker = `mlagent-daemon-${process.pid}-${Date.now()}`;
    let sawDaemon = false;
    const poll = setInterval(() => (sawDaemon ||= pidsWith(marker).length > 0), 100);
    const r = await py(daemonThenSpin(marker), { timeoutMs: 2000 });
    clearInterval(poll);
    expect(r.outcome).toBe('timeout');
    expect(r.stdout).toContain('daemon started');
    expect(r.wallSeconds).toBeGreaterThanOrEqual(1.9);
    expect(r.wallSeconds).toBeLessThan(5);
    expect(sawDaemon).toBe(true);
    expect(pidsWith(marker)).toEqual([]);
  }, 20_000);

  it('classifies a memory bomb as oom', async () => {
    const r = await py('chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 2**20))');
    expect(r.outcome).toBe('oom');
    expect(r.errorSummary).toBeTruthy();
  }, 20_000);

  it('contains a fork bomb at the process limit', async () => {
    const r = await py('import os\nwhile True:\n    os.fork()', { maxProcesses: 32 });
    expect(r.outcome).toBe('killed');
    expect(r.errorSummary).toContain('Process limit reached (32');
  }, 20_000);

  it('contains a fork bomb that ignores fork errors until the timeout, leaving nothing behind', async () => {
    const marker = `mlagent-forkbomb-${process.pid}-${Date.now()}`;
    const code = `import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass`;
    // One asynchronous census mid-run: synchronous /proc reads during a fork bomb would stall our own timers.
    const census = new Promise<number>((resolve) => setTimeout(() => void countWith(marker).then(resolve), 1000));
    const r = await runSandboxed({ command: [PY, '-c', code, marker], workspace: ws, timeoutMs: 2000, maxProcesses: 32 });
    const peak = await census;
    expect(r.wallSeconds).toBeLessThan(4);
    expect(r.outcome).toBe('timeout');
    expect(peak).toBeGreaterThan(1);
    expect(peak).toBeLessThanOrEqual(32);
    expect(pidsWith(marker)).toEqual([]);
  }, 20_000);

  it('enforces the CPU-time limit', async () => {
    const r = await py('while True: pass', { cpuSeconds: 1 });
    expect(r.outcome).toBe('killed');
    expect(r.signal).toBe('SIGXCPU');
    expect(r.errorSummary).toContain('CPU-time limit');
  }, 20_000);

  it("classifies a script's own signal (segfault, abort, a kill it sent itself) as an error, not as a limit", async () => {
    // 'killed' is the sandbox's limits, a corner case the reward scores 0.5; a crash scores 0.
    for (const [code, signal] of [
      ['import os, signal\nos.kill(os.getpid(), signal.SIGKILL)', 'SIGKILL'],
      ['import ctypes\nctypes.string_at(0)', 'SIGSEGV'],
      ['import os\nos.abort()', 'SIGABRT'],
    ] as const) {
      const r = await py(code);
      expect(r.signal, signal).toBe(signal);
      expect(r.outcome, signal).toBe('error');
      expect(r.errorSummary, signal).toContain(`Crashed: ended by ${signal}.`);
    }
  }, 30_000);

  describe('network', () => {
    let server: net.Server;
    let port = 0;
    let connections = 0;
    beforeAll(async () => {
      server = net.createServer((s) => {
        connections++;
        s.destroy();
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      port = (server.address() as net.AddressInfo).port;
    });
    afterAll(() => new Promise<void>((r) => server.close(() => r())));

    const connect = () =>
      `import socket\ns = socket.socket()\ns.settimeout(2)\ntry:\n    s.connect(("127.0.0.1", ${port}))\n    print("CONNECTED")\nexcept OSError as e:\n    print("FAILED", e)`;

    it('cannot reach a port the host listens on', async () => {
      const r = await py(connect());
      expect(r.outcome).toBe('ok');
      expect(r.stdout).toMatch(/^FAILED/);
      expect(connections).toBe(0);
    });

    it('(control: without isolation the same script connects)', async () => {
      const r = await py(connect(), { isolation: 'none' });
      expect(r.stdout).toMatch(/^CONNECTED/);
      expect(r.warnings.join(' ')).toMatch(/network/);
      expect(connections).toBe(1);
    });
  });

  it('cannot read, list or write the hidden paths', async () => {
    const code = `
import os
for attempt in [lambda: open('${secret}/answers.csv').read(), lambda: os.listdir('${secret}'),
                lambda: open('${secret}/new.csv', 'w').write('x'), lambda: open('${root}/grader.py', 'w').write('x')]:
    try:
        print('LEAK', repr(attempt()))
    except OSError as e:
        print('DENIED', type(e).__name__)
try:
    print('LEAK', repr(open('${root}/grader.py').read()))
except OSError as e:
    print('DENIED', type(e).__name__)
print('VISIBLE', sorted(os.listdir('${root}')))
`;
    const r = await py(code);
    expect(r.outcome).toBe('ok');
    expect(r.stdout).not.toContain('LEAK');
    expect(r.stdout.match(/DENIED/g)).toHaveLength(5);
    // Only what was bound: the rest of the directory is not there at all (hostView 'system').
    expect(r.stdout).toContain("VISIBLE ['data', 'grader.py', 'private', 'workspace']");
    expect(readFileSync(path.join(secret, 'answers.csv'), 'utf8')).toContain('SECRET');
    expect(existsSync(path.join(secret, 'new.csv'))).toBe(false);
    expect(readFileSync(path.join(root, 'grader.py'), 'utf8')).toBe('SECRET = 1\n');
  });

  it("sees only the host's system directories (hostView 'system'): not the trainer's files, homes or password hashes", async () => {
    const code = `
import os
for p in ['${root}/outside.txt', '/etc/shadow', '/etc/passwd', '/usr/bin/python3']:
    try:
        open(p, 'rb').read(1)
        print('READ', p)
    except OSError as e:
        print('NO', p, type(e).__name__)
for d in ['/root', '/home', '/var/log', '/opt', '/usr', '/etc', '/sys/devices/system/cpu']:
    print('DIR', d, os.path.isdir(d))
`;
    const r = await py(code);
    expect(r.outcome, r.stderr).toBe('ok');
    const lines = r.stdout.trim().split('\n');
    expect(lines.slice(0, 4)).toEqual([`NO ${root}/outside.txt FileNotFoundError`, 'NO /etc/shadow PermissionError', 'READ /etc/passwd', 'READ /usr/bin/python3']);
    expect(lines.slice(4)).toEqual(['/root False', '/home False', '/var/log False', '/opt False', '/usr True', '/etc True', '/sys/devices/system/cpu True'].map((l) => `DIR ${l}`));
    // hostView 'all': the whole root, read-only; the password hashes stay masked.
    const all = await py(code, { hostView: 'all' });
    expect(all.stdout).toContain(`READ ${root}/outside.txt`);
    expect(all.stdout).toContain('NO /etc/shadow PermissionError');
    // A command the sandbox would not show is refused up front, naming the fix.
    await expect(runSandboxed({ command: [path.join(root, 'outside.txt')], workspace: ws, timeoutMs: 1000 })).rejects.toThrow(/lies outside what the sandbox shows of the host .*add its directory to readOnlyPaths, or pass hostView: 'all'/);
    await expect(py('1', { hostView: 'some' as 'all' })).rejects.toThrow(/hostView.*must be 'system' or 'all'/);

    // An interpreter in a venv-like prefix outside the system directories: its prefix is shown read-only.
    const venv = path.join(root, 'venv');
    mkdirSync(path.join(venv, 'bin'), { recursive: true });
    symlinkSync(PY, path.join(venv, 'bin', 'python3'));
    expect(pythonPrefixPaths(PY)).toEqual([]);
    expect(pythonPrefixPaths(path.join(venv, 'bin', 'python3'))).toEqual([venv]);
    const fromVenv = await py('print("venv ok")', { command: [path.join(venv, 'bin', 'python3'), '-c', 'print("venv ok")'], readOnlyPaths: [data, ...pythonPrefixPaths(path.join(venv, 'bin', 'python3'))] });
    expect(fromVenv.stdout.trim(), fromVenv.stderr).toBe('venv ok');
  });

  it('cannot write outside the workspace', async () => {
    const targets = [`${data}/train.csv`, `${data}/new.csv`, `${root}/outside.txt`, `${root}/new.txt`, '/mlagent-sbx-test', '/etc/mlagent-sbx-test', '/usr/mlagent-sbx-test'];
    const code = `
for p in ${JSON.stringify(targets)}:
    try:
        open(p, 'w').write('pwned')
        print('WROTE', p)
    except OSError as e:
        print('DENIED', p, type(e).__name__)
open('/tmp/private-scratch', 'w').write('ok')
print('TMP OK')
try:
    open('${hostTmp}/host.txt', 'w').write('pwned')
except OSError as e:
    print('HOST TMP', type(e).__name__)
`;
    const r = await py(code);
    expect(r.outcome).toBe('ok');
    expect(r.stdout).not.toContain('WROTE');
    expect(r.stdout).toContain('TMP OK');
    expect(readFileSync(path.join(data, 'train.csv'), 'utf8')).toBe('x,y\n1,2\n');
    expect(readFileSync(path.join(root, 'outside.txt'), 'utf8')).toBe('original\n');
    // The sandbox's /tmp is a private tmpfs: the host's /tmp files are simply not there.
    expect(r.stdout).toContain('HOST TMP FileNotFoundError');
    expect(readFileSync(path.join(hostTmp, 'host.txt'), 'utf8')).toBe('host\n');
    for (const t of [`${data}/new.csv`, `${root}/new.txt`, '/mlagent-sbx-test', '/etc/mlagent-sbx-test', '/usr/mlagent-sbx-test', '/tmp/private-scratch']) {
      expect(existsSync(t)).toBe(false);
    }
  });

  it('finds no file under /proc or /sys it may write (a writable sysctl would set host-wide settings)', async () => {
    // Opening for writing is enough to tell, and changes nothing. /proc/pressure's files are PSI triggers, open to
    // every user by design.
    const code = `
import os
writable = []
for top in ['/proc', '/sys']:
    for d, dirs, files in os.walk(top):
        part = d[len(top):].split('/')
        if top == '/proc' and len(part) > 1 and (part[1].isdigit() or part[1] in ('self', 'thread-self')):
            dirs[:] = []
            continue
        for f in files:
            try:
                os.close(os.open(os.path.join(d, f), os.O_WRONLY | os.O_NONBLOCK))
                writable.append(os.path.join(d, f))
            except OSError:
                pass
print('\\n'.join(w for w in writable if not w.startswith('/proc/pressure/')))
print('checked', os.path.exists('/proc/sys/kernel/core_pattern'))
`;
    const r = await py(code, { timeoutMs: 60_000 });
    expect(r.outcome, r.stderr).toBe('ok');
    expect(r.stdout.trim()).toBe('checked True');
  }, 90_000);

  it('refuses new user namespaces and io_uring through its seccomp filter, and still forks and threads', async () => {
    const code = `
import ctypes, os, threading
libc = ctypes.CDLL(None, use_errno=True)
def call(name, *args):
    ctypes.set_errno(0)
    return getattr(libc, name)(*args), ctypes.get_errno()
print('unshare', *call('unshare', 0x10000000))
print('io_uring', *call('syscall', 425, 1, None))
t = threading.Thread(target=lambda: None)
t.start(); t.join()
pid = os.fork()
if pid == 0:
    os._exit(7)
print('fork', os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
`;
    const r = await py(code);
    expect(r.outcome, r.stderr).toBe('ok');
    expect(r.warnings).toEqual([]);
    expect(r.stdout).toBe('unshare -1 1\nio_uring -1 1\nfork 7\n');
    // Without the filter the same call makes a user namespace (so the line above proves the filter).
    const open = await py(code, { seccomp: false });
    expect(open.stdout.split('\n')[0]).toBe('unshare 0 0');
  });

  it('keeps the head and tail of 50 MB of output within the byte budget', async () => {
    const code = `
import sys
sys.stdout.write('HEAD-MARK\\n')
line = 'x' * 99 + '\\n'
for _ in range(500):
    sys.stdout.write(line * 1000)
sys.stdout.write('TAIL-MARK\\n')
`;
    const r = await py(code, { outputBytes: 10_000, timeoutMs: 20_000 });
    expect(r.outcome).toBe('ok');
    expect(r.stdoutBytes).toBe(50_000_000 + 20);
    expect(r.stdout.startsWith('HEAD-MARK\n')).toBe(true);
    expect(r.stdout.endsWith('TAIL-MARK\n')).toBe(true);
    expect(r.stdout).toContain(`[... ${50_000_020 - 10_000} bytes cut ...]`);
    expect(r.stdout.length).toBeLessThan(10_100);
  }, 30_000);

  it('throws for bad options, naming the option', async () => {
    await expect(runSandboxed({ command: [], workspace: ws, timeoutMs: 1000 })).rejects.toThrow(/'command'/);
    await expect(runSandboxed({ command: [PY], workspace: 'relative', timeoutMs: 1000 })).rejects.toThrow(/'workspace'/);
    await expect(runSandboxed({ command: [PY], workspace: path.join(root, 'nope'), timeoutMs: 1000 })).rejects.toThrow(/'workspace'/);
    await expect(runSandboxed({ command: [PY], workspace: ws, timeoutMs: -1 })).rejects.toThrow(/'timeoutMs'/);
    // Node would fire that timer after 1 ms, and every run would time out at once.
    await expect(runSandboxed({ command: [PY], workspace: ws, timeoutMs: 2 ** 31 })).rejects.toThrow(/'timeoutMs' must be at most 2147483647/);
    await expect(runSandboxed({ command: [PY], workspace: ws, timeoutMs: 1000, memoryBytes: 1.5 })).rejects.toThrow(/'memoryBytes'/);
    await expect(runSandboxed({ command: [PY], workspace: ws, timeoutMs: 1000, readOnlyPaths: ['/no/such/dir'] })).rejects.toThrow(/'readOnlyPaths'/);
    expect(() => new SandboxPool(0)).toThrow(/'concurrency'/);
  });

  it('reports a missing command as an error, not an exception', async () => {
    const r = await runSandboxed({ command: ['/no/such/binary'], workspace: ws, timeoutMs: 2000 });
    expect(r.outcome).toBe('error');
    expect(r.errorSummary).toMatch(/No such file/);
  });
});

describe('disk limits', () => {
  /** A fresh workspace holding keep.txt, and `extra` bytes of random data in big.bin when asked. */
  function workspace(extra = 0): string {
    const dir = mkdtempSync(path.join(root, 'disk-'));
    writeFileSync(path.join(dir, 'keep.txt'), 'keep\n');
    if (extra) writeFileSync(path.join(dir, 'big.bin'), randomBytes(extra));
    return dir;
  }

  it('stop a run past the file count, and remove the directory it made', async () => {
    const dir = workspace();
    const code = 'import os\nos.makedirs("many/sub")\ni = 0\nwhile True:\n    open(f"many/sub/f{i}", "w").close()\n    i += 1\n';
    const r = await py(code, { workspace: dir, maxWorkspaceFiles: 300, timeoutMs: 10_000 });
    expect(r.outcome).toBe('killed');
    expect(r.diskLimit).toBe('created more than 300 files in the workspace');
    expect(r.errorSummary).toMatch(/^The run created more than 300 files in the workspace; what it added to the workspace \(1 entry\) was removed.$/);
    expect(r.wallSeconds).toBeLessThan(9);
    expect(readdirSync(dir).sort()).toEqual(['keep.txt']);
  }, 20_000);

  it('let a workspace already past its limit run, to clean up, but not grow', async () => {
    const dir = workspace(4 * MiB);
    const tidy = await py('import os\nos.remove("big.bin")\nopen("small.txt", "w").write("ok")\n', { workspace: dir, diskBytes: MiB });
    expect(tidy.outcome).toBe('ok');
    expect(readdirSync(dir).sort()).toEqual(['keep.txt', 'small.txt']);

    const grown = workspace(4 * MiB);
    const code = 'import os, time\nopen("more.bin", "wb").write(os.urandom(8 * 2**20))\ntime.sleep(20)\n';
    const r = await py(code, { workspace: grown, diskBytes: MiB, timeoutMs: 30_000 });
    expect(r.outcome).toBe('killed');
    expect(r.diskLimit).toMatch(/^filled the workspace past its disk limit of 4 MiB$/);
    expect(r.wallSeconds).toBeLessThan(10);
    // What was there before stays, even past the limit; what the run added goes.
    expect(readdirSync(grown).sort()).toEqual(['big.bin', 'keep.txt']);
  }, 60_000);

  it('stop a run that takes the disk below the free space it must leave', async () => {
    const dir = workspace();
    const s = await statfs(dir);
    const free = s.bavail * s.bsize;
    const code = 'import os, time\nwith open("fill.bin", "wb") as f:\n    for _ in range(16):\n        f.write(os.urandom(8 * 2**20))\n        f.flush()\ntime.sleep(20)\n';
    const r = await py(code, { workspace: dir, minFreeBytes: free - 32 * MiB, timeoutMs: 30_000 });
    expect(r.outcome).toBe('killed');
    expect(r.diskLimit).toMatch(/^left less than \d+ MiB free on the disk$/);
    expect(r.wallSeconds).toBeLessThan(10);
    expect(readdirSync(dir)).toEqual(['keep.txt']);
  }, 60_000);

  it('catch a run that broke a limit and ended between two checks', async () => {
    const dir = workspace();
    const r = await py('open("fast.bin", "wb").write(b"x" * 3 * 2**20)', { workspace: dir, diskBytes: MiB });
    expect(r.outcome).toBe('killed');
    expect(r.diskLimit).toBe('filled the workspace past its disk limit of 1 MiB');
    expect(readdirSync(dir)).toEqual(['keep.txt']);
  });

  it('count a sparse file at its length, which a snapshot would store', async () => {
    const dir = workspace();
    const code = 'import time\nwith open("sparse.bin", "wb") as f:\n    f.truncate(64 * 2**20)\n    f.write(b"x")\ntime.sleep(20)\n';
    const r = await py(code, { workspace: dir, diskBytes: 4 * MiB, timeoutMs: 30_000 });
    expect(r.outcome).toBe('killed');
    expect(r.diskLimit).toBe('filled the workspace past its disk limit of 4 MiB');
    expect(r.wallSeconds).toBeLessThan(10);
    expect(readdirSync(dir)).toEqual(['keep.txt']);
  }, 60_000);

  it('stop a run that hides files under a name that is not UTF-8 or a path past 3072 bytes, and remove them', async () => {
    for (const [kind, code] of [
      ['not UTF-8', 'import os, time\nos.mkdir(b"\\xff\\xfehidden")\nopen(b"\\xff\\xfehidden/f", "wb").write(b"x" * 2**20)\ntime.sleep(20)\n'],
      [
        'too long',
        // Each directory opened relative to the last, so no call names the whole path.
        'import os, time\nfd = os.open(".", os.O_RDONLY)\nfor i in range(16):\n    os.mkdir("d" * 250, dir_fd=fd)\n    nfd = os.open("d" * 250, os.O_RDONLY, dir_fd=fd)\n    os.close(fd)\n    fd = nfd\nf = os.open("deep.bin", os.O_WRONLY | os.O_CREAT, dir_fd=fd)\nos.write(f, b"x" * 2**20)\ntime.sleep(20)\n',
      ],
    ]) {
      const dir = workspace();
      const r = await py(code, { workspace: dir, diskBytes: 64 * MiB, timeoutMs: 30_000 });
      expect(r.outcome, kind).toBe('killed');
      expect(r.diskLimit, kind).toMatch(/^made a path in the workspace whose name is not UTF-8 or that is longer than 3072 bytes \(".+"\), which cannot be measured or saved$/);
      expect(r.wallSeconds, kind).toBeLessThan(10);
      expect(readdirSync(dir), kind).toEqual(['keep.txt']);
    }
  }, 60_000);

  it('name a bad limit', async () => {
    await expect(py('pass', { diskBytes: 0 })).rejects.toThrow(/option 'diskBytes' must be an integer >= 1, got 0/);
    await expect(py('pass', { maxWorkspaceFiles: 2.5 })).rejects.toThrow(/option 'maxWorkspaceFiles'/);
    await expect(py('pass', { minFreeBytes: -1 })).rejects.toThrow(/option 'minFreeBytes' must be an integer >= 0/);
  });
});

describe('fallbacks', () => {
  it('without a cgroup: RLIMIT_AS turns a memory bomb into MemoryError', async () => {
    const r = await py('x = bytearray(2**30)', { useCgroup: false });
    expect(r.limits.memory).toBe('rlimit-as');
    expect(r.outcome).toBe('oom');
    expect(r.errorSummary).toContain('MemoryError');
  });

  it('without a cgroup: an unprivileged uid with RLIMIT_NPROC contains a fork bomb', async () => {
    const r = await py('import os\nwhile True:\n    os.fork()', { useCgroup: false, maxProcesses: 16 });
    expect(r.limits.processes).toBe('rlimit-nproc');
    expect(r.outcome).toBe('killed');
  }, 20_000);

  it.runIf(process.getuid?.() === 0)(
    'without a cgroup, as root: the dropped uid works in a mode-0700 workspace with its data under a mode-0700 directory',
    async () => {
      // root (from mkdtemp) is mode 0700 and owned by root, as is a workspace made by mkdtemp.
      const mine = mkdtempSync(path.join(root, 'ws-'));
      const code = [
        'import os',
        `print(os.getuid(), open(${JSON.stringify(path.join(data, 'train.csv'))}).read().splitlines()[1])`,
        "open('out.txt', 'w').write('written')",
        `print(os.path.exists(${JSON.stringify(path.join(secret, 'answers.csv'))}))`,
      ].join('\n');
      const r = await py(code, { useCgroup: false, workspace: mine });
      expect(r.outcome, r.stderr).toBe('ok');
      expect(r.limits.processes).toBe('rlimit-nproc');
      const [uidLine, hiddenLine] = r.stdout.trim().split('\n');
      expect(uidLine).toMatch(/^6\d{4} 1,2$/);
      expect(hiddenLine).toBe('False');
      expect(readFileSync(path.join(mine, 'out.txt'), 'utf8')).toBe('written');

      // Without bwrap nothing can be mounted over the mode-0700 directory: the run says why it cannot reach the data.
      const none = await py(code, { useCgroup: false, workspace: mine, isolation: 'none' });
      expect(none.outcome).toBe('error');
      expect(none.errorSummary).toMatch(/PermissionError/);
      expect(none.warnings.join('\n')).toContain(`cannot search ${root}`);
    },
  );

  it.runIf(process.getuid?.() === 0)('without a cgroup, as root: the dropped uid runs a script by its absolute path in a workspace under /tmp', async () => {
    // bwrap makes the directories leading to a bind mode 0700 unless told otherwise; the uid must pass through them.
    const mine = mkdtempSync(path.join(hostTmp, 'ws-'));
    writeFileSync(path.join(mine, 'train.py'), `import os\nprint(os.getuid(), open(${JSON.stringify(path.join(data, 'train.csv'))}).read().splitlines()[1])\n`);
    const r = await py('', { command: [PY, '-u', path.join(mine, 'train.py')], useCgroup: false, workspace: mine });
    expect(r.outcome, r.stderr).toBe('ok');
    expect(r.stdout.trim()).toMatch(/^6\d{4} 1,2$/);
  });

  it('unshare: no network, and the PID namespace kills daemons at the timeout', async () => {
    const marker = `mlagent-unshare-${process.pid}-${Date.now()}`;
    const r = await py(daemonThenSpin(marker), { isolation: 'unshare', timeoutMs: 1500 });
    expect(r.isolation).toBe('unshare');
    expect(r.outcome).toBe('timeout');
    expect(r.warnings.join(' ')).toMatch(/filesystem/);
    expect(pidsWith(marker)).toEqual([]);
    const net = await py('import socket\ntry:\n    socket.create_connection(("127.0.0.1", 22), 1)\nexcept OSError as e:\n    print("FAILED", e)', {
      isolation: 'unshare',
    });
    expect(net.stdout).toMatch(/^FAILED/);
    const cpu = await py('while True: pass', { isolation: 'unshare', cpuSeconds: 1 });
    expect(cpu.signal).toBe('SIGXCPU');
    expect(cpu.outcome).toBe('killed');
  }, 20_000);

  it('none: limits still apply through rlimits and the cgroup', async () => {
    const r = await py('while True: pass', { isolation: 'none', cpuSeconds: 1 });
    expect(r.isolation).toBe('none');
    expect(r.outcome).toBe('killed');
    expect(r.signal).toBe('SIGXCPU');
  }, 20_000);
});

describe('SandboxPool', () => {
  it('runs at most N at once and queues the rest', async () => {
    const pool = new SandboxPool(2, { timeoutMs: 10_000 });
    let peak = 0;
    const poll = setInterval(() => (peak = Math.max(peak, pool.active)), 10);
    const t0 = performance.now();
    const jobs = [0, 1, 2, 3].map((i) => pool.run({ command: [PY, '-c', `import time; time.sleep(0.8); print(${i})`], workspace: ws, timeoutMs: 5000 }));
    expect(pool.active).toBe(2);
    expect(pool.pending).toBe(2);
    const results = await Promise.all(jobs);
    clearInterval(poll);
    expect(results.map((r) => r.outcome)).toEqual(['ok', 'ok', 'ok', 'ok']);
    expect(results.map((r) => r.stdout)).toEqual(['0\n', '1\n', '2\n', '3\n']);
    expect(peak).toBe(2);
    expect((performance.now() - t0) / 1000).toBeGreaterThanOrEqual(1.6);
    expect(pool.active).toBe(0);
  }, 20_000);

  it("takes the time limit from the pool's defaults, and refuses a run with none", async () => {
    const pool = new SandboxPool(1, { timeoutMs: 300 });
    const r = await pool.run({ command: [PY, '-c', 'import time; time.sleep(5)'], workspace: ws });
    expect(r.outcome).toBe('timeout');
    expect(r.wallSeconds).toBeLessThan(3);
    const bare = new SandboxPool(1);
    await expect(bare.run({ command: [PY, '-c', 'pass'], workspace: ws })).rejects.toThrow(/timeoutMs/);
    expect(bare.active).toBe(0); // the refused run gave its slot back
  }, 20_000);
});

describe('summarizeError', () => {
  it('keeps a chained traceback’s last exception', () => {
    const s = summarizeError(
      'Traceback (most recent call last):\n  File "a.py", line 1, in <module>\nKeyError: 1\n\nDuring handling of the above exception, another exception occurred:\n\nTraceback (most recent call last):\n  File "a.py", line 3, in <module>\n    x = y\n        ^\nNameError: name \'y\' is not defined\n',
    );
    expect(s).toBe('Traceback (most recent call last):\n  File "a.py", line 3, in <module>\n    x = y\n        ^\nNameError: name \'y\' is not defined');
  });

  it('falls back to the last stderr lines without a traceback', () => {
    expect(summarizeError('warning\nSegmentation fault\n')).toBe('warning\nSegmentation fault');
    expect(summarizeError('')).toBeUndefined();
  });
});
