"""The engine's Verlet list: never misses a pair inside the cutoff while atoms move and the cell deforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aiida_qrnn.core.md.forcefields import VerletList
from aiida_qrnn.core.model.neighbors import neighbor_pairs, pair_geometry

CUTOFF_A, SKIN_A = 4.0, 1.0


def pairs_within(positions: torch.Tensor, cells: torch.Tensor, pairs: torch.Tensor, shifts: torch.Tensor) -> set:
    """The pairs of a half list closer than the cutoff, each as (i, j, shift) with i <= j in one orientation."""
    system_index = torch.zeros(len(positions), dtype=torch.long)
    _, _, distances = pair_geometry(positions, cells, system_index, pairs, shifts)
    found = set()
    for (i, j), shift, distance in zip(pairs.T.tolist(), shifts.tolist(), distances.tolist(), strict=True):
        if distance < CUTOFF_A:
            if i > j or (i == j and tuple(shift) < (0, 0, 0)):
                i, j, shift = j, i, [-value for value in shift]
            found.add((i, j, *(round(value) for value in shift)))
    return found


@pytest.mark.parametrize('deformation', ['none', 'isotropic', 'shear'])
def test_verlet_list_keeps_every_pair_inside_the_cutoff(deformation):
    """64 atoms in a 10 Å box random-walk 0.03 Å per step for 60 steps while the cell shrinks by 0.4 % per step
    (isotropic) or shears by 0.4 % per step: at every step the list, rebuilt only when the bound of
    :mod:`aiida_qrnn.core.md.forcefields` fails, holds exactly the pairs an exact search finds inside the cutoff,
    and it was rebuilt fewer times than there were steps."""
    generator = np.random.default_rng(0)
    positions = torch.tensor(generator.uniform(0, 10, (64, 3)))
    cell = torch.eye(3, dtype=torch.float64) * 10.0
    system_index = torch.zeros(64, dtype=torch.long)
    pbc = torch.ones((1, 3), dtype=torch.bool)
    verlet = VerletList(system_index, pbc, CUTOFF_A, SKIN_A)
    step_strain = {'none': torch.zeros((3, 3)), 'isotropic': torch.eye(3) * -0.004,
                   'shear': torch.tensor([[0.0, 0.004, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])}[deformation]
    for _ in range(60):
        deform = torch.eye(3, dtype=torch.float64) + step_strain.double()
        positions = positions @ deform + torch.tensor(generator.normal(scale=0.03, size=(64, 3)))
        cell = cell @ deform
        cells = cell[None]
        listed = pairs_within(positions, cells, *verlet.get(positions, cells))
        exact = pairs_within(positions, cells, *neighbor_pairs(positions, system_index, cells, pbc, CUTOFF_A))
        assert listed == exact
    assert 1 < verlet.n_builds < 60
