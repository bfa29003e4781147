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

/** Reads a text file the agent may read (workspace or data/). */
export async function readText(ctx: FileContext, raw: unknown, argName: string): Promise<{ rel: string; text: string }> {
  const { rel, abs } = await resolveForRead(ctx.roots, raw, argName);
  const st = await fs.stat(abs);
  if (st.isDirectory()) throw new EnvError(`${argName} "${rel}" is a directory, not a file`);
  // A FIFO or device planted by a script would block the read forever.
  if (!st.isFile()) throw new EnvError(`${argName} "${rel}" is not a regular file`);
  const buf = await fs.readFile(abs);
  if (buf.subarray(0, 8000).includes(0)) throw new EnvError(`${argName} "${rel}" is a binary file and cannot be shown as text`);
  return { rel, text: buf.toString('utf8') };
}

/** The current content of a workspace file, or null when it does not exist (for edits and their history). */
async function currentContent(abs: string): Promise<Buffer | null> {
  return fs.readFile(abs).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return null;
    if (e.code === 'EISDIR') throw new EnvError(`"${path.basename(abs)}" is a directory`);
    throw e;
  });
}

/** Saves `content` at a workspace path, remembering the old content for Undo Edit Script. Returns the old text. */
export async function saveEdit(ctx: FileContext, raw: unknown, argName: string, content: string | Buffer): Promise<{ rel: string; before: string }> {
  const { rel, abs } = await resolveForWrite(ctx.roots, raw, argName);
  const before = await currentContent(abs);
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
  if (!(await fs.stat(src.abs)).isFile()) throw new EnvError(`source "${src.rel}" is not a regular file; only files can be copied`);
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
  const { rel, text } = await readText(ctx, scriptName, 'script_name');
  const { lines } = toLines(text);
  if (start < 1) throw new EnvError(`start_line_number must be at least 1, got ${start}`);
  if (end < start) throw new EnvError(`end_line_number (${end}) is before start_line_number (${start})`);
  if (end - start + 1 > MAX_INSPECT_LINES) {
    throw new EnvError(`the number of lines to display is limited to ${MAX_INSPECT_LINES}; asked for ${end - start + 1} (${start} to ${end})`);
  }
  if (lines.length === 0) return `The file ${rel} is empty.`;
  if (start > lines.length) throw new EnvError(`${rel} has only ${lines.length} lines; start_line_number ${start} is past its end`);
  const shown = lines.slice(start - 1, end).map((l, i) => `${start + i}: ${l}`);
  return `Here are the lines (the file ends at line ${lines.length}):\n\n${shown.join('\n')}`;
}

export async function writeFile(ctx: FileContext, fileName: unknown, content: string): Promise<string> {
  const { rel } = await saveEdit(ctx, fileName, 'file_name', content);
  return `File ${rel} written successfully.`;
}

export async function editLines(ctx: FileContext, scriptName: unknown, start: number, end: number, newContent: string): Promise<string> {
  const { abs } = await resolveForWrite(ctx.roots, scriptName, 'script_name');
  const old = (await currentContent(abs))?.toString('utf8') ?? '';
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
