// Type-checks the TypeScript examples of a README against the built packages, so an example a user copies does not
// drift from the API it shows (a renamed option, a changed return type). Each ```ts block is compiled as its own
// module, in memory, as if it were a file in the package's directory (so `@mlagent/*` imports resolve to the
// workspace's dist/*.d.ts, as they would for a user). A block that uses names it does not define (a fragment of a
// longer program) declares them in an HTML comment just before it, which Markdown does not render:
//   <!-- example-prelude: import type { Gpu } from '@mlagent/core-kernels'; declare const gpu: Gpu; -->
import { readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

export interface ReadmeExample {
  /** 1-based line of the README where the block's code starts. */
  line: number;
  code: string;
  prelude: string;
}

const PRELUDE = /<!--\s*example-prelude:([\s\S]*?)-->\s*$/;

/** The ```ts blocks of a Markdown text, each with the prelude comment that directly precedes it, if any. */
export function readmeExamples(markdown: string): ReadmeExample[] {
  const lines = markdown.split('\n');
  const out: ReadmeExample[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^```(ts|typescript)\s*$/.test(lines[i])) continue;
    const start = i + 1;
    let end = start;
    while (end < lines.length && !/^```\s*$/.test(lines[end])) end++;
    if (end === lines.length) throw new Error(`README line ${i + 1}: a \`\`\`ts block is never closed`);
    // The prelude: the last non-blank lines before the fence, if they are one example-prelude comment.
    let j = i - 1;
    while (j >= 0 && lines[j].trim() === '') j--;
    let k = j;
    while (k >= 0 && !lines[k].includes('<!--')) k--;
    const before = k >= 0 ? lines.slice(k, j + 1).join('\n') : '';
    const prelude = PRELUDE.exec(before)?.[1].trim() ?? '';
    out.push({ line: start + 1, code: lines.slice(start, end).join('\n'), prelude });
    i = end;
  }
  return out;
}

/**
 * Compiles every example of `readmePath` (or of `text`, as if it were there) with the repository's compiler options
 * (tsconfig.base.json) and returns the errors, each as "README.md:LINE: message" (prelude errors name the block's
 * fence line). Empty when all compile.
 */
export function checkReadmeExamples(readmePath: string, repoRoot: string, text = readFileSync(readmePath, 'utf8')): string[] {
  const examples = readmeExamples(text);
  const base = ts.readConfigFile(path.join(repoRoot, 'tsconfig.base.json'), ts.sys.readFile);
  if (base.error) throw new Error(ts.flattenDiagnosticMessageText(base.error.messageText, '\n'));
  const { options } = ts.convertCompilerOptionsFromJson(base.config.compilerOptions, repoRoot);
  Object.assign(options, { noEmit: true, declaration: false, sourceMap: false, isolatedModules: false, noUnusedLocals: false });

  const dir = path.dirname(readmePath);
  // File line 0 is the prelude (joined into one line); file line k >= 1 is README line ex.line + k - 1.
  const files = new Map(examples.map((ex, n) => [path.join(dir, `readme-example-${n + 1}.ts`), { ex, text: `${ex.prelude.replace(/\n/g, ' ')}\n${ex.code}\nexport {};\n` }]));
  const host = ts.createCompilerHost(options);
  const { fileExists, readFile, getSourceFile } = host;
  host.fileExists = (f) => files.has(f) || fileExists.call(host, f);
  host.readFile = (f) => files.get(f)?.text ?? readFile.call(host, f);
  host.getSourceFile = (f, lang, onError, fresh) => {
    const file = files.get(f);
    return file ? ts.createSourceFile(f, file.text, lang) : getSourceFile.call(host, f, lang, onError, fresh);
  };
  const program = ts.createProgram([...files.keys()], options, host);
  const readme = path.basename(readmePath);
  const errors: string[] = [];
  for (const [name, { ex }] of files) {
    const sf = program.getSourceFile(name);
    if (!sf) throw new Error(`${name} was not compiled`);
    for (const d of [...program.getSyntacticDiagnostics(sf), ...program.getSemanticDiagnostics(sf)]) {
      const fileLine = d.start === undefined ? 0 : sf.getLineAndCharacterOfPosition(d.start).line;
      const line = fileLine === 0 ? ex.line - 1 : ex.line + fileLine - 1;
      errors.push(`${readme}:${line}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`);
    }
  }
  return errors;
}
