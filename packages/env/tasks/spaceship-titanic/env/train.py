"""Baseline for spaceship-titanic: logistic regression on one-hot categorical features, scored by accuracy."""
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

train = pd.read_csv('data/train.csv')
test = pd.read_csv('data/test.csv')


def make_features(df):
    df = df.copy()
    df[['Deck', 'CabinNum', 'Side']] = df['Cabin'].str.split('/', expand=True)
    categorical = ['HomePlanet', 'CryoSleep', 'Destination', 'VIP', 'Deck', 'Side']
    return pd.get_dummies(df[categorical].astype(str))


X = make_features(train)
X_test = make_features(test).reindex(columns=X.columns, fill_value=0)
y = train['Transported']
X_train, X_valid, y_train, y_valid = train_test_split(X, y, test_size=0.2, random_state=0)

model = LogisticRegression(max_iter=1000)
model.fit(X_train, y_train)
print(f'validation accuracy: {model.score(X_valid, y_valid):.4f}')

model.fit(X, y)
predictions = model.predict(X_test)
pd.DataFrame({'PassengerId': test['PassengerId'], 'Transported': predictions}).to_csv('submission.csv', index=False)
print('wrote submission.csv')
