"""Baseline: linear regression from each dirty pixel's 3x3 neighbourhood to its clean value.
Writes submission.csv with one row per test pixel: id = <image>_<row>_<col> (1-based), value in [0, 1]."""
import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression

train_ids = pd.read_csv('data/train.csv')['image'].to_numpy()
test_ids = pd.read_csv('data/test.csv')['image'].to_numpy()
dirty = np.load('data/train.npy').astype(np.float32) / 255.0  # (N, 32, 48)
clean = np.load('data/train_cleaned.npy').astype(np.float32) / 255.0
test = np.load('data/test.npy').astype(np.float32) / 255.0
RADIUS = 1  # neighbourhood half-width


def neighbourhoods(pages, radius=RADIUS):
    """One row per pixel: the values of its (2r+1)^2 neighbourhood (edges padded by reflection)."""
    padded = np.pad(pages, ((0, 0), (radius, radius), (radius, radius)), mode='reflect')
    h, w = pages.shape[1:]
    cols = [padded[:, dy:dy + h, dx:dx + w] for dy in range(2 * radius + 1) for dx in range(2 * radius + 1)]
    return np.stack(cols, axis=-1).reshape(-1, len(cols))


def features(pages):
    return neighbourhoods(pages)


# validate on the last 10 training pages
n_val = 10
X, y = features(dirty), clean.reshape(-1)
split = (len(dirty) - n_val) * dirty.shape[1] * dirty.shape[2]
model = LinearRegression()
model.fit(X[:split], y[:split])
print(f'validation RMSE: {np.sqrt(np.mean((model.predict(X[split:]) - y[split:]) ** 2)):.4f}')

model.fit(X, y)
pred = model.predict(features(test)).reshape(test.shape)
img, row, col = np.meshgrid(test_ids, np.arange(1, test.shape[1] + 1), np.arange(1, test.shape[2] + 1), indexing='ij')
ids = [f'{i}_{r}_{c}' for i, r, c in zip(img.ravel(), row.ravel(), col.ravel())]
pd.DataFrame({'id': ids, 'value': pred.ravel()}).to_csv('submission.csv', index=False)
