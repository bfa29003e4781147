"""Synthetic 24x24 apple-leaf images: healthy, rust, scab or both (a Plant Pathology 2020 stand-in)."""
import argparse
import os

import numpy as np
import pandas as pd

SIZE = 24
N_TRAIN, N_TEST = 2000, 800
LABELS = ['healthy', 'multiple_diseases', 'rust', 'scab']
FREQUENCIES = [0.29, 0.06, 0.33, 0.32]


def disc(yy, xx, cy, cx, r):
    return np.clip(1.5 - np.hypot(yy - cy, xx - cx) / r, 0, 1)


def add_spots(rng, img, leaf, yy, xx, colour, count, radius):
    inside = np.argwhere(leaf > 0.8)
    for _ in range(count):
        cy, cx = inside[rng.integers(len(inside))] + rng.uniform(-0.5, 0.5, size=2)
        m = (disc(yy, xx, cy, cx, radius * rng.uniform(0.7, 1.3)) * leaf)[:, :, None]
        img = img * (1 - m) + m * (colour + rng.normal(0, 0.04, size=3))
    return img


def render(rng, label):
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    angle = rng.uniform(0, np.pi)
    cy, cx = SIZE / 2 + rng.uniform(-1.5, 1.5, size=2)
    u = np.cos(angle) * (xx - cx) + np.sin(angle) * (yy - cy)
    v = -np.sin(angle) * (xx - cx) + np.cos(angle) * (yy - cy)
    length, width = rng.uniform(9, 11.5), rng.uniform(4.5, 6.5)
    leaf = np.clip((1 - (u / length) ** 2 - (v / width) ** 2) * 4, 0, 1)
    green = np.array([0.25, 0.55, 0.2]) + rng.normal(0, 0.05, size=3)
    vein = np.exp(-v ** 2) * (np.abs(u) < length) * 0.15
    background = np.array([0.35, 0.33, 0.3]) + rng.normal(0, 0.07, size=3)
    img = background * (1 - leaf[:, :, None]) + leaf[:, :, None] * (green + vein[:, :, None])
    img = img + rng.normal(0, 0.035, size=img.shape)
    severity = rng.uniform(0.3, 1.0)
    if label in ('rust', 'multiple_diseases'):  # small bright orange pustules
        img = add_spots(rng, img, leaf, yy, xx, np.array([0.85, 0.55, 0.15]) * rng.uniform(0.75, 1.0), rng.integers(1, 4 + int(6 * severity)), 0.9)
    if label in ('scab', 'multiple_diseases'):  # larger dull olive-brown lesions
        img = add_spots(rng, img, leaf, yy, xx, np.array([0.38, 0.33, 0.18]) * rng.uniform(0.8, 1.15), rng.integers(1, 3 + int(3 * severity)), 1.6)
    if rng.random() < 0.3:  # a harmless glare patch on some leaves
        m = (disc(yy, xx, *(np.array([cy, cx]) + rng.uniform(-4, 4, size=2)), 2.5) * leaf * 0.35)[:, :, None]
        img = img * (1 - m) + m
    img = img * rng.uniform(0.85, 1.15)
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--public', required=True)
    ap.add_argument('--private', required=True)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--source', default=None)  # unused: the data is generated
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    n = N_TRAIN + N_TEST
    labels = rng.choice(len(LABELS), size=n, p=FREQUENCIES)
    images = np.stack([render(rng, LABELS[k]) for k in labels])
    onehot = pd.DataFrame(np.eye(len(LABELS), dtype=int)[labels], columns=LABELS)
    train_ids, test_ids = [f'Train_{i}' for i in range(N_TRAIN)], [f'Test_{i}' for i in range(N_TEST)]
    os.makedirs(args.public, exist_ok=True)
    os.makedirs(args.private, exist_ok=True)
    np.save(os.path.join(args.public, 'train_images.npy'), images[:N_TRAIN])
    np.save(os.path.join(args.public, 'test_images.npy'), images[N_TRAIN:])
    pd.concat([pd.DataFrame({'image_id': train_ids}), onehot[:N_TRAIN]], axis=1).to_csv(os.path.join(args.public, 'train.csv'), index=False)
    pd.DataFrame({'image_id': test_ids}).to_csv(os.path.join(args.public, 'test.csv'), index=False)
    sample = pd.DataFrame({'image_id': test_ids, **{c: 0.25 for c in LABELS}})
    sample.to_csv(os.path.join(args.public, 'sample_submission.csv'), index=False)
    answers = pd.concat([pd.DataFrame({'image_id': test_ids}), onehot[N_TRAIN:].reset_index(drop=True)], axis=1)
    answers.to_csv(os.path.join(args.private, 'answers.csv'), index=False)


if __name__ == '__main__':
    main()
