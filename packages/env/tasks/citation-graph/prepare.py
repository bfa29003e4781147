"""Prepare citation-graph: a seeded synthetic citation network (stochastic block model) with bag-of-words
node features; predict each paper's subject area. Splits by publication year, like ogbn-arxiv."""
import argparse
import os

import numpy as np
import pandas as pd

N_PAPERS = 2400
N_CLASSES = 8
VOCAB = 400
WORDS_PER_PAPER = (8, 30)
TOPIC_SHARE = 0.12  # share of a paper's words drawn from its class topic; the rest is background
SAME_CLASS_CITATION = 0.5
YEARS = np.arange(2010, 2021)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--public', required=True)
    parser.add_argument('--private', required=True)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--source', help='unused: the data is synthetic')
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    labels = rng.choice(N_CLASSES, size=N_PAPERS, p=rng.dirichlet(np.full(N_CLASSES, 8.0)))
    # Papers are generated in publication order, so citations always point to earlier papers.
    years = np.sort(rng.choice(YEARS, size=N_PAPERS, p=np.linspace(1, 3, len(YEARS)) / np.linspace(1, 3, len(YEARS)).sum()))

    background = rng.dirichlet(np.full(VOCAB, 0.5))
    topics = rng.dirichlet(np.full(VOCAB, 0.05), size=N_CLASSES)
    features = np.zeros((N_PAPERS, VOCAB), dtype=np.float32)
    for i in range(N_PAPERS):
        n_words = rng.integers(*WORDS_PER_PAPER)
        mix = TOPIC_SHARE * topics[labels[i]] + (1 - TOPIC_SHARE) * background
        features[i] = rng.multinomial(n_words, mix)

    edges = []
    popularity = np.ones(N_PAPERS)
    for i in range(30, N_PAPERS):
        n_refs = 1 + rng.poisson(4)
        earlier = np.arange(i)
        for _ in range(n_refs):
            same = rng.random() < SAME_CLASS_CITATION
            pool = earlier[labels[:i] == labels[i]] if same else earlier
            if len(pool) == 0:
                pool = earlier
            weights = popularity[pool] / popularity[pool].sum()  # preferential attachment
            j = rng.choice(pool, p=weights)
            edges.append((i, j))
            popularity[j] += 1
    edges = np.unique(np.array(edges), axis=0)

    split = np.where(years <= 2017, 'train', np.where(years <= 2018, 'valid', 'test'))
    node_ids = np.arange(N_PAPERS)
    nodes = pd.DataFrame({'node_id': node_ids, 'year': years, 'split': split,
                          'label': pd.array(labels, dtype='Int64')})
    nodes.loc[nodes['split'] == 'test', 'label'] = pd.NA

    os.makedirs(args.public, exist_ok=True)
    os.makedirs(args.private, exist_ok=True)
    nodes.to_csv(os.path.join(args.public, 'nodes.csv'), index=False)
    np.save(os.path.join(args.public, 'features.npy'), features)
    pd.DataFrame(edges, columns=['source', 'target']).to_csv(os.path.join(args.public, 'edges.csv'), index=False)
    test = split == 'test'
    pd.DataFrame({'node_id': node_ids[test], 'label': 0}).to_csv(
        os.path.join(args.public, 'sample_submission.csv'), index=False)
    pd.DataFrame({'node_id': node_ids[test], 'label': labels[test]}).to_csv(
        os.path.join(args.private, 'answers.csv'), index=False)
    print(f'{N_PAPERS} papers, {len(edges)} citations, ' +
          ', '.join(f'{s} {int((split == s).sum())}' for s in ('train', 'valid', 'test')))


if __name__ == '__main__':
    main()
