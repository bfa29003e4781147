import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TokenizerError } from './tokenizer.js';

// A byte-level BPE keeps working when cut to its first N merges: every merge only joins the 256 bytes and tokens
// made by earlier merges, so the shorter list still spells out any text (with more, shorter tokens). Small random
// models use this to get a vocabulary a CPU can train against, while staying Qwen's tokenizer in every other way.

export interface TruncatedTokenizer {
  /** Rows the model's embedding and LM head need: 256 bytes + merges + special tokens. */
  vocabSize: number;
  /** The special tokens' new ids, by content (e.g. '<|endoftext|>'). */
  specialIds: Record<string, number>;
}

interface TokenizerJson {
  model: { type: string; vocab: Record<string, number>; merges: unknown[] };
  added_tokens: { id: number; content: string }[];
}

/**
 * Writes tokenizer.json and tokenizer_config.json of `srcDir` into `outDir`, cut to the first `merges` merges.
 * The special tokens keep their order and are renumbered to follow the kept vocabulary.
 */
export function truncateTokenizer(srcDir: string, outDir: string, merges: number): TruncatedTokenizer {
  if (!Number.isInteger(merges) || merges < 0) throw new TokenizerError(`truncateTokenizer: merges must be a non-negative integer, got ${merges}`);
  const tj = readJson(join(srcDir, 'tokenizer.json')) as TokenizerJson;
  const tc = readJson(join(srcDir, 'tokenizer_config.json')) as Record<string, unknown>;
  if (tj.model?.type !== 'BPE') throw new TokenizerError(`truncateTokenizer: ${srcDir} is not a BPE tokenizer`);
  const total = tj.model.merges.length;
  if (merges > total) throw new TokenizerError(`truncateTokenizer: ${srcDir} has ${total} merges; cannot keep ${merges}`);
  const keep = 256 + merges;
  // Byte-level BPE vocabularies list the 256 bytes first, then the token each merge makes, in merge order.
  const kept = Object.entries(tj.model.vocab).filter(([, id]) => id < keep);
  const ordered = kept.length === keep && tj.model.merges.slice(0, merges).every((m, i) => tj.model.vocab[mergedToken(m)] === 256 + i);
  if (!ordered) throw new TokenizerError(`truncateTokenizer: ${srcDir}'s vocabulary is not ordered as bytes, then one token per merge`);
  tj.model.vocab = Object.fromEntries(kept);
  tj.model.merges = tj.model.merges.slice(0, merges);
  const remap = new Map<number, number>();
  const specialIds: Record<string, number> = {};
  [...tj.added_tokens].sort((a, b) => a.id - b.id).forEach((t, k) => {
    remap.set(t.id, keep + k);
    specialIds[t.content] = keep + k;
  });
  for (const t of tj.added_tokens) t.id = remap.get(t.id)!;
  const decoder = tc.added_tokens_decoder;
  if (decoder && typeof decoder === 'object') {
    tc.added_tokens_decoder = Object.fromEntries(
      Object.entries(decoder as Record<string, unknown>).map(([id, v]) => {
        const to = remap.get(Number(id));
        if (to === undefined) throw new TokenizerError(`truncateTokenizer: tokenizer_config.json names token ${id}, which tokenizer.json does not add`);
        return [String(to), v];
      }),
    );
  }
  writeFileSync(join(outDir, 'tokenizer.json'), JSON.stringify(tj));
  writeFileSync(join(outDir, 'tokenizer_config.json'), JSON.stringify(tc, null, 2) + '\n');
  return { vocabSize: keep + tj.added_tokens.length, specialIds };
}

/** The token a merge makes: merges are "a b" strings or ["a", "b"] pairs, depending on the tokenizers version. */
function mergedToken(merge: unknown): string {
  if (Array.isArray(merge)) return merge.join('');
  const s = String(merge);
  const space = s.indexOf(' ', 1);
  return s.slice(0, space) + s.slice(space + 1);
}

function readJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new TokenizerError(`truncateTokenizer: cannot read ${path} (${(e as Error).message})`);
  }
}
