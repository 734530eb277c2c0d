"""AEV against a plain loop over atoms, neighbours and neighbour pairs written from the formulas of science.md §1.2."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from ase import Atoms

from aiida_qrnn.core.model.aev import AEVComputer, AEVConfig
from aiida_qrnn.core.model.neighbors import neighbor_list
from aiida_qrnn.core.structures import ethylene_glycol_oligomer

torch.set_num_threads(1)  # two cores shared by several processes: more threads make this file 5x slower

SPECIES = {1: 0, 6: 1, 8: 2}


def _cutoff(r: float, cutoff: float) -> float:
    return 0.5 * math.cos(math.pi * r / cutoff) + 0.5 if r < cutoff else 0.0


def _reference_aev(positions: np.ndarray, species: list[int], config: AEVConfig, n_species: int) -> np.ndarray:
    """Loops, ANI-2x formulas with arccos; angular blocks in the order (s_j, s_k) pairs of triu, shift, section."""
    n_atoms = len(positions)
    n_radial, n_angular = len(config.radial_shifts), len(config.angular_shifts) * len(config.angle_sections)
    pair_slot = {pair: slot for slot, pair in enumerate(itertools.combinations_with_replacement(range(n_species), 2))}
    radial = np.zeros((n_atoms, n_species, n_radial))
    angular = np.zeros((n_atoms, len(pair_slot), n_angular))
    for i in range(n_atoms):
        neighbours = [j for j in range(n_atoms) if j != i]
        for j in neighbours:
            r = np.linalg.norm(positions[j] - positions[i])
            for s, shift in enumerate(config.radial_shifts):
                radial[i, species[j], s] += (
                    0.25 * math.exp(-config.radial_eta * (r - shift) ** 2) * _cutoff(r, config.radial_cutoff)
                )
        for j, k in itertools.combinations(neighbours, 2):
            vj, vk = positions[j] - positions[i], positions[k] - positions[i]
            rj, rk = np.linalg.norm(vj), np.linalg.norm(vk)
            if rj >= config.angular_cutoff or rk >= config.angular_cutoff:
                continue
            theta = math.acos(0.95 * vj @ vk / (rj * rk))
            slot = pair_slot[tuple(sorted((species[j], species[k])))]
            for a, shift in enumerate(config.angular_shifts):
                for z, section in enumerate(config.angle_sections):
                    angular[i, slot, a * len(config.angle_sections) + z] += (
                        2 * ((1 + math.cos(theta - section)) / 2) ** config.angular_zeta
                        * math.exp(-config.angular_eta * ((rj + rk) / 2 - shift) ** 2)
                        * _cutoff(rj, config.angular_cutoff) * _cutoff(rk, config.angular_cutoff)
                    )
    return np.concatenate([radial.reshape(n_atoms, -1), angular.reshape(n_atoms, -1)], axis=1)


def _aev(atoms_list: list[Atoms], computer: AEVComputer, cutoff: float) -> torch.Tensor:
    positions = torch.tensor(np.concatenate([atoms.positions for atoms in atoms_list]))
    system_index = torch.cat([torch.full((len(atoms),), index) for index, atoms in enumerate(atoms_list)])
    cells = torch.tensor(np.stack([atoms.cell.array for atoms in atoms_list]))
    pbc = torch.tensor(np.stack([atoms.pbc for atoms in atoms_list]))
    species = torch.tensor([SPECIES[number] for atoms in atoms_list for number in atoms.numbers])
    result = neighbor_list(positions, system_index, cells, pbc, cutoff)
    return computer(species, result.pairs, result.vectors, result.distances)[0]


def test_default_constants_are_ani2x():
    config = AEVConfig()
    assert (config.radial_cutoff, config.angular_cutoff) == (5.1, 3.5)
    assert (config.radial_eta, config.angular_eta, config.angular_zeta) == (19.7, 12.5, 14.1)
    np.testing.assert_allclose(config.radial_shifts[:2], [0.8, 1.06875])
    np.testing.assert_allclose(config.angular_shifts[-1], 3.1625)
    np.testing.assert_allclose(config.angle_sections, [0.39270, 1.17810, 1.96350, 2.74889], atol=1e-5)
    assert AEVComputer(7).aev_length == 1008
    assert AEVComputer(3).aev_length == 240


@pytest.mark.parametrize('cutoff', [math.inf, 5.1])
def test_batched_aev_equals_loop_reference(cutoff):
    """Two EG molecules in one batch (different sizes) give each molecule's reference AEV."""
    molecules = [ethylene_glycol_oligomer(1, seed=0), ethylene_glycol_oligomer(2, seed=1)]
    config = AEVConfig()
    computer = AEVComputer(3, config).double()
    aev = _aev(molecules, computer, cutoff)
    reference = np.concatenate([
        _reference_aev(atoms.positions, [SPECIES[n] for n in atoms.numbers], config, 3) for atoms in molecules
    ])
    assert aev.shape == (27, 240)
    assert np.abs(reference).max() > 0.1
    np.testing.assert_allclose(aev.numpy(), reference, atol=1e-10)


def test_periodic_aev_equals_replicated_cluster():
    """Atoms of a small skewed periodic cell see the same environment as the central copy in a 3x3x3 open cluster."""
    rng = np.random.default_rng(4)
    cell = np.array([[6.5, 0.0, 0.0], [1.0, 6.0, 0.0], [0.5, -0.8, 6.2]])
    numbers = rng.choice([1, 6, 8], size=14)
    atoms = Atoms(numbers=numbers, scaled_positions=rng.random((14, 3)), cell=cell, pbc=True)
    computer = AEVComputer(3).double()
    periodic = _aev([atoms], computer, 5.1)
    cluster = atoms.repeat((3, 3, 3))
    cluster.positions -= cell.sum(0)  # the copy with image (1, 1, 1) sits at the original positions
    cluster.pbc = False
    cluster.cell = np.zeros((3, 3))
    central = 13 * len(atoms) + np.arange(len(atoms))  # ase.Atoms.repeat orders images i, j, k
    np.testing.assert_allclose(cluster.positions[central], atoms.positions, atol=1e-12)
    open_aev = _aev([cluster], computer, 5.1)[central]
    assert periodic.abs().max() > 0.1
    np.testing.assert_allclose(periodic.numpy(), open_aev.numpy(), atol=1e-10)
