"""A quick periodic ethylene-glycol liquid for tests and benchmarks of the model (not an equilibrated structure).

Molecules are put on a simple cubic grid with random orientations in a cubic box sized for the target density;
the sampling module builds production cells.
"""

from __future__ import annotations

import math

import numpy as np
from ase import Atoms, units

from ..structures import ethylene_glycol_oligomer

__all__ = ('ethylene_glycol_liquid',)


def ethylene_glycol_liquid(n_molecules: int, *, density_g_cm3: float = 1.1, seed: int = 0) -> Atoms:
    """``n_molecules`` EG molecules on a cubic grid in a periodic cubic box at ``density_g_cm3``."""
    if n_molecules < 1:
        raise ValueError(f'n_molecules must be positive, got {n_molecules}.')
    if density_g_cm3 <= 0:
        raise ValueError(f'density_g_cm3 must be positive, got {density_g_cm3}.')
    rng = np.random.default_rng(seed)
    molecule = ethylene_glycol_oligomer(1, seed=seed)
    mass_amu = molecule.get_masses().sum() * n_molecules
    grams = mass_amu * units._amu * 1e3  # ase.units._amu is kg
    length = (grams / density_g_cm3 * 1e24) ** (1.0 / 3.0)  # cm^3 -> Å^3
    per_side = math.ceil(n_molecules ** (1.0 / 3.0))
    spacing = length / per_side
    sites = np.stack(np.meshgrid(*[np.arange(per_side)] * 3, indexing='ij'), axis=-1).reshape(-1, 3)
    sites = sites[rng.permutation(len(sites))[:n_molecules]]
    liquid = Atoms(cell=np.eye(3) * length, pbc=True)
    for index, site in enumerate(sites):
        copy = molecule.copy()
        copy.rotate(rng.uniform(0, 360), rng.normal(size=3), center='COM')
        copy.positions += (site + 0.5) * spacing - copy.get_center_of_mass()
        copy.arrays['molecule'] = np.full(len(copy), index, dtype=np.int32)
        liquid += copy
    return liquid
