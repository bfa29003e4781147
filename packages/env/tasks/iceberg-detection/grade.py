"""Binary log loss of the predicted iceberg probabilities (clipped to [1e-15, 1 - 1e-15], as on Kaggle)."""
import argparse
import json
import os
import sys

import numpy as np
import pandas as pd

COLUMNS = ['id', 'is_iceberg']
EPS = 1e-15


def fail(message):
    print(json.dumps({'error': message}))
    sys.exit(2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--submission', required=True)
    ap.add_argument('--answers', required=True)
    args = ap.parse_args()
    answers = pd.read_csv(os.path.join(args.answers, 'answers.csv'), dtype={'id': str})
    if not os.path.isfile(args.submission):
        fail(f'submission file not found: {args.submission}')
    try:
        sub = pd.read_csv(args.submission, dtype={'id': str})
    except Exception as e:  # noqa: BLE001 - any unreadable CSV is the submission's fault
        fail(f'cannot read submission CSV: {e}')
    if list(sub.columns) != COLUMNS:
        fail(f'expected columns {COLUMNS}, got {list(sub.columns)}')
    ids = sub['id']
    if ids.duplicated().any():
        fail(f'duplicate id {ids[ids.duplicated()].iloc[0]}')
    missing, extra = set(answers['id']) - set(ids), set(ids) - set(answers['id'])
    if missing or extra:
        fail(f'{len(missing)} test ids missing (e.g. {sorted(missing)[:3]}), {len(extra)} unknown ids (e.g. {sorted(extra)[:3]})')
    p = pd.to_numeric(sub['is_iceberg'], errors='coerce').to_numpy(dtype=float)
    bad = ~np.isfinite(p) | (p < 0) | (p > 1)
    if bad.any():
        fail(f'is_iceberg must be a probability in [0, 1]; id {ids[bad].iloc[0]} has {sub["is_iceberg"][bad].iloc[0]!r}')
    p = np.clip(pd.Series(p, index=ids).loc[answers['id']].to_numpy(), EPS, 1 - EPS)
    t = answers['is_iceberg'].to_numpy()
    print(json.dumps({'score': float(-np.mean(t * np.log(p) + (1 - t) * np.log(1 - p)))}))


if __name__ == '__main__':
    main()
