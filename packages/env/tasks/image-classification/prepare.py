"""Synthetic 16x16 colour shapes in 10 classes (a CIFAR-10 stand-in), written as .npy arrays plus CSV ids/labels."""
import argparse
import os

import numpy as np
import pandas as pd

SIZE = 16
CLASSES = ['disk', 'square', 'triangle', 'plus', 'ring', 'cross', 'diamond', 'equals', 'pillars', 'half_disk']
N_TRAIN, N_TEST = 3000, 1000


def signed_distance(shape, u, v):
    """Positive inside the shape; u, v are coordinates in units of the shape's radius (v points down)."""
    r = np.hypot(u, v)
    if shape == 'disk':
        return 1 - r
    if shape == 'square':
        return 0.85 - np.maximum(abs(u), abs(v))
    if shape == 'triangle':
        return np.minimum(0.75 - v, (v + 0.95) * 0.6 - abs(u))
    if shape == 'plus':
        return np.maximum(np.minimum(0.3 - abs(u), 1 - abs(v)), np.minimum(0.3 - abs(v), 1 - abs(u)))
    if shape == 'ring':
        return 0.22 - abs(r - 0.75)
    if shape == 'cross':
        a, b = (u + v) / np.sqrt(2), (u - v) / np.sqrt(2)
        return np.maximum(np.minimum(0.28 - abs(a), 1 - abs(b)), np.minimum(0.28 - abs(b), 1 - abs(a)))
    if shape == 'diamond':
        return 1 - (abs(u) + abs(v))
    if shape == 'equals':
        return np.minimum(1 - abs(u), 0.2 - abs(abs(v) - 0.45))
    if shape == 'pillars':
        return np.minimum(1 - abs(v), 0.2 - abs(abs(u) - 0.45))
    if shape == 'half_disk':
        return np.minimum(1 - r, v + 0.1)
    raise ValueError(shape)


def render(rng, label):
    radius = rng.uniform(4.5, 6.5)
    cx, cy = (SIZE - 1) / 2 + rng.uniform(-2, 2, size=2)
    angle = rng.uniform(-0.3, 0.3)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    dx, dy = (xx - cx) / radius, (yy - cy) / radius
    u = np.cos(angle) * dx + np.sin(angle) * dy
    v = -np.sin(angle) * dx + np.cos(angle) * dy
    mask = 1 / (1 + np.exp(-2 * radius * signed_distance(CLASSES[label], u, v)))
    bg = rng.uniform(0, 1, size=3)
    fg = rng.uniform(0, 1, size=3)
    while np.abs(fg - bg).sum() < 0.6:  # keep the shape visible
        fg = rng.uniform(0, 1, size=3)
    gradient = rng.normal(0, 0.15, size=3)[None, None, :] * (xx / SIZE - 0.5)[:, :, None]
    img = bg + gradient + mask[:, :, None] * (fg - bg) + rng.normal(0, 0.08, size=(SIZE, SIZE, 3))
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
    labels = rng.integers(0, len(CLASSES), size=n)
    images = np.stack([render(rng, y) for y in labels])
    ids = [f'img_{i:05d}' for i in rng.permutation(n)]
    os.makedirs(args.public, exist_ok=True)
    os.makedirs(args.private, exist_ok=True)
    np.save(os.path.join(args.public, 'train_images.npy'), images[:N_TRAIN])
    np.save(os.path.join(args.public, 'test_images.npy'), images[N_TRAIN:])
    pd.DataFrame({'id': ids[:N_TRAIN], 'label': labels[:N_TRAIN]}).to_csv(os.path.join(args.public, 'train.csv'), index=False)
    pd.DataFrame({'id': ids[N_TRAIN:]}).to_csv(os.path.join(args.public, 'test.csv'), index=False)
    pd.DataFrame({'id': ids[N_TRAIN:], 'label': 0}).to_csv(os.path.join(args.public, 'sample_submission.csv'), index=False)
    pd.DataFrame({'id': ids[N_TRAIN:], 'label': labels[N_TRAIN:]}).to_csv(os.path.join(args.private, 'answers.csv'), index=False)


if __name__ == '__main__':
    main()
