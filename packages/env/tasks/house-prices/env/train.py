"""Baseline for house-prices: a linear regression on a handful of features, scored by validation MAE."""
import pandas as pd
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_absolute_error
from sklearn.model_selection import train_test_split

train = pd.read_csv('data/train.csv')
test = pd.read_csv('data/test.csv')

features = ['Rooms', 'LowStatusShare', 'PupilTeacherRatio', 'CrimeRate', 'TaxRate']
X = train[features]
y = train['SalePrice']
X_train, X_valid, y_train, y_valid = train_test_split(X, y, test_size=0.2, random_state=0)

model = LinearRegression()
model.fit(X_train, y_train)
print(f'validation MAE: {mean_absolute_error(y_valid, model.predict(X_valid)):.0f}')

# Refit on all training rows and predict the test set.
model.fit(X, y)
predictions = model.predict(test[features])
pd.DataFrame({'Id': test['Id'], 'SalePrice': predictions}).to_csv('submission.csv', index=False)
print('wrote submission.csv')
