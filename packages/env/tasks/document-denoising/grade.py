"""Per-pixel RMSE between the submitted cleaned intensities (0 = black, 1 = white) and the true clean pages."""
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
    if list(sub.columns) != ['id', 'value']:
        fail(f'expected columns [id, value], got {list(sub.columns)}')
    if sub['id'].duplicated().any():
        fail(f'duplicate pixel id {sub["id"][sub["id"].duplicated()].iloc[0]}')
    if len(sub) != len(answers) or not sub['id'].isin(answers['id']).all():
        missing, extra = set(answers['id']) - set(sub['id']), set(sub['id']) - set(answers['id'])
        fail(f'expected one row per test pixel ({len(answers)} rows, ids image_row_col); {len(missing)} missing '
             f'(e.g. {sorted(missing)[:3]}), {len(extra)} unknown (e.g. {sorted(extra)[:3]})')
    values = pd.to_numeric(sub['value'], errors='coerce')
    bad = ~np.isfinite(values)
    if bad.any():
        fail(f'value must be a finite number; pixel {sub["id"][bad].iloc[0]} has {sub["value"][bad].iloc[0]!r}')
    predicted = pd.Series(values.to_numpy(), index=sub['id']).loc[answers['id']].to_numpy()
    print(json.dumps({'score': float(np.sqrt(np.mean((predicted - answers['value'].to_numpy()) ** 2)))}))


if __name__ == '__main__':
    main()
