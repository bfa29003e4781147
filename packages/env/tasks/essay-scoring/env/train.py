"""Baseline for essay-scoring: ridge regression on word counts, rounded to the nearest score."""
import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import Ridge
from sklearn.metrics import cohen_kappa_score
from sklearn.model_selection import train_test_split

train = pd.read_csv('data/train.csv', dtype={'essay_id': str})
test = pd.read_csv('data/test.csv', dtype={'essay_id': str})


def featurize(fit_texts, other_texts):
    vectorizer = CountVectorizer(max_features=500)
    return vectorizer.fit_transform(fit_texts), vectorizer.transform(other_texts)


def to_scores(raw):
    return np.clip(np.round(raw), 1, 6).astype(int)


fit_df, val_df = train_test_split(train, test_size=0.2, random_state=0)
x_fit, x_val = featurize(fit_df['full_text'], val_df['full_text'])
model = Ridge(alpha=1.0)
model.fit(x_fit, fit_df['score'])
val_raw = model.predict(x_val)
print(f'validation QWK: {cohen_kappa_score(val_df["score"], to_scores(val_raw), weights="quadratic"):.4f}')

x_train, x_test = featurize(train['full_text'], test['full_text'])
model.fit(x_train, train['score'])
pd.DataFrame({'essay_id': test['essay_id'], 'score': to_scores(model.predict(x_test))}).to_csv('submission.csv', index=False)
print('wrote submission.csv')
