// The actions that only touch files: List Files, Copy File, Undo Edit Script, Inspect Script Lines, Write File,
// Read File and Edit Script Lines, plus the shared "save an edit" step used by the AI edits too.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { unifiedDiff } from '../helper-llm/diff.js';
import type { SnapshotStore } from '../snapshots/store.js';
import { DATA_LINK, EnvError, isDataPath, resolveForRead, resolveForWrite, writeFileAtomic, type WorkspaceRoots } from './paths.js';

/** What the file actions work on: the workspace and the per-file undo history (blob hashes, null = absent). */
export interface FileContext {
  roots: WorkspaceRoots;
  store: SnapshotStore;
  undo: Map<string, (string | null)[]>;
}

/** The most lines Inspect Script Lines shows at once. */
export const MAX_INSPECT_LINES = 100;
/**
 * The most bytes Read File and Understand File take of a file; a longer one is cut at a line end, with a note.
 * These files pass through the trainer's memory, and a task's data file may hold gigabytes.
 */
export const MAX_READ_BYTES = 2 ** 20;
/** The largest file the edit actions rewrite (whole, in the trainer's memory and the undo history) or Copy File copies. */
export const MAX_EDIT_BYTES = 16 * 2 ** 20;
/** Inspect Script Lines shows at most this many bytes of one line (a data file may be one enormous line). */
const MAX_LINE_BYTES = 4096;

/** Bytes as MiB with one decimal, for the observations' size messages. */
export const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;

export async function listFiles(ctx: FileContext, dirPath: unknown): Promise<string> {
  const { rel, abs } = await resolveForRead(ctx.roots, dirPath, 'dir_path');
  if (!(await fs.stat(abs)).isDirectory()) throw new EnvError(`Cannot list "${rel}": it is not a directory`);
  const entries = await fs.readdir(abs, { withFileTypes: true });
  const lines: string[] = [];
  for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    if (e.name.startsWith('.') && e.name.endsWith('.tmp')) continue;
    const isDir = e.isDirectory() || (e.isSymbolicLink() && (await fs.stat(path.join(abs, e.name)).catch(() => null))?.isDirectory());
    lines.push(isDir ? `${e.name}/` : e.name);
  }
  return lines.length === 0 ? `The directory "${rel}" is empty.` : lines.join('\n') + '\n';
}

/** A readable regular file of the workspace or data/, and its size. */
async function openable(ctx: FileContext, raw: unknown, argName: string): Promise<{ rel: string; abs: string; size: number }> {
  const { rel, abs } = await resolveForRead(ctx.roots, raw, argName);
  const st = await fs.stat(abs);
  if (st.isDirectory()) throw new EnvError(`${argName} "${rel}" is a directory, not a file`);
  // A FIFO or device planted by a script would block the read forever.
  if (!st.isFile()) throw new EnvError(`${argName} "${rel}" is not a regular file`);
  return { rel, abs, size: st.size };
}

function checkText(head: Buffer, argName: string, rel: string): void {
  if (head.subarray(0, 8000).includes(0)) throw new EnvError(`${argName} "${rel}" is a binary file and cannot be shown as text`);
}

/** Reads a whole text file the agent may read (workspace or data/), for the edit actions: at most MAX_EDIT_BYTES. */
export async function readText(ctx: FileContext, raw: unknown, argName: string): Promise<{ rel: string; text: string }> {
  const { rel, abs, size } = await openable(ctx, raw, argName);
  if (size > MAX_EDIT_BYTES) throw tooLargeToEdit(rel, size);
  return { rel, text: await readWhole(abs, argName, rel) };
}

async function readWhole(abs: string, argName: string, rel: string): Promise<string> {
  const buf = await fs.readFile(abs);
  checkText(buf, argName, rel);
  return buf.toString('utf8');
}

/**
 * Reads a text file for Read File and Understand File: the whole of it up to MAX_READ_BYTES, else its first
 * MAX_READ_BYTES cut at the last line end, with a note of what was left out.
 */
