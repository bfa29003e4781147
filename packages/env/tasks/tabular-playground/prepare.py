"""Prepare tabular-playground: seeded synthetic forest-cover data (7 cover types from terrain features).

Mirrors Kaggle's Tabular Playground Series Dec 2021 (itself synthesized from the UCI Forest Cover Type data):
terrain measurements, one-hot wilderness areas and soil types, an imbalanced 7-class target that depends on
elevation bands, wilderness, soil and distances, with label noise.
"""
import argparse
import os

import numpy as np
import pandas as pd

N_SOIL = 40
CLASS_P = np.array([0.36, 0.48, 0.06, 0.005, 0.015, 0.03, 0.05])
# Mean elevation (m) of each cover type; the classes overlap, other features separate them.
ELEV = np.array([3130, 2930, 2400, 2200, 2750, 2500, 3350])
WILD = np.array([[.45, .05, .45, .05], [.45, .05, .35, .15], [0, 0, .1, .9], [0, 0, 0, 1], [.3, 0, .7, 0], [0, 0, .4, .6], [.3, .1, .6, 0]])


def generate(rng, n):
    y = rng.choice(7, size=n, p=CLASS_P)
    elevation = ELEV[y] + rng.normal(0, 160, n)
    wild = np.array([rng.choice(4, p=WILD[c]) for c in y])
    soil_pref = (y * 5 + wild * 3) % N_SOIL
    soil = np.where(rng.random(n) < 0.55, soil_pref, rng.integers(0, N_SOIL, n))
    aspect = rng.uniform(0, 360, n)
    slope = np.clip(rng.gamma(3, 4.5, n) + 4 * (y == 2) + 5 * (y == 3), 0, 60)
    h_hydro = np.abs(rng.normal(250 - 80 * (y == 3) + 60 * (y == 6), 180, n))
    v_hydro = h_hydro * rng.normal(0.18, 0.12, n) + rng.normal(0, 15, n)
    h_road = np.abs(rng.normal(2300 + 900 * (y == 0) - 900 * (y >= 2), 1500, n))
    h_fire = np.abs(rng.normal(1900 + 500 * (y <= 1) - 700 * (y == 3), 1300, n))
    rad = np.radians(aspect)
    hill_9 = np.clip(212 + 30 * np.cos(rad - np.radians(90)) - 0.8 * slope + rng.normal(0, 12, n), 0, 255)
    hill_noon = np.clip(223 - 0.6 * slope + rng.normal(0, 10, n), 0, 255)
    hill_3 = np.clip(142 - 45 * np.cos(rad - np.radians(90)) + rng.normal(0, 20, n), 0, 255)
    # Elevation relative to the nearest water separates the high-altitude types better than elevation alone.
    y_noise = np.where(rng.random(n) < 0.06, rng.choice(7, size=n, p=CLASS_P), y)
    df = pd.DataFrame({
        'Elevation': elevation.round().astype(int), 'Aspect': aspect.round().astype(int), 'Slope': slope.round().astype(int),
        'Horizontal_Distance_To_Hydrology': h_hydro.round().astype(int), 'Vertical_Distance_To_Hydrology': v_hydro.round().astype(int),
        'Horizontal_Distance_To_Roadways': h_road.round().astype(int), 'Hillshade_9am': hill_9.round().astype(int),
        'Hillshade_Noon': hill_noon.round().astype(int), 'Hillshade_3pm': hill_3.round().astype(int),
        'Horizontal_Distance_To_Fire_Points': h_fire.round().astype(int),
    })
    for w in range(4):
        df[f'Wilderness_Area{w + 1}'] = (wild == w).astype(int)
    for s in range(N_SOIL):
        df[f'Soil_Type{s + 1}'] = (soil == s).astype(int)
    df['Cover_Type'] = y_noise + 1
    return df


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--public', required=True)
    p.add_argument('--private', required=True)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--source')
    a = p.parse_args()
    rng = np.random.default_rng(2021 + a.seed)
    df = generate(rng, 10000)
    df.insert(0, 'Id', np.arange(len(df)))
    train, test = df.iloc[:8000], df.iloc[8000:]
    train.to_csv(os.path.join(a.public, 'train.csv'), index=False)
    test.drop(columns=['Cover_Type']).to_csv(os.path.join(a.public, 'test.csv'), index=False)
    pd.DataFrame({'Id': test['Id'], 'Cover_Type': 2}).to_csv(os.path.join(a.public, 'sample_submission.csv'), index=False)
    test[['Id', 'Cover_Type']].to_csv(os.path.join(a.private, 'answers.csv'), index=False)


if __name__ == '__main__':
    main()
