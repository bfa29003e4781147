"""Accuracy of predicted shape labels against the hidden answers."""
import argparse
import json
import os
import sys

import pandas as pd

N_CLASSES = 10


def fail(message):
    print(json.dumps({'error': message}))
    sys.exit(2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--submission', required=True)
    ap.add_argument('--answers', required=True)
    args = ap.parse_args()
    answers = pd.read_csv(os.path.join(args.answers, 'answers.csv'))
    if not os.path.isfile(args.submission):
        fail(f'submission file not found: {args.submission}')
    try:
        sub = pd.read_csv(args.submission, dtype={'id': str})
    except Exception as e:  # noqa: BLE001 - any unreadable CSV is the submission's fault
        fail(f'cannot read submission CSV: {e}')
    if list(sub.columns) != ['id', 'label']:
        fail(f'expected columns [id, label], got {list(sub.columns)}')
    if sub['id'].duplicated().any():
        fail(f'duplicate ids, e.g. {sub["id"][sub["id"].duplicated()].iloc[0]}')
    missing = set(answers['id']) - set(sub['id'])
    extra = set(sub['id']) - set(answers['id'])
    if missing or extra:
        fail(f'{len(missing)} test ids missing (e.g. {sorted(missing)[:3]}), {len(extra)} unknown ids (e.g. {sorted(extra)[:3]})')
    labels = pd.to_numeric(sub['label'], errors='coerce')
    bad = labels.isna() | (labels != labels.round()) | (labels < 0) | (labels >= N_CLASSES)
    if bad.any():
        fail(f'label must be an integer class 0..{N_CLASSES - 1}; row for id {sub["id"][bad].iloc[0]} has {sub["label"][bad].iloc[0]!r}')
    predicted = dict(zip(sub['id'], labels.astype(int)))
    accuracy = float((answers['id'].map(predicted) == answers['label']).mean())
    print(json.dumps({'score': accuracy}))


if __name__ == '__main__':
    main()
