"""Grade citation-graph: accuracy of the predicted subject area of each test paper."""
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
    if list(sub.columns) != ['node_id', 'label']:
        fail(f"submission columns must be ['node_id', 'label'], got {list(sub.columns)}")
    if sub['label'].isna().any():
        fail(f'{int(sub["label"].isna().sum())} missing labels in submission')
    if sub['node_id'].duplicated().any():
        fail('duplicate node_id values in submission')
    missing = set(answers['node_id']) - set(sub['node_id'])
    extra = set(sub['node_id']) - set(answers['node_id'])
    if missing or extra:
        fail(f'submission node_ids differ from the test nodes: {len(missing)} missing, {len(extra)} unexpected')
    predicted = pd.to_numeric(sub.set_index('node_id').loc[answers['node_id'], 'label'], errors='coerce').to_numpy()
    if np.isnan(predicted).any() or (predicted != np.round(predicted)).any():
        fail('labels must be integer subject areas 0..7')
    score = float(np.mean(predicted.astype(int) == answers['label'].to_numpy()))
    print(json.dumps({'score': score}))


if __name__ == '__main__':
    main()
