"""Grade insult-detection: accuracy of the predicted 0/1 unwanted flags (higher is better)."""
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
    if list(sub.columns) != ['id', 'unwanted']:
        fail(f"submission columns must be ['id', 'unwanted'], got {list(sub.columns)}")
    if sub['id'].duplicated().any():
        fail('duplicate ids in submission')
    missing = set(answers['id']) - set(sub['id'])
    extra = set(sub['id']) - set(answers['id'])
    if missing or extra:
        fail(f'submission ids differ from test.csv: {len(missing)} missing, {len(extra)} unexpected')
    predicted = pd.to_numeric(sub.set_index('id').loc[answers['id'], 'unwanted'], errors='coerce').to_numpy()
    if np.isnan(predicted).any():
        fail('submission contains missing or non-numeric unwanted values')
    if not np.isin(predicted, [0, 1]).all():
        fail('unwanted must be 0 or 1 (a class, not a probability)')
    score = float(np.mean(predicted == answers['unwanted'].to_numpy()))
    print(json.dumps({'score': score}))


if __name__ == '__main__':
    main()
