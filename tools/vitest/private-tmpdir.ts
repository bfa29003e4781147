// Vitest global setup shared by every package: the test files make their scratch directories with
// mkdtemp(os.tmpdir()), so pointing TMPDIR at one directory per test run and removing it afterwards keeps
// repeated runs from filling /tmp (session 5 found 2,300 directories left there by earlier runs).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export default function setup(): () => void {
  const dir = mkdtempSync(path.join(tmpdir(), 'mlagent-test-'));
  const saved = { TMPDIR: process.env.TMPDIR, TMP: process.env.TMP, TEMP: process.env.TEMP };
  // Workers (threads or forks) start after this and inherit the variables, so their os.tmpdir() is `dir`.
  process.env.TMPDIR = process.env.TMP = process.env.TEMP = dir;
  return () => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    if (process.env.MLAGENT_KEEP_TEST_TMP) console.error(`test scratch kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  };
}
