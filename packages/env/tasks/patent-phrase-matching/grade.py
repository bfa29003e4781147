"""Grade patent-phrase-matching: Pearson correlation of predicted and true similarity scores (higher is better)."""
import argparse
import json
import os
import sys

import numpy as np
import pandas as pd


def fail(message):
    print(json.dumps({'error': message}))
    sys.exit(2)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--submission', required=True)
    p.add_argument('--answers', required=True)
    a = p.parse_args()
    answers = pd.read_csv(os.path.join(a.answers, 'answers.csv'), dtype={'id': str})
    try:
        sub = pd.read_csv(a.submission, dtype={'id': str})
    except Exception as e:  # noqa: BLE001 - any unreadable file is the submitter's error
        fail(f'cannot read submission as CSV: {e}')
    if list(sub.columns) != ['id', 'score']:
        fail(f"submission columns must be ['id', 'score'], got {list(sub.columns)}")
    if sub['id'].duplicated().any() or set(sub['id']) != set(answers['id']):
        fail(f'submission must have exactly one row per id of test.csv ({len(answers)} rows), got {len(sub)} rows')
    pred = pd.to_numeric(sub.set_index('id').loc[answers['id'], 'score'], errors='coerce').to_numpy(dtype=float)
    if not np.isfinite(pred).all():
        fail('score must be a finite number in every row')
    if pred.std() == 0:
        fail('all predicted scores are equal: the Pearson correlation is undefined')
    print(json.dumps({'score': float(np.corrcoef(pred, answers['score'].to_numpy(dtype=float))[0, 1])}))


if __name__ == '__main__':
    main()
