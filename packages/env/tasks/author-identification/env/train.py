"""Baseline for author-identification: word counts + multinomial naive Bayes."""
import pandas as pd
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split
from sklearn.naive_bayes import MultinomialNB

train = pd.read_csv('data/train.csv')
test = pd.read_csv('data/test.csv')
authors = sorted(train['author'].unique())

fit_df, val_df = train_test_split(train, test_size=0.2, random_state=0, stratify=train['author'])

vectorizer = CountVectorizer(max_features=2000)
model = MultinomialNB(alpha=1.0)


def fit_predict(fit_texts, fit_labels, predict_texts):
    x_fit = vectorizer.fit_transform(fit_texts)
    model.fit(x_fit, fit_labels)
    return model.predict_proba(vectorizer.transform(predict_texts))


val_probs = fit_predict(fit_df['text'], fit_df['author'], val_df['text'])
print(f'validation log loss: {log_loss(val_df["author"], val_probs, labels=model.classes_):.4f}')

test_probs = fit_predict(train['text'], train['author'], test['text'])
submission = pd.DataFrame(test_probs, columns=model.classes_)
submission.insert(0, 'id', test['id'])
submission[['id'] + authors].to_csv('submission.csv', index=False)
print('wrote submission.csv')
