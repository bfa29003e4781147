"""Baseline for tabular-playground: logistic regression on the ten terrain measurements, scored by accuracy."""
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

train = pd.read_csv('data/train.csv')
test = pd.read_csv('data/test.csv')

features = ['Elevation', 'Aspect', 'Slope', 'Horizontal_Distance_To_Hydrology', 'Vertical_Distance_To_Hydrology',
            'Horizontal_Distance_To_Roadways', 'Hillshade_9am', 'Hillshade_Noon', 'Hillshade_3pm',
            'Horizontal_Distance_To_Fire_Points']
X, y = train[features], train['Cover_Type']
X_train, X_valid, y_train, y_valid = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)

model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
model.fit(X_train, y_train)
print(f'validation accuracy: {model.score(X_valid, y_valid):.4f}')

model.fit(X, y)
pd.DataFrame({'Id': test['Id'], 'Cover_Type': model.predict(test[features])}).to_csv('submission.csv', index=False)
print('wrote submission.csv')
