"""Synthetic 24x24 grey 'animal' images in two classes (a Dogs vs. Cats stand-in).

Cats: striped fur and pointed ears. Dogs: spotted fur and floppy side ears. Poses, sizes, contrast and
backgrounds vary; some animals have the other class's fur or hide their ears, so the classes overlap.
"""
import argparse
import os

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter

SIZE = 24
N_TRAIN, N_TEST = 2500, 1000


def ellipse(yy, xx, cy, cx, ry, rx):
    return np.clip((1 - ((yy - cy) / ry) ** 2 - ((xx - cx) / rx) ** 2) * 3, 0, 1)


def stripes(rng, yy, xx):
    angle, freq = rng.uniform(0, np.pi), rng.uniform(0.9, 1.4)
    return 0.5 + 0.5 * np.sign(np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy) + rng.uniform(0, 6.3)))


def spots(rng, yy, xx):
    fur = np.zeros((SIZE, SIZE))
    for _ in range(rng.integers(4, 9)):
        r = rng.uniform(1.2, 2.5)
        fur = np.maximum(fur, ellipse(yy, xx, rng.uniform(0, SIZE), rng.uniform(0, SIZE), r, r))
    return fur


def render(rng, is_dog):
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    cy, cx = SIZE / 2 + 2 + rng.uniform(-2, 2), SIZE / 2 + rng.uniform(-2.5, 2.5)
    ry, rx = rng.uniform(5, 7), rng.uniform(5, 7.5)
    body = ellipse(yy, xx, cy, cx, ry, rx)
    ears = rng.random() < 0.85
    if ears and not is_dog:  # pointed ears above the head
        for side in (-1, 1):
            ex = cx + side * rx * 0.55
            ear = np.clip((yy - (cy - ry - 3.5)) * 0.5 - np.abs(xx - ex), 0, 1) * (yy < cy - ry + 2)
            body = np.maximum(body, ear)
    elif ears:  # floppy ears hanging at the sides
        for side in (-1, 1):
            body = np.maximum(body, ellipse(yy, xx, cy - ry * 0.3, cx + side * (rx + 0.5), 3.2, 1.6))
    own_fur = rng.random() < 0.85
    fur = spots(rng, yy, xx) if (is_dog == own_fur) else stripes(rng, yy, xx)
    tone, contrast = rng.uniform(0.35, 0.75), rng.uniform(0.12, 0.35)
    animal = tone + contrast * (fur - 0.5)
    background = rng.uniform(0.2, 0.8) + gaussian_filter(rng.normal(0, 0.25, (SIZE, SIZE)), 3)
    img = background * (1 - body) + animal * body + rng.normal(0, 0.05, (SIZE, SIZE))
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
    labels = (rng.random(n) < 0.5).astype(int)  # 1 = dog
    images = np.stack([render(rng, y) for y in labels])
    os.makedirs(args.public, exist_ok=True)
    os.makedirs(args.private, exist_ok=True)
    np.save(os.path.join(args.public, 'train_images.npy'), images[:N_TRAIN])
    np.save(os.path.join(args.public, 'test_images.npy'), images[N_TRAIN:])
    names = np.where(labels[:N_TRAIN] == 1, 'dog', 'cat')
    train_ids = [f'{name}.{i}' for i, name in enumerate(names)]
    test_ids = np.arange(1, N_TEST + 1)
    pd.DataFrame({'id': train_ids, 'label': labels[:N_TRAIN]}).to_csv(os.path.join(args.public, 'train.csv'), index=False)
    pd.DataFrame({'id': test_ids}).to_csv(os.path.join(args.public, 'test.csv'), index=False)
    pd.DataFrame({'id': test_ids, 'label': 0.5}).to_csv(os.path.join(args.public, 'sample_submission.csv'), index=False)
    pd.DataFrame({'id': test_ids, 'label': labels[N_TRAIN:]}).to_csv(os.path.join(args.private, 'answers.csv'), index=False)


if __name__ == '__main__':
    main()
