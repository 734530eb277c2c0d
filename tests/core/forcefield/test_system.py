"""The OpenMM OPLS-AA energy of single oligomers equals a hand-computed numpy sum of the same terms."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse.csgraph import shortest_path

from aiida_qrnn.core.forcefield.parameters import (
    ATOM_TYPES,
    COULOMB_14_SCALE,
    LJ_14_SCALE,
    angle_parameters,
    bond_parameters,
    torsion_parameters,
)
from aiida_qrnn.core.forcefield.system import FORCE_GROUPS, OplsAaCalculator, build_system
from aiida_qrnn.core.forcefield.topology import assign_atom_types
from aiida_qrnn.core.structures import ethylene_glycol_oligomer
from aiida_qrnn.core.topology import find_bonds
from aiida_qrnn.core.units import KJ_PER_MOL_TO_EV

#: 1 / (4 pi eps0) in kJ/mol nm e^-2, the value OpenMM uses (ONE_4PI_EPS0 in openmm/reference/SimTKOpenMMRealType.h).
COULOMB_CONSTANT = 138.935456


def dihedral(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> float:
    """IUPAC dihedral angle a-b-c-d in radians (trans = pi)."""
    b0, b1, b2 = a - b, c - b, d - c
    b1 /= np.linalg.norm(b1)
    v, w = b0 - b0 @ b1 * b1, b2 - b2 @ b1 * b1
    return float(np.arctan2(np.cross(b1, v) @ w, v @ w))


def hand_energy(positions_nm: np.ndarray, numbers: np.ndarray, bonds: np.ndarray) -> dict[str, float]:
    """Every OPLS-AA term enumerated from the bond graph and summed in plain numpy (kJ/mol)."""
    types = assign_atom_types(numbers, bonds)
    classes = [ATOM_TYPES[t].bond_class for t in types]
    n_atoms = len(numbers)
    adjacency = np.zeros((n_atoms, n_atoms))
    adjacency[bonds[:, 0], bonds[:, 1]] = adjacency[bonds[:, 1], bonds[:, 0]] = 1
    separation = shortest_path(adjacency, unweighted=True)
    x = positions_nm
    terms = dict.fromkeys(FORCE_GROUPS, 0.0)
    for i, j in bonds:
        r0, k = bond_parameters(classes[i], classes[j])
        terms['bonds'] += 0.5 * k * (np.linalg.norm(x[i] - x[j]) - r0) ** 2
    for j in range(n_atoms):
        partners = np.flatnonzero(adjacency[j])
        for a, i in enumerate(partners):
            for k in partners[a + 1:]:
                u, v = x[i] - x[j], x[k] - x[j]
                theta = np.arccos(u @ v / np.linalg.norm(u) / np.linalg.norm(v))
                theta0, k_angle = angle_parameters(classes[i], classes[j], classes[k])
                terms['angles'] += 0.5 * k_angle * (theta - theta0) ** 2
    for i in range(n_atoms):
        for m in range(i + 1, n_atoms):
            if separation[i, m] != 3:
                continue
            # the unique path i-j-k-m of an acyclic graph
            j = next(a for a in np.flatnonzero(adjacency[i]) if separation[a, m] == 2)
            k = next(a for a in np.flatnonzero(adjacency[m]) if separation[a, i] == 2)
            psi = dihedral(x[i], x[j], x[k], x[m]) - np.pi
            c = torsion_parameters((classes[i], classes[j], classes[k], classes[m]))
            terms['torsions'] += sum(c_n * np.cos(psi) ** n for n, c_n in enumerate(c))
    for i in range(n_atoms):
        for j in range(i + 1, n_atoms):
            if separation[i, j] < 3:
                continue
            r = np.linalg.norm(x[i] - x[j])
            ti, tj = ATOM_TYPES[types[i]], ATOM_TYPES[types[j]]
            sigma, epsilon = np.sqrt(ti.sigma * tj.sigma), np.sqrt(ti.epsilon * tj.epsilon)
            coulomb = COULOMB_CONSTANT * ti.charge * tj.charge / r
            lennard_jones = 4 * epsilon * ((sigma / r) ** 12 - (sigma / r) ** 6)
            if separation[i, j] == 3:
                terms['coulomb'] += COULOMB_14_SCALE * coulomb
                terms['lennard_jones_14'] += LJ_14_SCALE * lennard_jones
            else:
                terms['coulomb'] += coulomb
                terms['lennard_jones'] += lennard_jones
    return terms


@pytest.mark.parametrize(('n_units', 'seed'), [(1, 0), (1, 5), (2, 1), (3, 2)])
def test_openmm_energy_equals_hand_sum_term_by_term(n_units, seed):
    import openmm
    from openmm import unit

    atoms = ethylene_glycol_oligomer(n_units, seed=seed)
    rng = np.random.default_rng(seed)
    atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)  # off the minimum: every term counts
    bonds = find_bonds(atoms)
    system, _ = build_system(atoms, bonds)
    context = openmm.Context(system, openmm.VerletIntegrator(1.0), openmm.Platform.getPlatformByName('Reference'))
    context.setPositions(atoms.positions / 10)
    expected = hand_energy(atoms.positions / 10, atoms.numbers, bonds)
    for name, group in FORCE_GROUPS.items():
        energy = context.getState(getEnergy=True, groups={group}).getPotentialEnergy()
        assert energy.value_in_unit(unit.kilojoule_per_mole) == pytest.approx(expected[name], rel=1e-7, abs=1e-8), name
    assert abs(expected['lennard_jones']) > 0 or n_units == 1


def test_calculator_energy_in_ev_and_forces_are_minus_the_gradient():
    from ase.calculators.fd import calculate_numerical_forces

    atoms = ethylene_glycol_oligomer(2, seed=4)
    atoms.calc = OplsAaCalculator(platform='Reference')
    expected_kj = sum(hand_energy(atoms.positions / 10, atoms.numbers, find_bonds(atoms)).values())
    assert atoms.get_potential_energy() == pytest.approx(expected_kj * KJ_PER_MOL_TO_EV, rel=1e-7)
    numerical = calculate_numerical_forces(atoms, eps=1e-4)
    assert np.abs(atoms.get_forces() - numerical).max() < 1e-5


def test_periodic_cutoff_must_fit_the_box():
    from aiida_qrnn.core.structures import pack_cell

    cell = pack_cell(1, 4, density_g_cm3=0.5)
    with pytest.raises(ValueError, match='half the shortest box edge'):
        build_system(cell, cutoff_nm=1.0)
