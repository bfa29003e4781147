"""Baseline for patent-phrase-matching: cosine similarity of character n-gram TF-IDF vectors, mapped to scores
by a linear regression; scored by the Pearson correlation with the true scores."""
import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import train_test_split

train = pd.read_csv('data/train.csv', dtype={'id': str})
test = pd.read_csv('data/test.csv', dtype={'id': str})

char_tfidf = TfidfVectorizer(analyzer='char_wb', ngram_range=(3, 5))
char_tfidf.fit(pd.concat([train['anchor'], train['target'], test['anchor'], test['target']]))


def cosine(vectorizer, a, b):
    va, vb = vectorizer.transform(a), vectorizer.transform(b)
    return np.asarray(va.multiply(vb).sum(axis=1)).ravel()


def make_features(df):
    features = pd.DataFrame({'char_cosine': cosine(char_tfidf, df['anchor'], df['target'])})
    return features


X, y = make_features(train), train['score']
X_test = make_features(test)
X_train, X_valid, y_train, y_valid = train_test_split(X, y, test_size=0.2, random_state=0)

model = LinearRegression()
model.fit(X_train, y_train)
print(f'validation Pearson: {np.corrcoef(model.predict(X_valid), y_valid)[0, 1]:.4f}')

model.fit(X, y)
pd.DataFrame({'id': test['id'], 'score': np.clip(model.predict(X_test), 0, 1)}).to_csv('submission.csv', index=False)
print('wrote submission.csv')
