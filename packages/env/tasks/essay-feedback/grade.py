"""Grade essay-feedback: MCRMSE, the mean over the six analytic scores of the column-wise RMSE (lower is better)."""
import argparse
import json
import os
import sys

import numpy as np
import pandas as pd

TARGETS = ['cohesion', 'syntax', 'vocabulary', 'phraseology', 'grammar', 'conventions']


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
    expected = ['text_id'] + TARGETS
    if sorted(sub.columns) != sorted(expected):
        fail(f'submission columns must be {expected}, got {list(sub.columns)}')
    if sub['text_id'].duplicated().any():
        fail('duplicate text_id values in submission')
    missing = set(answers['text_id']) - set(sub['text_id'])
    extra = set(sub['text_id']) - set(answers['text_id'])
    if missing or extra:
        fail(f'submission text_ids differ from test.csv: {len(missing)} missing, {len(extra)} unexpected')
    predicted = sub.set_index('text_id').loc[answers['text_id'], TARGETS].apply(pd.to_numeric, errors='coerce')
    if not np.isfinite(predicted.to_numpy(dtype=float)).all():
        fail('submission contains NaN, infinite or non-numeric scores')
    errors = predicted.to_numpy(dtype=float) - answers[TARGETS].to_numpy(dtype=float)
    score = float(np.mean(np.sqrt(np.mean(errors ** 2, axis=0))))
    print(json.dumps({'score': score}))


if __name__ == '__main__':
    main()
