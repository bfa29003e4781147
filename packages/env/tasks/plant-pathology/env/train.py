"""Baseline: logistic regression on 6x6 colour thumbnails of the leaves. Writes submission.csv."""
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

LABELS = ['healthy', 'multiple_diseases', 'rust', 'scab']
train = pd.read_csv('data/train.csv')
test = pd.read_csv('data/test.csv')
images = np.load('data/train_images.npy').astype(np.float32) / 255.0  # (N, 24, 24, 3) RGB
test_images = np.load('data/test_images.npy').astype(np.float32) / 255.0
y = train[LABELS].to_numpy().argmax(axis=1)  # exactly one label per leaf


def features(imgs):
    thumb = imgs.reshape(len(imgs), 6, 4, 6, 4, 3).mean(axis=(2, 4))  # 4x4 average pooling -> 6x6x3
    return thumb.reshape(len(imgs), -1)


X, X_test = features(images), features(test_images)
X_tr, X_val, y_tr, y_val = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)

model = LogisticRegression(max_iter=2000)
model.fit(X_tr, y_tr)
p_val = model.predict_proba(X_val)
print('validation AUC per class:', {c: round(roc_auc_score(y_val == k, p_val[:, k]), 4) for k, c in enumerate(LABELS)})

model.fit(X, y)
submission = pd.DataFrame(model.predict_proba(X_test), columns=LABELS)
submission.insert(0, 'image_id', test['image_id'])
submission.to_csv('submission.csv', index=False)
