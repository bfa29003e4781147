"""Baseline: logistic regression on 8x8 grey thumbnails of the aerial patches. Writes submission.csv (id,has_cactus)."""
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

train = pd.read_csv('data/train.csv')
test = pd.read_csv('data/test.csv')
images = np.load('data/train_images.npy').astype(np.float32) / 255.0  # (N, 32, 32, 3) RGB
test_images = np.load('data/test_images.npy').astype(np.float32) / 255.0
y = train['has_cactus'].to_numpy()


def features(imgs):
    gray = imgs.mean(axis=3)
    thumb = gray.reshape(len(gray), 8, 4, 8, 4).mean(axis=(2, 4))  # 4x4 average pooling -> 8x8
    return thumb.reshape(len(imgs), -1)


X, X_test = features(images), features(test_images)
X_tr, X_val, y_tr, y_val = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)

model = LogisticRegression(max_iter=1000)
model.fit(X_tr, y_tr)
print(f'validation AUC: {roc_auc_score(y_val, model.predict_proba(X_val)[:, 1]):.4f}')

model.fit(X, y)
pd.DataFrame({'id': test['id'], 'has_cactus': model.predict_proba(X_test)[:, 1]}).to_csv('submission.csv', index=False)
