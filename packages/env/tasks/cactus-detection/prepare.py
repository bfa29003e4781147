"""Synthetic 32x32 aerial desert patches; about 3/4 contain a columnar cactus (an Aerial Cactus stand-in)."""
import argparse
import os

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter, zoom

SIZE = 32
N_TRAIN, N_TEST = 2500, 1000


def smooth_noise(rng, cells, scale):
    """Low-frequency noise: a random cells x cells grid upsampled to the patch."""
    return zoom(rng.normal(0, scale, size=(cells, cells)), SIZE / cells, order=1)


def blob(yy, xx, cy, cx, ry, rx):
    return np.clip(1.2 - ((yy - cy) / ry) ** 2 - ((xx - cx) / rx) ** 2, 0, 1)


def sand(rng, yy, xx):
    base = np.array([0.76, 0.64, 0.47]) + rng.normal(0, 0.06, size=3)
    img = base + smooth_noise(rng, 4, 0.05)[:, :, None] + rng.normal(0, 0.02, size=(SIZE, SIZE, 3))
    for _ in range(rng.integers(0, 5)):  # round shrubs and grey rocks as distractors
        colour = np.array([0.35, 0.45, 0.25]) if rng.random() < 0.6 else np.array([0.55, 0.55, 0.55])
        r = rng.uniform(1.5, 4)
        m = blob(yy, xx, rng.uniform(0, SIZE), rng.uniform(0, SIZE), r, r * rng.uniform(0.8, 1.25))
        img = img * (1 - m[:, :, None]) + m[:, :, None] * (colour + rng.normal(0, 0.05, size=3))
    return img


def add_cactus(rng, img, yy, xx):
    """A tall narrow green column with a lit ridge and a shadow on the right, sometimes with arms."""
    height, width = rng.uniform(7, 14), rng.uniform(1.0, 2.2)
    cy, cx = rng.uniform(4, SIZE - 4), rng.uniform(3, SIZE - 3)
    tilt = rng.uniform(-0.25, 0.25)
    u = xx - cx - tilt * (yy - cy)
    body = blob(yy, u + cx, cy, cx, height, width)
    if rng.random() < 0.4:
        arm_y = cy + rng.uniform(-height / 2, height / 2)
        side = rng.choice([-1, 1])
        body = np.maximum(body, blob(yy, xx, arm_y - 2, cx + side * 2.5 * width, 3, width * 0.8))
    shadow = np.roll(body, 2, axis=1) * 0.35
    alpha = rng.uniform(0.35, 1.0)  # some cacti are faint or partly dried
    green = np.array([0.22, 0.42, 0.2]) + rng.normal(0, 0.04, size=3)
    ridge = np.exp(-(u / (0.5 * width)) ** 2) * 0.12 * body
    img = img * (1 - shadow[:, :, None] * alpha)
    m = (body * alpha)[:, :, None]
    return img * (1 - m) + m * (green + ridge[:, :, None])


def render(rng, has_cactus):
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    img = sand(rng, yy, xx)
    if has_cactus:
        for _ in range(1 + (rng.random() < 0.3)):
            img = add_cactus(rng, img, yy, xx)
    img = gaussian_filter(img, sigma=(0.6, 0.6, 0)) + rng.normal(0, 0.03, size=img.shape)
    img = img * rng.uniform(0.8, 1.15)  # exposure
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
    labels = (rng.random(n) < 0.75).astype(int)
    images = np.stack([render(rng, y) for y in labels])
    ids = [f'{h:016x}.jpg' for h in rng.integers(0, 2**62, size=n)]
    os.makedirs(args.public, exist_ok=True)
    os.makedirs(args.private, exist_ok=True)
    np.save(os.path.join(args.public, 'train_images.npy'), images[:N_TRAIN])
    np.save(os.path.join(args.public, 'test_images.npy'), images[N_TRAIN:])
    pd.DataFrame({'id': ids[:N_TRAIN], 'has_cactus': labels[:N_TRAIN]}).to_csv(os.path.join(args.public, 'train.csv'), index=False)
    pd.DataFrame({'id': ids[N_TRAIN:]}).to_csv(os.path.join(args.public, 'test.csv'), index=False)
    pd.DataFrame({'id': ids[N_TRAIN:], 'has_cactus': 0.5}).to_csv(os.path.join(args.public, 'sample_submission.csv'), index=False)
    pd.DataFrame({'id': ids[N_TRAIN:], 'has_cactus': labels[N_TRAIN:]}).to_csv(os.path.join(args.private, 'answers.csv'), index=False)


if __name__ == '__main__':
    main()
