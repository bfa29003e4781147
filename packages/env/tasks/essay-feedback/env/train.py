"""Baseline for essay-feedback: ridge regression on word counts, one model per analytic score."""
import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import Ridge
from sklearn.model_selection import train_test_split

TARGETS = ['cohesion', 'syntax', 'vocabulary', 'phraseology', 'grammar', 'conventions']

train = pd.read_csv('data/train.csv')
test = pd.read_csv('data/test.csv')


def featurize(fit_texts, other_texts):
    vectorizer = CountVectorizer(max_features=1000)
    return vectorizer.fit_transform(fit_texts), vectorizer.transform(other_texts)


def fit_predict(x_fit, y_fit, x_other):
    model = Ridge(alpha=1.0)
    model.fit(x_fit, y_fit)
    predictions = model.predict(x_other)
    return predictions


def mcrmse(y_true, y_pred):
    return float(np.mean(np.sqrt(np.mean((y_true - y_pred) ** 2, axis=0))))


fit_df, val_df = train_test_split(train, test_size=0.2, random_state=0)
x_fit, x_val = featurize(fit_df['full_text'], val_df['full_text'])
val_pred = fit_predict(x_fit, fit_df[TARGETS].to_numpy(), x_val)
print(f'validation MCRMSE: {mcrmse(val_df[TARGETS].to_numpy(), val_pred):.4f}')

x_train, x_test = featurize(train['full_text'], test['full_text'])
test_pred = fit_predict(x_train, train[TARGETS].to_numpy(), x_test)
submission = pd.DataFrame(test_pred, columns=TARGETS)
submission.insert(0, 'text_id', test['text_id'])
submission.to_csv('submission.csv', index=False)
print('wrote submission.csv')
