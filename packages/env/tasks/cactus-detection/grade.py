"""ROC AUC of the predicted cactus probabilities against the hidden labels."""
import argparse
import json
import os
import sys

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

COLUMNS = ['id', 'has_cactus']


def fail(message):
    print(json.dumps({'error': message}))
    sys.exit(2)


def read_submission(path, expected_ids):
    if not os.path.isfile(path):
        fail(f'submission file not found: {path}')
    try:
        sub = pd.read_csv(path, dtype={'id': str})
    except Exception as e:  # noqa: BLE001 - any unreadable CSV is the submission's fault
        fail(f'cannot read submission CSV: {e}')
    if list(sub.columns) != COLUMNS:
        fail(f'expected columns {COLUMNS}, got {list(sub.columns)}')
    if sub['id'].duplicated().any():
        fail(f'duplicate id {sub["id"][sub["id"].duplicated()].iloc[0]}')
    missing, extra = set(expected_ids) - set(sub['id']), set(sub['id']) - set(expected_ids)
    if missing or extra:
        fail(f'{len(missing)} test ids missing (e.g. {sorted(missing)[:3]}), {len(extra)} unknown ids (e.g. {sorted(extra)[:3]})')
    scores = pd.to_numeric(sub['has_cactus'], errors='coerce')
    if not np.isfinite(scores).all():
        fail(f'has_cactus must be a finite number; id {sub["id"][~np.isfinite(scores)].iloc[0]} has {sub["has_cactus"][~np.isfinite(scores)].iloc[0]!r}')
    return dict(zip(sub['id'], scores))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--submission', required=True)
    ap.add_argument('--answers', required=True)
    args = ap.parse_args()
    answers = pd.read_csv(os.path.join(args.answers, 'answers.csv'))
    scores = read_submission(args.submission, answers['id'])
    auc = roc_auc_score(answers['has_cactus'], answers['id'].map(scores))
    print(json.dumps({'score': float(auc)}))


if __name__ == '__main__':
    main()
