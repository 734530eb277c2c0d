"""Shared fixtures: a temporary AiiDA profile (``aiida.tools.pytest_fixtures``) and small cluster sets."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

pytest_plugins = ['aiida.tools.pytest_fixtures']


def make_water_clusters(n_clusters: int = 4, *, labelled: bool = False, seed: int = 0) -> list[Atoms]:
    """Clusters of 1..n water molecules with random rigid placements; random labels when ``labelled``."""
    rng = np.random.default_rng(seed)
    water = np.array([[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]])
    images = []
    for index in range(n_clusters):
        n_molecules = index % 3 + 1
        positions = np.concatenate([water + rng.normal(scale=2.0, size=3) + 3.0 * m for m in range(n_molecules)])
        atoms = Atoms('OH2' * n_molecules, positions=positions)
        atoms.arrays['molecule'] = np.repeat(np.arange(n_molecules, dtype=np.int32), 3)
        atoms.info.update(kind='conformational', source=f'synthetic seed={seed} index={index}')
        if labelled:
            atoms.calc = SinglePointCalculator(
                atoms, energy=rng.normal(), forces=rng.normal(size=(len(atoms), 3)), dipole=rng.normal(size=3),
                charges=rng.normal(size=len(atoms)),
            )
        images.append(atoms)
    return images


@pytest.fixture
def water_clusters() -> list[Atoms]:
    return make_water_clusters()


@pytest.fixture
def labelled_water_clusters() -> list[Atoms]:
    return make_water_clusters(labelled=True)