export async function readTextHead(ctx: FileContext, raw: unknown, argName: string): Promise<{ rel: string; text: string }> {
  const { rel, abs, size } = await openable(ctx, raw, argName);
  if (size <= MAX_READ_BYTES) return { rel, text: await readWhole(abs, argName, rel) };
  const fh = await fs.open(abs, 'r');
  try {
    const buf = Buffer.alloc(MAX_READ_BYTES);
    const { bytesRead } = await fh.read(buf, 0, MAX_READ_BYTES, 0);
    checkText(buf.subarray(0, bytesRead), argName, rel);
    const end = buf.lastIndexOf(10, bytesRead - 1);
    const head = buf.subarray(0, end > 0 ? end + 1 : bytesRead).toString('utf8');
    const lines = head.split('\n').length - (head.endsWith('\n') ? 1 : 0);
    return { rel, text: `${head}${head.endsWith('\n') ? '' : '\n'}[... ${rel} is ${mib(size)}; only its first ${lines} lines are shown. Use Inspect Script Lines for the others ...]\n` };
  } finally {
    await fh.close();
  }
}

function tooLargeToEdit(rel: string, size: number): EnvError {
  return new EnvError(`"${rel}" is ${mib(size)}; the file actions edit and copy files of at most ${mib(MAX_EDIT_BYTES)}`);
}

/** The current content of a workspace file, or null when it does not exist (for edits and their history). */
async function currentContent(abs: string, rel: string): Promise<Buffer | null> {
  const st = await fs.stat(abs).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return null;
    throw e;
  });
  if (st === null) return null;
  if (st.isDirectory()) throw new EnvError(`"${path.basename(abs)}" is a directory`);
  if (!st.isFile()) throw new EnvError(`"${rel}" is not a regular file`);
  if (st.size > MAX_EDIT_BYTES) throw tooLargeToEdit(rel, st.size);
  return fs.readFile(abs);
}

/** Saves `content` at a workspace path, remembering the old content for Undo Edit Script. Returns the old text. */
export async function saveEdit(ctx: FileContext, raw: unknown, argName: string, content: string | Buffer): Promise<{ rel: string; before: string }> {
  const { rel, abs } = await resolveForWrite(ctx.roots, raw, argName);
  const before = await currentContent(abs, rel);
  const stack = ctx.undo.get(rel) ?? [];
  stack.push(before === null ? null : await ctx.store.putBlob(before));
  ctx.undo.set(rel, stack);
  const mode = before === null ? undefined : (await fs.stat(abs)).mode & 0o777;
  await writeFileAtomic(abs, content, mode);
  return { rel, before: before?.toString('utf8') ?? '' };
}

/** The observation of every edit: where it was saved and the diff to check. */
export function editObservation(rel: string, before: string, after: string): string {
  const diff = unifiedDiff(before, after, rel);
  if (diff === '') return `The file ${rel} was saved, but its content did not change.`;
  return `The edited file is saved to ${rel}. Here is the diff, please check if the edit is correct and desirable:\n\n${diff}`;
}

export async function copyFile(ctx: FileContext, source: unknown, destination: unknown): Promise<string> {
  const src = await resolveForRead(ctx.roots, source, 'source');
  const st = await fs.stat(src.abs);
  if (!st.isFile()) throw new EnvError(`source "${src.rel}" is not a regular file; only files can be copied`);
  if (st.size > MAX_EDIT_BYTES) throw tooLargeToEdit(src.rel, st.size);
  const { rel } = await saveEdit(ctx, destination, 'destination', await fs.readFile(src.abs));
  return `File ${src.rel} copied to ${rel}.`;
}

export async function undoEdit(ctx: FileContext, scriptName: unknown): Promise<string> {
  const { rel, abs } = await resolveForWrite(ctx.roots, scriptName, 'script_name');
  const stack = ctx.undo.get(rel);
  const previous = stack?.pop();
  if (previous === undefined) throw new EnvError(`There is no change to undo for ${rel}.`);
  if (stack!.length === 0) ctx.undo.delete(rel);
  if (previous === null) {
    await fs.rm(abs, { force: true });
    return `The undo removed ${rel}, which did not exist before the most recent edit.`;
  }
  const content = await ctx.store.readBlob(previous);
  await writeFileAtomic(abs, content);
  return `Content of ${rel} after undo the most recent edit:\n${content.toString('utf8')}`;
}

function toLines(text: string): { lines: string[]; trailingNewline: boolean } {
  if (text === '') return { lines: [], trailingNewline: true };
  const lines = text.split('\n');
  const trailingNewline = lines[lines.length - 1] === '';
  if (trailingNewline) lines.pop();
  return { lines, trailingNewline };
}

