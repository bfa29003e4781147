"""Synthetic leaf species (a Leaf Classification stand-in): each species is a family of star-shaped outlines
(aspect, lobes, serration, harmonics) with its own venation texture. Every leaf gets pre-extracted margin,
shape and texture descriptors like the Kaggle data, plus a 32x32 binary silhouette."""
import argparse
import os

import numpy as np
import pandas as pd

GENERA = ['Acer', 'Quercus', 'Betula', 'Alnus', 'Salix', 'Tilia', 'Ulmus', 'Sorbus', 'Prunus', 'Fagus']
N_SPECIES, N_TRAIN_PER, N_TEST_PER = 20, 16, 6
N_SHAPE, N_MARGIN, N_TEXTURE, IMG = 32, 16, 16, 32


def species_params(rng):
    return {
        'harmonics': rng.normal(0, 0.12, 6) / np.arange(1, 7), 'phases': rng.uniform(0, 2 * np.pi, 6),
        'aspect': rng.uniform(1.0, 2.4), 'lobes': rng.choice([0, 3, 5, 7]), 'lobe_amp': rng.uniform(0.05, 0.3),
        'teeth': rng.choice([0, 16, 28, 40]), 'teeth_amp': rng.uniform(0.01, 0.05),
        'texture': rng.dirichlet(np.ones(N_TEXTURE) * 0.7),
    }


def outline(rng, sp, theta):
    """Radius along the outline of one leaf: the species' form plus individual variation."""
    h = sp['harmonics'] + rng.normal(0, 0.05, 6)
    k = np.arange(1, 7)[:, None]
    r = 1 + (h[:, None] * np.cos(k * theta + sp['phases'][:, None])).sum(0)
    if sp['lobes']:
        r += sp['lobe_amp'] * rng.uniform(0.7, 1.3) * np.abs(np.cos(sp['lobes'] * theta / 2))
    if sp['teeth']:
        r += sp['teeth_amp'] * rng.uniform(0.6, 1.4) * np.cos(sp['teeth'] * theta + rng.uniform(0, 6.3))
    return np.maximum(r, 0.2)


def describe(rng, sp):
    theta = np.linspace(0, 2 * np.pi, 256, endpoint=False)
    r = outline(rng, sp, theta)
    aspect = sp['aspect'] * rng.uniform(0.9, 1.1)
    rot = rng.normal(0, 0.25)
    x, y = r * np.cos(theta) * aspect, r * np.sin(theta)
    x, y = np.cos(rot) * x - np.sin(rot) * y, np.sin(rot) * x + np.cos(rot) * y
    # shape: centroid distance at equally spaced outline points, starting from where the scan happens to begin
    d = np.hypot(x - x.mean(), y - y.mean())
    start = rng.integers(0, 256 // N_SHAPE)
    shape = d[start::256 // N_SHAPE][:N_SHAPE] / d.mean() * 1e-3
    # margin: histogram of the turning angle between successive outline segments
    seg = np.arctan2(np.diff(y, append=y[0]), np.diff(x, append=x[0]))
    turn = np.angle(np.exp(1j * np.diff(seg, append=seg[0])))
    margin = np.histogram(turn, bins=N_MARGIN, range=(-0.4, 0.6))[0] / len(turn)
    texture = rng.dirichlet(sp['texture'] * 5 + 0.3)
    yy, xx = np.mgrid[0:IMG, 0:IMG] - (IMG - 1) / 2
    scale = (IMG / 2 - 1) / np.abs(np.concatenate([x, y])).max()
    px, py = xx / scale, yy / scale
    rotation = np.array([[np.cos(rot), -np.sin(rot)], [np.sin(rot), np.cos(rot)]])
    back = np.linalg.solve(rotation, [px.ravel(), py.ravel()])  # pixel positions in the leaf's own frame
    inside = np.hypot(back[0] / aspect, back[1]) < np.interp(np.mod(np.arctan2(back[1], back[0] / aspect), 2 * np.pi), theta, r, period=2 * np.pi)
    return margin, shape, texture, (inside.reshape(IMG, IMG) * 255).astype(np.uint8)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--public', required=True)
    ap.add_argument('--private', required=True)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--source', default=None)  # unused: the data is generated
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    names = [f'{GENERA[i % len(GENERA)]}_{"ABCDEFGHIJ"[i // len(GENERA)]}{i:02d}' for i in range(N_SPECIES)]
    params = [species_params(rng) for _ in range(N_SPECIES)]
    per = N_TRAIN_PER + N_TEST_PER
    species = np.repeat(np.arange(N_SPECIES), per)
    is_test = np.tile(np.r_[np.zeros(N_TRAIN_PER, bool), np.ones(N_TEST_PER, bool)], N_SPECIES)
    order = rng.permutation(len(species))
    species, is_test = species[order], is_test[order]
    rows, images = [], []
    for s in species:
        margin, shape, texture, img = describe(rng, params[s])
        rows.append(np.concatenate([margin, shape, texture]))
        images.append(img)
    columns = [f'margin{i + 1}' for i in range(N_MARGIN)] + [f'shape{i + 1}' for i in range(N_SHAPE)] + [f'texture{i + 1}' for i in range(N_TEXTURE)]
    feats = pd.DataFrame(np.round(np.array(rows), 6), columns=columns)
    feats.insert(0, 'id', np.arange(1, len(species) + 1))
    images = np.stack(images)
    os.makedirs(args.public, exist_ok=True)
    os.makedirs(args.private, exist_ok=True)
    train = feats[~is_test].copy()
    train.insert(1, 'species', [names[s] for s in species[~is_test]])
    train.to_csv(os.path.join(args.public, 'train.csv'), index=False)
    feats[is_test].to_csv(os.path.join(args.public, 'test.csv'), index=False)
    np.save(os.path.join(args.public, 'train_images.npy'), images[~is_test])
    np.save(os.path.join(args.public, 'test_images.npy'), images[is_test])
    test_ids = feats['id'][is_test].to_numpy()
    sample = pd.DataFrame(1 / N_SPECIES, index=range(len(test_ids)), columns=sorted(names))
    sample.insert(0, 'id', test_ids)
    sample.to_csv(os.path.join(args.public, 'sample_submission.csv'), index=False)
    pd.DataFrame({'id': test_ids, 'species': [names[s] for s in species[is_test]]}).to_csv(os.path.join(args.private, 'answers.csv'), index=False)


if __name__ == '__main__':
    main()
