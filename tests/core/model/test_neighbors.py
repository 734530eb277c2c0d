"""Half neighbour lists: periodic cells of any shape against ASE, open clusters, batches, differentiable geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.neighborlist import neighbor_list as ase_neighbor_list

from aiida_qrnn.core.model.neighbors import neighbor_list


def _flat(images: list[Atoms]) -> tuple[torch.Tensor, ...]:
    positions = torch.tensor(np.concatenate([atoms.positions for atoms in images]))
    system_index = torch.cat([torch.full((len(atoms),), index) for index, atoms in enumerate(images)])
    cells = torch.tensor(np.stack([atoms.cell.array for atoms in images]))
    pbc = torch.tensor(np.stack([atoms.pbc for atoms in images]))
    return positions, system_index, cells, pbc


@pytest.mark.parametrize('pbc', [(True, True, True), (True, False, True)])
def test_skewed_cell_matches_ase(pbc):
    """Every pair once with the same distances as ASE's full list, also for a cutoff above half the cell."""
    rng = np.random.default_rng(1)
    cell = np.array([[6.0, 0.0, 0.0], [2.5, 5.5, 0.0], [-1.0, 1.5, 7.0]])
    atoms = Atoms('H12', scaled_positions=rng.random((12, 3)), cell=cell, pbc=pbc)
    cutoff = 4.7
    result = neighbor_list(*_flat([atoms]), cutoff)
    first, _, distances = ase_neighbor_list('ijd', atoms, cutoff)
    assert result.pairs.shape[1] * 2 == len(first)
    np.testing.assert_allclose(np.sort(np.repeat(result.distances.numpy(), 2)), np.sort(distances), atol=1e-12)
    vectors = atoms.positions[result.pairs[1]] - atoms.positions[result.pairs[0]] + result.shifts.numpy()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), result.distances.numpy(), atol=1e-12)


def test_open_clusters_all_pairs_never_cross_systems():
    rng = np.random.default_rng(2)
    images = [Atoms(f'H{n}', positions=rng.normal(size=(n, 3)) * 3) for n in (1, 5, 2, 9)]
    positions, system_index, cells, pbc = _flat(images)
    result = neighbor_list(positions, system_index, cells, pbc, math.inf)
    assert result.pairs.shape[1] == sum(n * (n - 1) // 2 for n in (1, 5, 2, 9))
    assert torch.equal(system_index[result.pairs[0]], system_index[result.pairs[1]])
    assert bool((result.pairs[0] < result.pairs[1]).all())
    finite = neighbor_list(positions, system_index, cells, pbc, 4.0)
    expected = sorted(d for d in result.distances.tolist() if d < 4.0)
    np.testing.assert_allclose(sorted(finite.distances.tolist()), expected, atol=1e-12)


def test_infinite_cutoff_refused_for_periodic_cells():
    atoms = Atoms('H2', positions=[[0, 0, 0], [1, 0, 0]], cell=np.eye(3) * 5, pbc=True)
    with pytest.raises(ValueError, match='infinite pair cutoff'):
        neighbor_list(*_flat([atoms]), math.inf)


def test_a_cell_denser_than_matter_is_refused_before_the_search():
    """A 0.5 Å cell (its images fused; 22.6 GB at 12 Å before this check) or a flat one is a clear error naming
    the system, the volume and the cutoff; a real liquid's density passes."""
    tiny = Atoms('CO', positions=[[0, 0, 0], [0.2, 0.2, 0.2]], cell=np.eye(3) * 0.5, pbc=True)
    with pytest.raises(ValueError, match=r'system 0: 2 atoms in a periodic cell of 0.125 Å³.*denser than any matter'
                                         r'.*12 Å cutoff'):
        neighbor_list(*_flat([tiny]), 12.0)
    flat = Atoms('H2', positions=[[0, 0, 0], [1, 0, 0]], cell=[[5, 0, 0], [0, 5, 0], [0, 0, 0]], pbc=True)
    with pytest.raises(ValueError, match='periodic cell of 0 Å³'):
        neighbor_list(*_flat([flat]), 5.0)
    water_like = Atoms('H2O', positions=[[0, 0, 0], [0.96, 0, 0], [0, 0.96, 0]], cell=np.eye(3) * 3.1, pbc=True)
    assert neighbor_list(*_flat([water_like]), 6.0).pairs.shape[1] > 0  # 0.1 atoms/Å³, like liquid water


def test_distances_differentiable_through_cell():
    """A homogeneous strain of positions and cell changes every distance by r·ε·r/r (first order)."""
    rng = np.random.default_rng(3)
    atoms = Atoms('H6', scaled_positions=rng.random((6, 3)), cell=np.diag([4.0, 4.5, 5.0]), pbc=True)
    positions, system_index, cells, pbc = _flat([atoms])
    strain = torch.zeros(3, 3, dtype=torch.float64, requires_grad=True)
    deformation = torch.eye(3, dtype=torch.float64) + strain
    result = neighbor_list(positions @ deformation, system_index, cells @ deformation, pbc, 3.0)
    (gradient,) = torch.autograd.grad(result.distances.sum(), strain)
    vectors = result.vectors.detach()
    expected = (vectors.unsqueeze(2) * vectors.unsqueeze(1) / result.distances.detach().view(-1, 1, 1)).sum(0)
    torch.testing.assert_close(gradient, expected)
