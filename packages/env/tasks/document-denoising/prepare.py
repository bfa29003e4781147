"""Synthetic 32x48 scanned 'documents': dark glyph text on white paper, dirtied with stains, uneven
lighting, speckles and noise (a Denoising Dirty Documents stand-in). Train has dirty/clean pairs."""
import argparse
import os

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter

H, W = 32, 48
N_TRAIN, N_TEST = 60, 20


def glyph_bank(rng, count=40):
    """Random 5x4 stroke glyphs, a made-up alphabet shared by every page."""
    bank = []
    for _ in range(count):
        g = np.zeros((5, 4))
        g[rng.integers(0, 5), :] = 1 if rng.random() < 0.5 else 0
        g[:, rng.integers(0, 4)] = 1
        g[rng.random((5, 4)) < 0.25] = 1
        bank.append(g)
    return bank


def clean_page(rng, bank):
    page = np.ones((H, W))
    ink = rng.uniform(0.05, 0.25)
    y = rng.integers(1, 4)
    while y + 5 <= H:
        x = rng.integers(1, 4)
        while x + 4 <= W:
            if rng.random() < 0.85:  # spaces between words
                g = bank[rng.integers(len(bank))]
                page[y:y + 5, x:x + 4] = np.where(g > 0, ink, page[y:y + 5, x:x + 4])
            x += 5
        y += rng.integers(7, 9)
    return page


def dirty(rng, page):
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    light = 1 - rng.uniform(0, 0.25) * (rng.uniform(-1, 1) * (xx / W - 0.5) + rng.uniform(-1, 1) * (yy / H - 0.5) + 0.5)
    stain = np.zeros((H, W))
    for _ in range(rng.integers(1, 4)):  # coffee stains: dark blobs, some with a darker rim
        cy, cx, r = rng.uniform(0, H), rng.uniform(0, W), rng.uniform(4, 12)
        d = np.hypot(yy - cy, xx - cx) / r
        stain += rng.uniform(0.15, 0.45) * np.clip(1 - d, 0, 1) ** 0.5 + (rng.random() < 0.5) * 0.25 * np.exp(-((d - 1) / 0.08) ** 2)
    paper = np.clip(light - stain, 0.2, 1) * rng.uniform(0.8, 0.95)
    img = page * paper + (1 - page) * 0.05
    img = gaussian_filter(img, rng.uniform(0.3, 0.7)) + rng.normal(0, rng.uniform(0.02, 0.06), (H, W))
    speckle = rng.random((H, W)) < 0.01
    img[speckle] = rng.uniform(0, 0.4, speckle.sum())
    return np.clip(img, 0, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--public', required=True)
    ap.add_argument('--private', required=True)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--source', default=None)  # unused: the data is generated
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    bank = glyph_bank(rng)
    clean = np.stack([clean_page(rng, bank) for _ in range(N_TRAIN + N_TEST)])
    noisy = np.stack([dirty(rng, p) for p in clean])
    q = lambda a: np.round(a * 255).astype(np.uint8)  # noqa: E731 - stored as 8-bit greyscale like scanned PNGs
    os.makedirs(args.public, exist_ok=True)
    os.makedirs(args.private, exist_ok=True)
    train_ids, test_ids = np.arange(1, N_TRAIN + 1), np.arange(N_TRAIN + 1, N_TRAIN + N_TEST + 1)
    np.save(os.path.join(args.public, 'train.npy'), q(noisy[:N_TRAIN]))
    np.save(os.path.join(args.public, 'train_cleaned.npy'), q(clean[:N_TRAIN]))
    np.save(os.path.join(args.public, 'test.npy'), q(noisy[N_TRAIN:]))
    pd.DataFrame({'image': train_ids}).to_csv(os.path.join(args.public, 'train.csv'), index=False)
    pd.DataFrame({'image': test_ids}).to_csv(os.path.join(args.public, 'test.csv'), index=False)
    img, row, col = np.meshgrid(test_ids, np.arange(1, H + 1), np.arange(1, W + 1), indexing='ij')
    ids = [f'{i}_{r}_{c}' for i, r, c in zip(img.ravel(), row.ravel(), col.ravel())]
    pd.DataFrame({'id': ids, 'value': 1.0}).to_csv(os.path.join(args.public, 'sample_submission.csv'), index=False)
    pd.DataFrame({'id': ids, 'value': q(clean[N_TRAIN:]).ravel() / 255.0}).to_csv(os.path.join(args.private, 'answers.csv'), index=False)


if __name__ == '__main__':
    main()
