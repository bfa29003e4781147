"""MAP@5: each test image has one true whale id (or new_whale); a prediction of up to 5 space-separated ids
scores 1/k if the true id is k-th (first occurrence), else 0."""
import argparse
import json
import os
import sys

import numpy as np
import pandas as pd


def fail(message):
    print(json.dumps({'error': message}))
    sys.exit(2)


def average_precision_at_5(truth, predicted):
    for k, label in enumerate(predicted[:5]):
        if label == truth:
            return 1.0 / (k + 1)
    return 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--submission', required=True)
    ap.add_argument('--answers', required=True)
    args = ap.parse_args()
    answers = pd.read_csv(os.path.join(args.answers, 'answers.csv'))
    if not os.path.isfile(args.submission):
        fail(f'submission file not found: {args.submission}')
    try:
        sub = pd.read_csv(args.submission, dtype=str, keep_default_na=False)
    except Exception as e:  # noqa: BLE001 - any unreadable CSV is the submission's fault
        fail(f'cannot read submission CSV: {e}')
    if list(sub.columns) != ['Image', 'Id']:
        fail(f'expected columns [Image, Id], got {list(sub.columns)}')
    if sub['Image'].duplicated().any():
        fail(f'duplicate Image {sub["Image"][sub["Image"].duplicated()].iloc[0]}')
    missing, extra = set(answers['Image']) - set(sub['Image']), set(sub['Image']) - set(answers['Image'])
    if missing or extra:
        fail(f'{len(missing)} test images missing (e.g. {sorted(missing)[:3]}), {len(extra)} unknown (e.g. {sorted(extra)[:3]})')
    predictions = dict(zip(sub['Image'], sub['Id'].str.split()))
    for image, labels in predictions.items():
        if not 1 <= len(labels) <= 5:
            fail(f'Image {image}: Id must hold 1 to 5 space-separated whale ids, got {len(labels)}')
    score = np.mean([average_precision_at_5(t, predictions[i]) for i, t in zip(answers['Image'], answers['Id'])])
    print(json.dumps({'score': float(score)}))


if __name__ == '__main__':
    main()
