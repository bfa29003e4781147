"""Grade author-identification: multiclass log loss of the predicted author probabilities (lower is better)."""
import argparse
import json
import os
import sys

import numpy as np
import pandas as pd

AUTHORS = ['DDE', 'FDR', 'HST']
EPS = 1e-15


def fail(message):
    print(json.dumps({'error': message}))
    sys.exit(2)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--submission', required=True)
    parser.add_argument('--answers', required=True)
    args = parser.parse_args()
    answers = pd.read_csv(os.path.join(args.answers, 'answers.csv'))
    if not os.path.isfile(args.submission):
        fail(f'submission file not found: {args.submission}')
    try:
        sub = pd.read_csv(args.submission)
    except Exception as e:  # noqa: BLE001 - any unreadable CSV is the submitter's error
        fail(f'cannot read submission as CSV: {e}')
    expected = ['id'] + AUTHORS
    if sorted(sub.columns) != sorted(expected):
        fail(f'submission columns must be {expected}, got {list(sub.columns)}')
    if sub['id'].duplicated().any():
        fail(f'duplicate ids in submission, e.g. {sub["id"][sub["id"].duplicated()].iloc[0]}')
    missing = set(answers['id']) - set(sub['id'])
    extra = set(sub['id']) - set(answers['id'])
    if missing or extra:
        fail(f'submission ids differ from test.csv: {len(missing)} missing, {len(extra)} unexpected')
    probs = sub.set_index('id').loc[answers['id'], AUTHORS]
    try:
        p = probs.to_numpy(dtype=float)
    except ValueError:
        fail('probability columns must be numeric')
    if not np.isfinite(p).all():
        fail('submission contains NaN or infinite probabilities')
    if (p < 0).any():
        fail('probabilities must be non-negative')
    p = np.clip(p, EPS, None)
    p = p / p.sum(axis=1, keepdims=True)  # Kaggle-style row normalisation
    truth = answers['author'].map({a: i for i, a in enumerate(AUTHORS)}).to_numpy()
    score = float(-np.mean(np.log(p[np.arange(len(truth)), truth])))
    print(json.dumps({'score': score}))


if __name__ == '__main__':
    main()
