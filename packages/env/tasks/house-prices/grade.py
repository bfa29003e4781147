"""Grade house-prices: mean absolute error of SalePrice in dollars (lower is better)."""
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
    answers = pd.read_csv(os.path.join(a.answers, 'answers.csv'))
    try:
        sub = pd.read_csv(a.submission)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the submitter's error
        fail(f'cannot read submission as CSV: {e}')
    if list(sub.columns) != ['Id', 'SalePrice']:
        fail(f"submission columns must be ['Id', 'SalePrice'], got {list(sub.columns)}")
    if sub['Id'].duplicated().any() or set(sub['Id']) != set(answers['Id']):
        fail(f'submission must have exactly one row per Id of test.csv ({len(answers)} rows), got {len(sub)} rows')
    pred = pd.to_numeric(sub.set_index('Id').loc[answers['Id'], 'SalePrice'], errors='coerce').to_numpy(dtype=float)
    if not np.isfinite(pred).all():
        fail('SalePrice must be a finite number in every row')
    print(json.dumps({'score': float(np.mean(np.abs(pred - answers['SalePrice'].to_numpy())))}))


if __name__ == '__main__':
    main()
