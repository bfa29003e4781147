"""Baseline: nearest neighbours on raw pixels. For each test photo, rank the known whales by the distance of
their closest training photo and submit the 5 nearest. Writes submission.csv (Image,Id)."""
import numpy as np
import pandas as pd

train = pd.read_csv('data/train.csv')
test = pd.read_csv('data/test.csv')
train_images = np.load('data/train_images.npy').astype(np.float32) / 255.0  # (N, 16, 32) grey
test_images = np.load('data/test_images.npy').astype(np.float32) / 255.0


def embed(imgs):
    return imgs.reshape(len(imgs), -1)


def squared_distances(a, b):
    return (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None, :] - 2 * a @ b.T


def top5(dists, gallery_ids):
    """The distinct gallery ids in order of their closest photo, and those distances."""
    order = np.argsort(dists)
    ranked = dict()
    for j in order:
        ranked.setdefault(gallery_ids[j], dists[j])
        if len(ranked) == 5:
            break
    return list(ranked), list(ranked.values())


def predict(dist_matrix, gallery_ids):
    return [top5(row, gallery_ids)[0] for row in dist_matrix]


def map5(truths, predictions):
    return np.mean([1 / (p.index(t) + 1) if t in p[:5] else 0 for t, p in zip(truths, predictions)])


known = (train['Id'] != 'new_whale').to_numpy()
gallery, gallery_ids = embed(train_images[known]), train['Id'][known].to_numpy()

# validation: every training photo queries all the other known photos (itself excluded)
self_dists = squared_distances(embed(train_images), gallery)
self_dists[np.flatnonzero(known), np.arange(known.sum())] = np.inf
print(f'validation MAP@5 (leave-one-out on train): {map5(train["Id"], predict(self_dists, gallery_ids)):.4f}')

predictions = predict(squared_distances(embed(test_images), gallery), gallery_ids)
pd.DataFrame({'Image': test['Image'], 'Id': [' '.join(p) for p in predictions]}).to_csv('submission.csv', index=False)
