"""Baseline for toxic-comments: one logistic regression per label on counts of the 300 most frequent words."""
import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

LABELS = ['toxic', 'severe_toxic', 'obscene', 'threat', 'insult']

train = pd.read_csv('data/train.csv', keep_default_na=False)
test = pd.read_csv('data/test.csv', keep_default_na=False)


def featurize(fit_texts, other_texts):
    vectorizer = CountVectorizer(max_features=300)
    return vectorizer.fit_transform(fit_texts), vectorizer.transform(other_texts)


def fit_predict(x_fit, fit_labels, x_other):
    probs = {}
    for label in LABELS:
        model = LogisticRegression(C=1.0, max_iter=2000)
        model.fit(x_fit, fit_labels[label])
        probs[label] = model.predict_proba(x_other)[:, 1]
    return pd.DataFrame(probs)


fit_df, val_df = train_test_split(train, test_size=0.2, random_state=0)
x_fit, x_val = featurize(fit_df['comment_text'], val_df['comment_text'])
val_probs = fit_predict(x_fit, fit_df, x_val)
val_auc = np.mean([roc_auc_score(val_df[label], val_probs[label]) for label in LABELS])
print(f'validation mean AUC: {val_auc:.4f}')

x_train, x_test = featurize(train['comment_text'], test['comment_text'])
submission = fit_predict(x_train, train, x_test)
submission.insert(0, 'id', test['id'].to_numpy())
submission.to_csv('submission.csv', index=False)
print('wrote submission.csv')