export async function inspectLines(ctx: FileContext, scriptName: unknown, start: number, end: number): Promise<string> {
  if (start < 1) throw new EnvError(`start_line_number must be at least 1, got ${start}`);
  if (end < start) throw new EnvError(`end_line_number (${end}) is before start_line_number (${start})`);
  if (end - start + 1 > MAX_INSPECT_LINES) {
    throw new EnvError(`the number of lines to display is limited to ${MAX_INSPECT_LINES}; asked for ${end - start + 1} (${start} to ${end})`);
  }
  const { rel, abs } = await openable(ctx, scriptName, 'script_name');
  const { shown, total } = await scanLines(abs, start, end, (head) => checkText(head, 'script_name', rel));
  if (total === 0) return `The file ${rel} is empty.`;
  if (start > total) throw new EnvError(`${rel} has only ${total} lines; start_line_number ${start} is past its end`);
  return `Here are the lines (the file ends at line ${total}):\n\n${shown.map((l, i) => `${start + i}: ${l}`).join('\n')}`;
}

/**
 * Lines start..end of a file (1-based, each cut to MAX_LINE_BYTES) and its line count, read in 64 KiB chunks, so
 * a data file of any size costs no more memory than a script. `checkHead` sees the first chunk.
 */
export async function scanLines(abs: string, start: number, end: number, checkHead: (head: Buffer) => void): Promise<{ shown: string[]; total: number }> {
  const fh = await fs.open(abs, 'r');
  try {
    const buf = Buffer.alloc(2 ** 16);
    const shown: string[] = [];
    let line = 1; // the line the next byte belongs to
    let parts: Buffer[] = [];
    let kept = 0; // bytes of this line kept so far
    let cut = false;
    let atLineStart = true;
    const endLine = () => {
      if (line >= start && line <= end) shown.push(Buffer.concat(parts).toString('utf8') + (cut ? ' [... line cut ...]' : ''));
      parts = [];
      kept = 0;
      cut = false;
    };
    for (let pos = 0; ; ) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      if (pos === 0) checkHead(buf.subarray(0, bytesRead));
      pos += bytesRead;
      for (let i = 0; i < bytesRead; ) {
        const found = buf.indexOf(10, i);
        const stop = found === -1 || found >= bytesRead ? bytesRead : found;
        if (line >= start && line <= end) {
          const take = Math.min(stop - i, MAX_LINE_BYTES - kept);
          if (take > 0) parts.push(Buffer.from(buf.subarray(i, i + take)));
          kept += take;
          if (stop - i > take) cut = true;
        }
        atLineStart = stop < bytesRead;
        if (stop === bytesRead) break;
        endLine();
        line++;
        i = stop + 1;
      }
    }
    // A last line without a newline still counts.
    if (!atLineStart) endLine();
    return { shown, total: atLineStart ? line - 1 : line };
  } finally {
    await fh.close();
  }
}

export async function writeFile(ctx: FileContext, fileName: unknown, content: string): Promise<string> {
  const { rel } = await saveEdit(ctx, fileName, 'file_name', content);
  return `File ${rel} written successfully.`;
}

export async function editLines(ctx: FileContext, scriptName: unknown, start: number, end: number, newContent: string): Promise<string> {
  const target = await resolveForWrite(ctx.roots, scriptName, 'script_name');
  const old = (await currentContent(target.abs, target.rel))?.toString('utf8') ?? '';
  const { lines, trailingNewline } = toLines(old);
  if (start < 1 || start > lines.length + 1) {
    throw new EnvError(`start_line_number must be between 1 and ${lines.length + 1} (the file has ${lines.length} lines), got ${start}`);
  }
  if (end < start - 1 || end > lines.length) {
    throw new EnvError(`end_line_number must be between ${start - 1} (insert) and ${lines.length} (the last line), got ${end}`);
  }
  const inserted = newContent === '' ? [] : toLines(newContent).lines;
  const next = [...lines.slice(0, start - 1), ...inserted, ...lines.slice(end)];
  const text = next.join('\n') + (next.length > 0 && trailingNewline ? '\n' : '');
  const { rel, before } = await saveEdit(ctx, scriptName, 'script_name', text);
  return editObservation(rel, before, text);
}

/** Whether a workspace-relative path names a script (for isEdit of copies). */
export function isScriptPath(rel: unknown): boolean {
  return typeof rel === 'string' && /\.(py|sh|ipynb)$/i.test(rel.trim()) && !isDataPath(rel.trim()) && rel.trim() !== DATA_LINK;
}
