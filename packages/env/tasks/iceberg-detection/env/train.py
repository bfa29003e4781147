"""Baseline: logistic regression on the raw pixels of both radar bands. Writes submission.csv (id,is_iceberg)."""
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split

train = pd.read_csv('data/train.csv', dtype={'id': str})
test = pd.read_csv('data/test.csv', dtype={'id': str})
bands = np.load('data/train_bands.npy')  # (N, 2, 25, 25) backscatter in dB: band 1 = HH, band 2 = HV
test_bands = np.load('data/test_bands.npy')
y = train['is_iceberg'].to_numpy()


def features(b, frame):
    return b.reshape(len(b), -1) / 10.0


X, X_test = features(bands, train), features(test_bands, test)
X_tr, X_val, y_tr, y_val = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)

model = LogisticRegression(max_iter=3000)
model.fit(X_tr, y_tr)
print(f'validation log loss: {log_loss(y_val, model.predict_proba(X_val)[:, 1]):.4f}')

model.fit(X, y)
pd.DataFrame({'id': test['id'], 'is_iceberg': model.predict_proba(X_test)[:, 1]}).to_csv('submission.csv', index=False)
