"""Synthetic 16x32 humpback-fluke photos (a Humpback Whale Identification stand-in): each whale has its own
white markings, trailing-edge nicks and pigmentation; photos vary in framing, exposure, noise and splashes.
Many whales have a single photo, and whales never seen before are labelled new_whale."""
import argparse
import os

import numpy as np
import pandas as pd

H, W = 16, 32
N_KNOWN, N_TRAIN_NEW, N_TEST = 200, 170, 400
TEST_NEW_FRACTION = 0.3


def identity(rng):
    n = rng.integers(4, 8)
    return {
        'marks': np.column_stack([rng.uniform(-0.9, 0.9, n), rng.uniform(0.1, 0.9, n), rng.uniform(0.6, 1.4, n)]),
        'nicks': np.column_stack([rng.uniform(-0.95, 0.95, 3), rng.uniform(0.5, 2.0, 3)]),
        'white': rng.uniform(-0.3, 0.3),  # left-right pigmentation balance
    }


def photo(rng, whale):
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    cx, top = (W - 1) / 2 + rng.uniform(-3, 3), 3 + rng.uniform(-2, 2)
    u = (xx - cx) / 14.5  # -1..1 across the fluke span
    depth = 8 - 3 * np.abs(u)  # lobes get thinner towards the tips
    for pos, size in whale['nicks']:
        depth -= size * np.exp(-((u - pos) / 0.06) ** 2)
    v = (yy - top - 1.5 * u ** 2) / np.maximum(depth, 1)  # 0 at the leading edge, 1 at the trailing edge
    fluke = np.clip((np.minimum(v, 1 - v) * depth + 0.5), 0, 1) * (np.abs(u) < 1) * (np.abs(xx - cx) > 0.6)
    body = 0.15 + 0.12 * (whale['white'] * u + 0.3)
    for mu, mv, r in whale['marks']:
        if rng.random() < 0.85:  # a mark is sometimes hidden by water or glare
            body = body + 0.7 * np.exp(-(((u - mu) * 14.5) ** 2 + ((v - mv) * depth) ** 2) / (2 * (r * 0.8) ** 2))
    water = 0.5 + rng.normal(0, 0.05) + 0.05 * np.sin(yy * rng.uniform(0.8, 1.6) + rng.uniform(0, 6.3))
    img = water * (1 - fluke) + np.clip(body, 0, 1) * fluke
    if rng.random() < 0.3:  # a splash of white water
        sy, sx = rng.uniform(0, H), rng.uniform(0, W)
        img = np.maximum(img, 0.9 * np.exp(-((yy - sy) ** 2 + (xx - sx) ** 2) / (2 * rng.uniform(1, 2.5) ** 2)))
    img = (img - 0.5) * rng.uniform(0.7, 1.2) + 0.5 + rng.uniform(-0.12, 0.12) + rng.normal(0, 0.06, (H, W))
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--public', required=True)
    ap.add_argument('--private', required=True)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--source', default=None)  # unused: the data is generated
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    names = [f'w_{h:07x}' for h in rng.choice(16 ** 7, size=N_KNOWN, replace=False)]
    whales = [identity(rng) for _ in range(N_KNOWN)]
    counts = rng.choice([1, 1, 1, 2, 2, 3, 4, 6], size=N_KNOWN)  # many whales have a single photo
    train_labels = [k for k, c in enumerate(counts) for _ in range(c)] + [-1] * N_TRAIN_NEW
    n_test_new = int(N_TEST * TEST_NEW_FRACTION)
    test_labels = list(rng.integers(0, N_KNOWN, N_TEST - n_test_new)) + [-1] * n_test_new
    train_labels, test_labels = rng.permutation(train_labels), rng.permutation(test_labels)
    shoot = lambda k: photo(rng, whales[k] if k >= 0 else identity(rng))  # noqa: E731 - new whales are one-offs
    train_images = np.stack([shoot(k) for k in train_labels])
    test_images = np.stack([shoot(k) for k in test_labels])
    label_name = lambda k: names[k] if k >= 0 else 'new_whale'  # noqa: E731
    files = [f'{h:08x}.jpg' for h in rng.choice(16 ** 8, size=len(train_labels) + N_TEST, replace=False)]
    train_files, test_files = files[:len(train_labels)], files[len(train_labels):]
    os.makedirs(args.public, exist_ok=True)
    os.makedirs(args.private, exist_ok=True)
    np.save(os.path.join(args.public, 'train_images.npy'), train_images)
    np.save(os.path.join(args.public, 'test_images.npy'), test_images)
    pd.DataFrame({'Image': train_files, 'Id': [label_name(k) for k in train_labels]}).to_csv(os.path.join(args.public, 'train.csv'), index=False)
    pd.DataFrame({'Image': test_files}).to_csv(os.path.join(args.public, 'test.csv'), index=False)
    pd.DataFrame({'Image': test_files, 'Id': 'new_whale ' + ' '.join(names[:4])}).to_csv(os.path.join(args.public, 'sample_submission.csv'), index=False)
    pd.DataFrame({'Image': test_files, 'Id': [label_name(k) for k in test_labels]}).to_csv(os.path.join(args.private, 'answers.csv'), index=False)


if __name__ == '__main__':
    main()
