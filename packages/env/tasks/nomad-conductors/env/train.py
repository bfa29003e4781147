"""Baseline for nomad-conductors: one linear regression per target on the raw columns, scored by mean RMSLE."""
import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import train_test_split

train = pd.read_csv('data/train.csv')
test = pd.read_csv('data/test.csv')
targets = ['formation_energy_ev_natom', 'bandgap_energy_ev']

features = [c for c in test.columns if c != 'id']
X, X_test = train[features], test[features]
X_train, X_valid, Y_train, Y_valid = train_test_split(X, train[targets], test_size=0.2, random_state=0)


def make_model():
    return LinearRegression()


def rmsle(y, p):
    return np.sqrt(np.mean((np.log1p(np.clip(p, 0, None)) - np.log1p(y)) ** 2))


submission = pd.DataFrame({'id': test['id']})
scores = []
for target in targets:
    model = make_model()
    model.fit(X_train, Y_train[target])
    scores.append(rmsle(Y_valid[target], model.predict(X_valid)))
    model.fit(X, train[target])
    submission[target] = np.clip(model.predict(X_test), 0, None)
print(f'validation mean RMSLE: {np.mean(scores):.4f}')
submission.to_csv('submission.csv', index=False)
print('wrote submission.csv')
