"""Prepare spaceship-titanic: seeded synthetic passengers of a spaceship; was each one transported?

The generator mirrors the Kaggle competition's structure: passenger groups (shared cabin and fate), categorical
home planet / destination / deck, cryo-sleepers who spend nothing, skewed spending, ~2% missing per column, and
a target driven by nonlinear interactions of these plus noise.
"""
import argparse
import os

import numpy as np
import pandas as pd

PLANETS = ['Earth', 'Europa', 'Mars']
DESTINATIONS = ['TRAPPIST-1e', '55 Cancri e', 'PSO J318.5-22']
DECKS = ['A', 'B', 'C', 'D', 'E', 'F', 'G', 'T']
SPEND = ['RoomService', 'FoodCourt', 'ShoppingMall', 'Spa', 'VRDeck']
SYLLABLES = ['ka', 'lo', 'mi', 'ne', 'ra', 'su', 'to', 'vi', 'ze', 'an', 'el', 'or', 'ul', 'is']


def name(rng, surname):
    first = ''.join(rng.choice(SYLLABLES, size=rng.integers(2, 4))).capitalize()
    return f'{first} {surname}'


def generate(rng, n_groups):
    rows = []
    for g in range(1, n_groups + 1):
        size = int(rng.choice([1, 1, 1, 1, 2, 2, 3, 4, 5, 6, 7, 8], p=None))
        planet = rng.choice(PLANETS, p=[0.54, 0.25, 0.21])
        deck_p = {'Earth': [0, 0, 0, .05, .15, .4, .4, 0], 'Europa': [.15, .3, .3, .1, .1, .05, 0, 0], 'Mars': [0, 0, 0, .25, .25, .5, 0, 0]}[planet]
        deck = rng.choice(DECKS[:7], p=np.array(deck_p[:7]) / sum(deck_p[:7])) if rng.random() > 0.001 else 'T'
        num, side = int(rng.integers(0, 1800)), rng.choice(['P', 'S'])
        surname = ''.join(rng.choice(SYLLABLES, size=3)).capitalize()
        group_luck = rng.normal(0, 0.8)  # groups share a fate
        dest = rng.choice(DESTINATIONS, p=[0.69, 0.21, 0.10])
        for m in range(1, size + 1):
            age = float(np.clip(rng.gamma(4.0, 7.5) if rng.random() > 0.08 else rng.uniform(0, 12), 0, 79))
            cryo = rng.random() < (0.45 if planet == 'Europa' else 0.3) and age >= 1
            vip = (not cryo) and rng.random() < (0.06 if planet == 'Europa' else 0.01)
            spend = np.zeros(len(SPEND))
            if not cryo and age >= 13:
                wealth = rng.lognormal(5.2 + 0.9 * (planet == 'Europa') + 1.0 * vip, 1.3)
                active = rng.random(len(SPEND)) < [0.4, 0.45, 0.35, 0.4, 0.38]
                spend = np.round(active * wealth * rng.dirichlet(np.ones(len(SPEND))) * 3)
            logit = (-0.3 + 1.9 * cryo + 0.6 * (planet == 'Europa') - 0.25 * (planet == 'Earth')
                     + 0.5 * (dest == '55 Cancri e') + 0.7 * (deck in 'BC') - 0.35 * (deck == 'E')
                     + 0.45 * (side == 'S') + 0.9 * (age < 13) - 0.3 * (18 <= age < 30)
                     - 0.0012 * (spend[0] + spend[3] + spend[4]) + 0.0005 * (spend[1] + spend[2])
                     + 0.6 * np.sin(num / 300.0) + group_luck)
            transported = rng.random() < 1 / (1 + np.exp(-logit))
            row = {'PassengerId': f'{g:04d}_{m:02d}', 'HomePlanet': planet, 'CryoSleep': bool(cryo),
                   'Cabin': f'{deck}/{num}/{side}', 'Destination': dest, 'Age': round(age), 'VIP': bool(vip),
                   **dict(zip(SPEND, spend)), 'Name': name(rng, surname), 'Transported': bool(transported)}
            rows.append(row)
    df = pd.DataFrame(rows)
    for col in ['HomePlanet', 'CryoSleep', 'Cabin', 'Destination', 'Age', 'VIP', *SPEND, 'Name']:
        df[col] = df[col].astype(object)
        df.loc[rng.random(len(df)) < 0.02, col] = np.nan
    return df


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--public', required=True)
    p.add_argument('--private', required=True)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--source')
    a = p.parse_args()
    rng = np.random.default_rng(1000 + a.seed)
    df = generate(rng, 2300)
    groups = df['PassengerId'].str[:4].unique()
    test_groups = set(rng.choice(groups, size=len(groups) // 4, replace=False))
    is_test = df['PassengerId'].str[:4].isin(test_groups)
    train, test = df[~is_test], df[is_test]
    train.to_csv(os.path.join(a.public, 'train.csv'), index=False)
    test.drop(columns=['Transported']).to_csv(os.path.join(a.public, 'test.csv'), index=False)
    pd.DataFrame({'PassengerId': test['PassengerId'], 'Transported': False}).to_csv(os.path.join(a.public, 'sample_submission.csv'), index=False)
    test[['PassengerId', 'Transported']].to_csv(os.path.join(a.private, 'answers.csv'), index=False)


if __name__ == '__main__':
    main()
