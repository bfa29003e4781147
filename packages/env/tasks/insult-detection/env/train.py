"""Baseline for insult-detection: logistic regression on counts of the 200 most frequent words."""
import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

train = pd.read_csv('data/train.csv', keep_default_na=False)
test = pd.read_csv('data/test.csv', keep_default_na=False)

fit_df, val_df = train_test_split(train, test_size=0.2, random_state=0, stratify=train['unwanted'])

vectorizer = CountVectorizer(max_features=200)
model = LogisticRegression(C=1.0, max_iter=2000)


def fit_predict(fit_texts, fit_labels, predict_texts):
    model.fit(vectorizer.fit_transform(fit_texts), fit_labels)
    return model.predict(vectorizer.transform(predict_texts))


val_pred = fit_predict(fit_df['text'], fit_df['unwanted'], val_df['text'])
print(f'validation accuracy: {np.mean(val_pred == val_df["unwanted"]):.4f}')

test_pred = fit_predict(train['text'], train['unwanted'], test['text'])
pd.DataFrame({'id': test['id'], 'unwanted': test_pred}).to_csv('submission.csv', index=False)
print('wrote submission.csv')
