"""Grade essay-scoring: quadratic weighted kappa between predicted and true integer scores 1-6 (higher is better)."""
import argparse
import json
import os
import sys

import numpy as np
import pandas as pd

SCORES = np.arange(1, 7)


def fail(message):
    print(json.dumps({'error': message}))
    sys.exit(2)


def quadratic_weighted_kappa(truth, predicted):
    k = len(SCORES)
    observed = np.zeros((k, k))
    np.add.at(observed, (truth - 1, predicted - 1), 1)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / observed.sum()
    weights = (np.subtract.outer(np.arange(k), np.arange(k)) ** 2) / (k - 1) ** 2
    return 1.0 - (weights * observed).sum() / (weights * expected).sum()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--submission', required=True)
    parser.add_argument('--answers', required=True)
    args = parser.parse_args()
    answers = pd.read_csv(os.path.join(args.answers, 'answers.csv'), dtype={'essay_id': str})
    if not os.path.isfile(args.submission):
        fail(f'submission file not found: {args.submission}')
    try:
        sub = pd.read_csv(args.submission, dtype={'essay_id': str})
    except Exception as e:  # noqa: BLE001 - any unreadable CSV is the submitter's error
        fail(f'cannot read submission as CSV: {e}')
    if list(sub.columns) != ['essay_id', 'score']:
        fail(f"submission columns must be ['essay_id', 'score'], got {list(sub.columns)}")
    if sub['essay_id'].duplicated().any():
        fail('duplicate essay_id values in submission')
    missing = set(answers['essay_id']) - set(sub['essay_id'])
    extra = set(sub['essay_id']) - set(answers['essay_id'])
    if missing or extra:
        fail(f'submission essay_ids differ from test.csv: {len(missing)} missing, {len(extra)} unexpected')
    predicted = pd.to_numeric(sub.set_index('essay_id').loc[answers['essay_id'], 'score'], errors='coerce').to_numpy()
    if np.isnan(predicted).any():
        fail('submission contains missing or non-numeric scores')
    if (predicted != np.round(predicted)).any() or not np.isin(predicted, SCORES).all():
        fail('scores must be integers from 1 to 6')
    score = quadratic_weighted_kappa(answers['score'].to_numpy(), predicted.astype(int))
    print(json.dumps({'score': float(score)}))


if __name__ == '__main__':
    main()
