"""Baseline: a random forest on the margin, shape and texture descriptors. Writes submission.csv
(id plus one probability column per species, in sample_submission.csv's order)."""
import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold, cross_val_predict

train = pd.read_csv('data/train.csv')
test = pd.read_csv('data/test.csv')
species = list(pd.read_csv('data/sample_submission.csv').columns[1:])
feature_columns = [c for c in train.columns if c not in ('id', 'species')]
X, X_test = train[feature_columns].to_numpy(), test[feature_columns].to_numpy()
y = train['species'].map({s: k for k, s in enumerate(species)}).to_numpy()

model = RandomForestClassifier(n_estimators=100, random_state=0)
cv = StratifiedKFold(n_splits=4, shuffle=True, random_state=0)
p_cv = cross_val_predict(model, X, y, cv=cv, method='predict_proba')
print(f'cross-validated log loss: {log_loss(y, p_cv, labels=range(len(species))):.4f}')

model.fit(X, y)
submission = pd.DataFrame(model.predict_proba(X_test), columns=species)
submission.insert(0, 'id', test['id'])
submission.to_csv('submission.csv', index=False)
