"""Multi-class log loss over the species columns (rows renormalized to sum to 1, clipped at 1e-15, as on Kaggle)."""
import argparse
import json
import os
import sys

import numpy as np
import pandas as pd

EPS = 1e-15


def fail(message):
    print(json.dumps({'error': message}))
    sys.exit(2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--submission', required=True)
    ap.add_argument('--answers', required=True)
    args = ap.parse_args()
    answers = pd.read_csv(os.path.join(args.answers, 'answers.csv'))
    species = sorted(answers['species'].unique())  # the sample submission lists all species; the test has each
    if not os.path.isfile(args.submission):
        fail(f'submission file not found: {args.submission}')
    try:
        sub = pd.read_csv(args.submission)
    except Exception as e:  # noqa: BLE001 - any unreadable CSV is the submission's fault
        fail(f'cannot read submission CSV: {e}')
    if list(sub.columns) != ['id'] + species:
        fail(f'expected columns id followed by the {len(species)} species of sample_submission.csv in that order; got {list(sub.columns)[:4]}...')
    ids = pd.to_numeric(sub['id'], errors='coerce')
    if ids.isna().any():
        fail(f'id must be an integer test id; got {sub["id"][ids.isna()].iloc[0]!r}')
    if ids.duplicated().any():
        fail(f'duplicate id {int(ids[ids.duplicated()].iloc[0])}')
    missing, extra = set(answers['id']) - set(ids), set(ids) - set(answers['id'])
    if missing or extra:
        fail(f'{len(missing)} test ids missing (e.g. {sorted(missing)[:3]}), {len(extra)} unknown ids (e.g. {sorted(extra)[:3]})')
    probs = sub[species].apply(pd.to_numeric, errors='coerce').to_numpy(dtype=float)
    bad = ~np.isfinite(probs) | (probs < 0)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        fail(f'probabilities must be finite and non-negative; id {int(ids[row])}, column {species[col]} has {sub[species[col]].iloc[row]!r}')
    if (probs.sum(axis=1) <= 0).any():
        fail(f'id {int(ids[probs.sum(axis=1) <= 0].iloc[0])} has all-zero probabilities')
    probs = pd.DataFrame(probs / probs.sum(axis=1, keepdims=True), index=ids.astype(int), columns=species)
    p_true = [probs.at[i, s] for i, s in zip(answers['id'], answers['species'])]
    print(json.dumps({'score': float(-np.mean(np.log(np.clip(p_true, EPS, 1 - EPS))))}))


if __name__ == '__main__':
    main()
