"""Grade spaceship-titanic: accuracy of the predicted Transported flags (higher is better)."""
import argparse
import json
import os
import sys

import pandas as pd

TRUE = {'true': True, '1': True, '1.0': True, 'false': False, '0': False, '0.0': False}


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
        sub = pd.read_csv(a.submission, dtype=str)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the submitter's error
        fail(f'cannot read submission as CSV: {e}')
    if list(sub.columns) != ['PassengerId', 'Transported']:
        fail(f"submission columns must be ['PassengerId', 'Transported'], got {list(sub.columns)}")
    if sub['PassengerId'].duplicated().any() or set(sub['PassengerId']) != set(answers['PassengerId']):
        fail(f'submission must have exactly one row per PassengerId of test.csv ({len(answers)} rows), got {len(sub)} rows')
    flags = sub['Transported'].str.strip().str.lower().map(TRUE)
    if flags.isna().any():
        bad = sub['Transported'][flags.isna()].iloc[0]
        fail(f'Transported must be True or False in every row, got {bad!r}')
    pred = flags.set_axis(sub['PassengerId']).loc[answers['PassengerId']].to_numpy()
    print(json.dumps({'score': float((pred == answers['Transported'].to_numpy()).mean())}))


if __name__ == '__main__':
    main()
