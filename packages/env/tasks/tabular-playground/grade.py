"""Grade tabular-playground: multiclass accuracy of the predicted Cover_Type (higher is better)."""
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
    if list(sub.columns) != ['Id', 'Cover_Type']:
        fail(f"submission columns must be ['Id', 'Cover_Type'], got {list(sub.columns)}")
    if sub['Id'].duplicated().any() or set(sub['Id']) != set(answers['Id']):
        fail(f'submission must have exactly one row per Id of test.csv ({len(answers)} rows), got {len(sub)} rows')
    pred = pd.to_numeric(sub.set_index('Id').loc[answers['Id'], 'Cover_Type'], errors='coerce').to_numpy(dtype=float)
    if not np.isin(pred, np.arange(1, 8)).all():
        fail('Cover_Type must be an integer from 1 to 7 in every row')
    print(json.dumps({'score': float((pred == answers['Cover_Type'].to_numpy()).mean())}))


if __name__ == '__main__':
    main()
