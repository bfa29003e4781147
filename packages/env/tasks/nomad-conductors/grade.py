"""Grade nomad-conductors: RMSLE of each target, averaged over the two targets (lower is better)."""
import argparse
import json
import os
import sys

import numpy as np
import pandas as pd

TARGETS = ['formation_energy_ev_natom', 'bandgap_energy_ev']


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
    if sorted(sub.columns) != sorted(['id', *TARGETS]):
        fail(f"submission columns must be {['id', *TARGETS]}, got {list(sub.columns)}")
    if sub['id'].duplicated().any() or set(sub['id']) != set(answers['id']):
        fail(f'submission must have exactly one row per id of test.csv ({len(answers)} rows), got {len(sub)} rows')
    pred = sub.set_index('id').loc[answers['id'], TARGETS].apply(pd.to_numeric, errors='coerce').to_numpy(dtype=float)
    if not np.isfinite(pred).all():
        fail('predictions must be finite numbers in every row')
    if (pred <= -1).any():
        fail('predictions must be greater than -1 (RMSLE takes log(1 + prediction))')
    truth = answers[TARGETS].to_numpy(dtype=float)
    rmsle = np.sqrt(np.mean((np.log1p(pred) - np.log1p(truth)) ** 2, axis=0))
    print(json.dumps({'score': float(rmsle.mean())}))


if __name__ == '__main__':
    main()
