"""Mean column-wise ROC AUC over healthy, multiple_diseases, rust and scab."""
import argparse
import json
import os
import sys

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

LABELS = ['healthy', 'multiple_diseases', 'rust', 'scab']


def fail(message):
    print(json.dumps({'error': message}))
    sys.exit(2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--submission', required=True)
    ap.add_argument('--answers', required=True)
    args = ap.parse_args()
    answers = pd.read_csv(os.path.join(args.answers, 'answers.csv')).set_index('image_id')
    if not os.path.isfile(args.submission):
        fail(f'submission file not found: {args.submission}')
    try:
        sub = pd.read_csv(args.submission, dtype={'image_id': str})
    except Exception as e:  # noqa: BLE001 - any unreadable CSV is the submission's fault
        fail(f'cannot read submission CSV: {e}')
    if list(sub.columns) != ['image_id'] + LABELS:
        fail(f'expected columns {["image_id"] + LABELS}, got {list(sub.columns)}')
    if sub['image_id'].duplicated().any():
        fail(f'duplicate image_id {sub["image_id"][sub["image_id"].duplicated()].iloc[0]}')
    missing, extra = set(answers.index) - set(sub['image_id']), set(sub['image_id']) - set(answers.index)
    if missing or extra:
        fail(f'{len(missing)} test ids missing (e.g. {sorted(missing)[:3]}), {len(extra)} unknown ids (e.g. {sorted(extra)[:3]})')
    scores = sub.set_index('image_id').loc[answers.index].apply(pd.to_numeric, errors='coerce')
    finite = np.isfinite(scores.to_numpy(dtype=float))
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        fail(f'column {LABELS[col]} must hold finite numbers; image_id {scores.index[row]} has a non-number')
    aucs = [roc_auc_score(answers[c], scores[c]) for c in LABELS]
    print(json.dumps({'score': float(np.mean(aucs))}))


if __name__ == '__main__':
    main()
