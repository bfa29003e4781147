"""Synthetic 2-band 25x25 radar chips of ships and icebergs on speckled sea (a Statoil/C-CORE Iceberg
Classifier stand-in). Values are backscatter in dB; the incidence angle is missing for some ships."""
import argparse
import os

import numpy as np
import pandas as pd

SIZE = 25
N_TRAIN, N_TEST = 1200, 600


def chip(rng, is_iceberg, angle):
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    # sea clutter: gamma speckle around a mean that falls with the incidence angle; HV much darker than HH
    sea_db = np.array([-21.0, -29.0]) - np.array([0.35, 0.2]) * (angle - 38) + rng.normal(0, 1.5, 2)
    looks = 4
    img = 10 ** (sea_db[:, None, None] / 10) * rng.gamma(looks, 1 / looks, (2, SIZE, SIZE))
    cy, cx = SIZE / 2 + rng.normal(0, 3, 2)
    theta = rng.uniform(0, np.pi)
    u = np.cos(theta) * (xx - cx) + np.sin(theta) * (yy - cy)
    v = -np.sin(theta) * (xx - cx) + np.cos(theta) * (yy - cy)
    if is_iceberg:  # broad, rounded, moderately bright, weakly depolarizing
        r = rng.uniform(1.5, 3.5)
        shape = np.exp(-(u ** 2 + v ** 2 * rng.uniform(1, 1.8)) / (2 * r ** 2))
        peak_db = sea_db + np.array([rng.uniform(9, 19), rng.uniform(5, 14)])
    else:  # elongated, compact, very bright, strongly depolarizing, with sidelobes along rows and columns
        length, width = rng.uniform(1.5, 4.5), rng.uniform(0.6, 1.2)
        shape = np.exp(-(u / length) ** 2 / 2 - (v / width) ** 2 / 2)
        side = np.exp(-np.abs(yy - cy) * 1.5) + np.exp(-np.abs(xx - cx) * 1.5)
        shape = np.maximum(shape, 0.04 * side * rng.uniform(0.3, 1.5))
        peak_db = sea_db + np.array([rng.uniform(11, 22), rng.uniform(8, 18)])
    target = 10 ** (peak_db[:, None, None] / 10) * shape[None] * rng.gamma(8, 1 / 8, (2, SIZE, SIZE))
    return (10 * np.log10(img + target)).astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--public', required=True)
    ap.add_argument('--private', required=True)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--source', default=None)  # unused: the data is generated
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    n = N_TRAIN + N_TEST
    labels = (rng.random(n) < 0.47).astype(int)
    angles = rng.uniform(30, 46, n)
    bands = np.stack([chip(rng, y, a) for y, a in zip(labels, angles)])
    # as in the original data, the angle was not recorded for some ships (never for icebergs)
    angle_text = np.where((labels == 0) & (rng.random(n) < 0.15), 'na', np.char.mod('%.4f', angles))
    ids = [f'{h:08x}' for h in rng.choice(2**32, size=n, replace=False)]
    os.makedirs(args.public, exist_ok=True)
    os.makedirs(args.private, exist_ok=True)
    np.save(os.path.join(args.public, 'train_bands.npy'), np.round(bands[:N_TRAIN], 4))
    np.save(os.path.join(args.public, 'test_bands.npy'), np.round(bands[N_TRAIN:], 4))
    pd.DataFrame({'id': ids[:N_TRAIN], 'inc_angle': angle_text[:N_TRAIN], 'is_iceberg': labels[:N_TRAIN]}).to_csv(os.path.join(args.public, 'train.csv'), index=False)
    pd.DataFrame({'id': ids[N_TRAIN:], 'inc_angle': angle_text[N_TRAIN:]}).to_csv(os.path.join(args.public, 'test.csv'), index=False)
    pd.DataFrame({'id': ids[N_TRAIN:], 'is_iceberg': 0.5}).to_csv(os.path.join(args.public, 'sample_submission.csv'), index=False)
    pd.DataFrame({'id': ids[N_TRAIN:], 'is_iceberg': labels[N_TRAIN:]}).to_csv(os.path.join(args.private, 'answers.csv'), index=False)


if __name__ == '__main__':
    main()
