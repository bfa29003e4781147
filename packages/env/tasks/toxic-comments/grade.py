"""Grade toxic-comments: the mean over the labels of the ROC AUC of the predicted probabilities (higher is better)."""
import argparse
import json
import os
import sys

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

LABELS = ['toxic', 'severe_toxic', 'obscene', 'threat', 'insult']


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
    expected = ['id'] + LABELS
    if sorted(sub.columns) != sorted(expected):
        fail(f'submission columns must be {expected}, got {list(sub.columns)}')
    if sub['id'].duplicated().any():
        fail('duplicate ids in submission')
    missing = set(answers['id']) - set(sub['id'])
    extra = set(sub['id']) - set(answers['id'])
    if missing or extra:
        fail(f'submission ids differ from test.csv: {len(missing)} missing, {len(extra)} unexpected')
    predicted = sub.set_index('id').loc[answers['id'], LABELS].apply(pd.to_numeric, errors='coerce')
    if not np.isfinite(predicted.to_numpy(dtype=float)).all():
        fail('submission contains NaN, infinite or non-numeric predictions')
    score = np.mean([roc_auc_score(answers[label], predicted[label]) for label in LABELS])
    print(json.dumps({'score': float(score)}))


if __name__ == '__main__':
    main()
