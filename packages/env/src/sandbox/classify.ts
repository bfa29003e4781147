import type { SandboxOutcome } from './types.js';

const MAX_SUMMARY = 2000;

/**
 * The last Python traceback in `stderr`, shortened to its last `frames` frames and the exception line(s).
 * Without a traceback, the last few non-empty lines of stderr. Undefined when stderr is empty.
 */
export function summarizeError(stderr: string, frames = 3): string | undefined {
  const lines = stderr.split('\n');
  let start = -1;
  for (let i = lines.length - 1; i >= 0; i--) {
    if (lines[i].startsWith('Traceback (most recent call last):')) {
      start = i;
      break;
    }
  }
  if (start < 0) {
    const last = lines.filter((l) => l.trim() !== '').slice(-5).join('\n');
    return last === '' ? undefined : last.slice(-MAX_SUMMARY);
  }
  // Frame blocks begin with '  File "...", line N'; their source and ^^^ markers are indented further.
  const blocks: string[][] = [];
  let i = start + 1;
  for (; i < lines.length && /^\s/.test(lines[i]); i++) {
    if (lines[i].startsWith('  File ') || blocks.length === 0) blocks.push([]);
    blocks[blocks.length - 1].push(lines[i]);
  }
  // The exception line(s) end at the next indented line, e.g. another process's interleaved traceback.
  let end = i;
  while (end < lines.length && end - i < 5 && !/^\s|^Traceback/.test(lines[end])) end++;
  const exception = lines.slice(i, end).filter((l) => l.trim() !== '');
  const kept = blocks.slice(-frames).flat();
  const header = blocks.length > frames ? `Traceback (last ${frames} of ${blocks.length} frames):` : lines[start];
  const text = [header, ...kept, ...exception].join('\n');
  return text.length > MAX_SUMMARY ? `${text.slice(0, MAX_SUMMARY)}…` : text;
}

/** The exception line at the end of a summary (e.g. "MemoryError" or "ValueError: bad"), if any. */
function exceptionLine(summary: string | undefined): string {
  if (!summary) return '';
  const last = summary.split('\n').filter((l) => !/^\s/.test(l) && !l.startsWith('Traceback'));
  return last.join('\n');
}

const MEMORY_ERROR = /MemoryError|Cannot allocate memory|can't allocate memory|std::bad_alloc|out of memory/i;
const FORK_REFUSED = /BlockingIOError: \[Errno 11\]|Resource temporarily unavailable|can't start new thread/i;

export interface RawExit {
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  /** Set when the disk guard stopped the run: the sentence for the agent. */
  diskLimit?: string;
  timeoutSeconds: number;
  oomKills: number;
  pidsMaxHits: number;
  memoryBytes: number;
  cpuSeconds: number;
  maxProcesses: number;
  stderr: string;
}

/** Decides the outcome of a finished run and the one-paragraph summary shown to the agent. */
export function classify(r: RawExit): { outcome: SandboxOutcome; errorSummary?: string } {
  // The guard's kill comes first: the SIGKILL it sent, or a write refused as the disk filled, is its doing.
  if (r.diskLimit) return { outcome: 'killed', errorSummary: r.diskLimit };
  if (r.timedOut) {
    return { outcome: 'timeout', errorSummary: `Timed out: killed after the ${r.timeoutSeconds} s wall-clock limit.` };
  }
  if (r.exitCode === 0 && r.signal === null) return { outcome: 'ok' };
  const tb = summarizeError(r.stderr);
  const exc = exceptionLine(tb);
  const mib = Math.round(r.memoryBytes / 2 ** 20);
  if (r.oomKills > 0 || MEMORY_ERROR.test(exc)) {
    return { outcome: 'oom', errorSummary: tb ?? `Killed: out of memory (limit ${mib} MiB).` };
  }
  // In a fork bomb many processes write tracebacks to one stderr at once, so the last exception can be garbled:
  // look for a refused fork anywhere in the captured output.
  if (r.pidsMaxHits > 0 || FORK_REFUSED.test(exc) || FORK_REFUSED.test(r.stderr)) {
    const why = `Process limit reached (${r.maxProcesses} processes/threads).`;
    return { outcome: 'killed', errorSummary: tb ? `${why}\n${tb}` : why };
  }
  if (r.signal === 'SIGXCPU' || r.signal === 'SIGXFSZ') {
    const why = r.signal === 'SIGXCPU' ? `the ${r.cpuSeconds} s CPU-time limit` : 'the file-size limit';
    return { outcome: 'killed', errorSummary: `Killed by ${why}.${tb ? `\n${tb}` : ''}` };
  }
  // Any other signal is the script's own doing (a segfault, an abort, a kill it sent itself): the sandbox's limits
  // are classified above. A crash, which the paper's reward scores 0; as 'killed', a limit (0.5), a policy could
  // learn to end a failing run with os.kill for a better reward than the error would get.
  if (r.signal !== null) return { outcome: 'error', errorSummary: `Crashed: ended by ${r.signal}.${tb ? `\n${tb}` : ''}` };
  return { outcome: 'error', errorSummary: tb ?? `Exited with code ${r.exitCode}.` };
}
