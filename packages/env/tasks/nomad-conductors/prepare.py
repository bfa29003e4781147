"""Prepare nomad-conductors: seeded synthetic (Al_x Ga_y In_z)2 O3 crystals with formation and bandgap energies.

Mirrors the NOMAD2018 transparent-conductors competition: composition fractions, space group, atom count,
lattice vectors and angles as features; two targets whose dependence on composition is nonlinear (bowing),
shifted per space group and by the volume per atom, with noise.
"""
import argparse
import os

import numpy as np
import pandas as pd

SPACEGROUPS = np.array([12, 33, 167, 194, 206, 227])
SG_P = [0.16, 0.13, 0.12, 0.24, 0.2, 0.15]
SG_GAP = {12: 0.0, 33: 0.25, 167: -0.2, 194: 0.15, 206: 0.4, 227: -0.45}
SG_FORM = {12: 0.0, 33: 0.02, 167: 0.05, 194: 0.03, 206: -0.01, 227: 0.07}
SG_ANGLES = {12: (90, 104, 90), 33: (90, 90, 90), 167: (90, 90, 120), 194: (90, 90, 120), 206: (90, 90, 90), 227: (60, 60, 60)}
ATOMS = np.array([10, 20, 30, 40, 60, 80])


def generate(rng, n):
    sg = rng.choice(SPACEGROUPS, size=n, p=SG_P)
    natoms = rng.choice(ATOMS, size=n)
    # Compositions on the simplex, snapped to multiples of 1/32 like the competition's (1/16-ish) grid.
    comp = rng.dirichlet([0.8, 0.8, 0.8], size=n)
    comp = np.round(comp * 32) / 32
    comp[:, 2] = np.clip(1 - comp[:, 0] - comp[:, 1], 0, 1)
    comp /= comp.sum(axis=1, keepdims=True)
    al, ga, inn = comp.T
    # Larger cations expand the cell (Vegard's law); cell volume scales with the atom count.
    vol_per_atom = 9.0 + 1.5 * ga + 4.0 * inn + rng.normal(0, 0.25, n) + np.array([SG_FORM[s] * 8 for s in sg])
    volume = vol_per_atom * natoms
    ratios = rng.uniform(0.7, 1.4, size=(n, 3))
    ratios /= np.cbrt(ratios.prod(axis=1, keepdims=True))
    angles = np.array([SG_ANGLES[s] for s in sg], dtype=float) + rng.normal(0, 0.3, size=(n, 3))
    sin_term = np.sqrt(np.clip(1 - (np.cos(np.radians(angles)) ** 2).sum(axis=1) + 2 * np.cos(np.radians(angles)).prod(axis=1), 0.05, None))
    lattice = ratios * np.cbrt(volume / sin_term)[:, None]
    gap = (7.0 * al + 4.6 * ga + 2.6 * inn - 3.2 * al * inn - 1.1 * al * ga - 0.9 * ga * inn
           + np.array([SG_GAP[s] for s in sg]) - 0.35 * (vol_per_atom - 10.5) + rng.normal(0, 0.18, n))
    gap = np.clip(gap, 0.05, None)
    form = (0.06 + 0.35 * al * ga + 0.55 * al * inn + 0.22 * ga * inn + 0.25 * (al * ga * inn) * 9
            + np.array([SG_FORM[s] for s in sg]) + 0.015 * np.log(natoms / 10) + rng.normal(0, 0.025, n))
    form = np.clip(form, 0.0, None)
    return pd.DataFrame({
        'spacegroup': sg, 'number_of_total_atoms': natoms,
        'percent_atom_al': al.round(4), 'percent_atom_ga': ga.round(4), 'percent_atom_in': inn.round(4),
        'lattice_vector_1_ang': lattice[:, 0].round(4), 'lattice_vector_2_ang': lattice[:, 1].round(4),
        'lattice_vector_3_ang': lattice[:, 2].round(4), 'lattice_angle_alpha_degree': angles[:, 0].round(4),
        'lattice_angle_beta_degree': angles[:, 1].round(4), 'lattice_angle_gamma_degree': angles[:, 2].round(4),
        'formation_energy_ev_natom': form.round(4), 'bandgap_energy_ev': gap.round(4),
    })


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--public', required=True)
    p.add_argument('--private', required=True)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--source')
    a = p.parse_args()
    rng = np.random.default_rng(2018 + a.seed)
    df = generate(rng, 3000)
    df.insert(0, 'id', np.arange(1, len(df) + 1))
    targets = ['formation_energy_ev_natom', 'bandgap_energy_ev']
    train, test = df.iloc[:2400], df.iloc[2400:]
    train.to_csv(os.path.join(a.public, 'train.csv'), index=False)
    test.drop(columns=targets).to_csv(os.path.join(a.public, 'test.csv'), index=False)
    sample = pd.DataFrame({'id': test['id'], targets[0]: 0.1779, targets[1]: 1.8892})
    sample.to_csv(os.path.join(a.public, 'sample_submission.csv'), index=False)
    test[['id', *targets]].to_csv(os.path.join(a.private, 'answers.csv'), index=False)


if __name__ == '__main__':
    main()
