"""Baseline: logistic regression on raw pixels. Writes submission.csv (id,label) with label = P(dog)."""
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split

train = pd.read_csv('data/train.csv')
test = pd.read_csv('data/test.csv')
images = np.load('data/train_images.npy').astype(np.float32) / 255.0  # (N, 24, 24) grey
test_images = np.load('data/test_images.npy').astype(np.float32) / 255.0
y = train['label'].to_numpy()  # 1 = dog, 0 = cat


def features(imgs):
    return imgs.reshape(len(imgs), -1)


X, X_test = features(images), features(test_images)
X_tr, X_val, y_tr, y_val = train_test_split(X, y, test_size=0.2, random_state=0)

model = LogisticRegression(max_iter=2000)
model.fit(X_tr, y_tr)
print(f'validation log loss: {log_loss(y_val, model.predict_proba(X_val)[:, 1]):.4f}')

model.fit(X, y)
pd.DataFrame({'id': test['id'], 'label': model.predict_proba(X_test)[:, 1]}).to_csv('submission.csv', index=False)
