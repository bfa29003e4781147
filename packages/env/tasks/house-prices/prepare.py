"""Prepare house-prices: Boston house prices (Harrison & Rubinfeld 1978, from the @stdlib corpus), split 80/20."""
import argparse
import os

import numpy as np
import pandas as pd

CORPUS = os.path.join('@stdlib', 'datasets-harrison-boston-house-prices', 'data', 'data.csv')
COLUMNS = {
    'crim': 'CrimeRate', 'zn': 'LargeLotZoning', 'indus': 'IndustrialShare', 'chas': 'NearRiver',
    'nox': 'NOxConcentration', 'rm': 'Rooms', 'age': 'OldHomesShare', 'dis': 'DistanceToJobs',
    'rad': 'HighwayAccess', 'tax': 'TaxRate', 'ptratio': 'PupilTeacherRatio', 'b': 'BlackIndex',
    'lstat': 'LowStatusShare', 'medv': 'SalePrice',
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--public', required=True)
    p.add_argument('--private', required=True)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--source', required=True, help='node_modules directory holding the @stdlib corpora')
    a = p.parse_args()
    df = pd.read_csv(os.path.join(a.source, CORPUS)).rename(columns=COLUMNS)
    df['SalePrice'] = (df['SalePrice'] * 1000).round().astype(int)  # thousands of dollars -> dollars
    rng = np.random.default_rng(a.seed)
    df = df.iloc[rng.permutation(len(df))].reset_index(drop=True)
    df.insert(0, 'Id', np.arange(1, len(df) + 1))
    n_test = len(df) // 5
    test, train = df.iloc[:n_test], df.iloc[n_test:]
    train.to_csv(os.path.join(a.public, 'train.csv'), index=False)
    test.drop(columns=['SalePrice']).to_csv(os.path.join(a.public, 'test.csv'), index=False)
    sample = pd.DataFrame({'Id': test['Id'], 'SalePrice': int(train['SalePrice'].median())})
    sample.to_csv(os.path.join(a.public, 'sample_submission.csv'), index=False)
    test[['Id', 'SalePrice']].to_csv(os.path.join(a.private, 'answers.csv'), index=False)


if __name__ == '__main__':
    main()
