"""Prepare patent-phrase-matching: seeded synthetic anchor/target phrase pairs with CPC contexts and scores.

Mirrors the U.S. Patent Phrase-to-Phrase Matching competition: phrases are built from per-context concepts that
each have several surface forms (synonyms), so surface overlap alone misleads; scores 0-1 in quarter steps follow
how much meaning two phrases share (same concepts = 1, same head = 0.5, same field = 0.25, unrelated = 0), some
words mean different things in different contexts, and ~10% of the labels are off by one step.
"""
import argparse
import os

import numpy as np
import pandas as pd

CONTEXTS = {
    'A61': [['drug', 'medicament', 'pharmaceutical agent'], ['syringe', 'injector'], ['implant', 'prosthesis'],
            ['bandage', 'wound dressing'], ['tablet', 'pill'], ['catheter', 'tube'], ['cell', 'tissue unit'], ['ointment', 'salve']],
    'B60': [['vehicle', 'automobile', 'car'], ['wheel', 'tyre rim'], ['brake', 'braking device'], ['seat', 'chair'],
            ['engine', 'motor'], ['steering', 'wheel control'], ['battery', 'cell pack'], ['bumper', 'fender']],
    'C07': [['compound', 'molecule'], ['solvent', 'dissolving agent'], ['catalyst', 'reaction promoter'], ['polymer', 'macromolecule'],
            ['acid', 'proton donor'], ['salt', 'ionic compound'], ['crystal', 'crystalline solid'], ['ester', 'carboxylate']],
    'G06': [['processor', 'cpu', 'computing unit'], ['memory', 'storage'], ['display', 'screen'], ['network', 'interconnect'],
            ['database', 'data store'], ['algorithm', 'procedure'], ['cell', 'table entry'], ['cursor', 'pointer']],
    'H01': [['cell', 'battery'], ['electrode', 'terminal'], ['cable', 'wire'], ['switch', 'breaker'],
            ['magnet', 'ferromagnet'], ['semiconductor', 'chip'], ['capacitor', 'condenser'], ['connector', 'plug']],
    'F16': [['bearing', 'bushing'], ['valve', 'tap'], ['gear', 'cog'], ['shaft', 'axle'], ['pipe', 'conduit'],
            ['spring', 'coil'], ['seal', 'gasket'], ['bolt', 'screw']],
    'E04': [['wall', 'partition'], ['roof', 'roofing'], ['beam', 'girder'], ['floor', 'flooring'], ['panel', 'slab'],
            ['window', 'glazing'], ['column', 'pillar'], ['insulation', 'thermal barrier']],
}
MODIFIERS = [['rotating', 'rotary'], ['electric', 'electrical'], ['flexible', 'pliable'], ['upper', 'top'],
             ['fixed', 'stationary'], ['small', 'miniature'], ['heated', 'warmed'], ['transparent', 'clear'],
             ['automatic', 'self acting'], ['hollow', 'tubular'], ['coated', 'covered'], ['adjustable', 'variable']]
LINKS = ['for', 'of', 'with']


def phrase(rng, ctx, concept, modifier=None, concept2=None, link=None):
    """A surface form of (modifier) concept (link concept2), choosing a random synonym of each part."""
    pick = lambda options: options[rng.integers(len(options))]  # noqa: E731
    words = []
    if modifier is not None:
        words.append(pick(MODIFIERS[modifier]))
    words.append(pick(CONTEXTS[ctx][concept]))
    if concept2 is not None:
        words += [LINKS[link], pick(CONTEXTS[ctx][concept2])]
    return ' '.join(words)


def generate(rng, n_anchors):
    ctxs = list(CONTEXTS)
    rows = []
    for a in range(n_anchors):
        ctx = ctxs[rng.integers(len(ctxs))]
        k = len(CONTEXTS[ctx])
        head, mod = int(rng.integers(k)), (int(rng.integers(len(MODIFIERS))) if rng.random() < 0.7 else None)
        c2, link = (int((head + rng.integers(1, k)) % k), int(rng.integers(3))) if rng.random() < 0.4 else (None, None)
        anchor = phrase(rng, ctx, head, mod, c2, link)
        seen = {anchor}
        for _ in range(int(rng.integers(8, 16))):
            kind = rng.choice(['same', 'close', 'head', 'field', 'other'], p=[0.15, 0.2, 0.25, 0.22, 0.18])
            if kind == 'same':
                target, score = phrase(rng, ctx, head, mod, c2, link), 1.0
            elif kind == 'close':  # the head concept with its modifier or its second part dropped
                drop_mod = mod is not None and (c2 is None or rng.random() < 0.5)
                target = phrase(rng, ctx, head, None if drop_mod else mod, None if not drop_mod else c2, link)
                score = 0.75 if (mod is not None or c2 is not None) else 1.0
            elif kind == 'head':  # same head, different modifier or second part
                other_mod = int(rng.integers(len(MODIFIERS)))
                target, score = phrase(rng, ctx, head, other_mod if other_mod != mod else None), 0.5
            elif kind == 'field':  # another concept of the same field
                other = int((head + rng.integers(1, k)) % k)
                target, score = phrase(rng, ctx, other, mod if rng.random() < 0.5 else None), 0.25
            else:  # another field; may share a modifier or a polysemous word such as "cell"
                ctx2 = ctxs[(ctxs.index(ctx) + rng.integers(1, len(ctxs))) % len(ctxs)]
                target, score = phrase(rng, ctx2, int(rng.integers(len(CONTEXTS[ctx2]))), mod if rng.random() < 0.5 else None), 0.0
            if target in seen:
                continue
            seen.add(target)
            if rng.random() < 0.1:
                score = float(np.clip(score + rng.choice([-0.25, 0.25]), 0, 1))
            rows.append({'anchor': anchor, 'target': target, 'context': f'{ctx}', 'score': score})
    df = pd.DataFrame(rows)
    df.insert(0, 'id', [f'{x:016x}' for x in rng.integers(0, 2**62, len(df))])
    return df


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--public', required=True)
    p.add_argument('--private', required=True)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--source')
    a = p.parse_args()
    rng = np.random.default_rng(2022 + a.seed)
    df = generate(rng, 320)
    df = df.iloc[rng.permutation(len(df))].reset_index(drop=True)
    n_test = len(df) // 5
    test, train = df.iloc[:n_test], df.iloc[n_test:]
    train.to_csv(os.path.join(a.public, 'train.csv'), index=False)
    test.drop(columns=['score']).to_csv(os.path.join(a.public, 'test.csv'), index=False)
    pd.DataFrame({'id': test['id'], 'score': 0.5}).to_csv(os.path.join(a.public, 'sample_submission.csv'), index=False)
    test[['id', 'score']].to_csv(os.path.join(a.private, 'answers.csv'), index=False)


if __name__ == '__main__':
    main()
