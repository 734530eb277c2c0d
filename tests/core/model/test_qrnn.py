"""Physics of the QRNN module: invariances, exact gradients, stress, charge conservation, locality, precision.

The models have random weights with the last layers scaled up, so that charges (~0.1-1 e), energies and forces are
large enough for every check to fail on a wrong model. Coulomb and dispersion are the real modules of
``coulomb.py``/``dispersion.py`` once they exist in the checkout.
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch
from ase import Atoms
from scipy.spatial.transform import Rotation

from aiida_qrnn.core.model.qrnn import DEFAULT_COULOMB, QRNN, QRNNConfig, evaluate
from aiida_qrnn.core.structures import ethylene_glycol_oligomer, molecular_cluster
from aiida_qrnn.core.units import COULOMB_CONSTANT
from aiida_qrnn.testing.models import evaluate_images, flat_batch, scaled_random_model
from aiida_qrnn.testing.structures import ethylene_glycol_liquid

torch.set_num_threads(1)  # two cores shared by several processes: more threads make this file 5x slower

HAS_COULOMB = importlib.util.find_spec('aiida_qrnn.core.model.coulomb') is not None
HAS_DISPERSION = importlib.util.find_spec('aiida_qrnn.core.model.dispersion') is not None


@pytest.fixture(scope='module')
def model() -> QRNN:
    return scaled_random_model()


@pytest.fixture(scope='module')
def eg_pair() -> Atoms:
    molecules = [ethylene_glycol_oligomer(1, seed=0), ethylene_glycol_oligomer(2, seed=1)]
    return molecular_cluster(molecules, min_distance=1.8, spread=3.0, rng=np.random.default_rng(0))


def test_charges_are_large_enough_to_test(model, eg_pair):
    results = evaluate_images(model, [eg_pair])
    assert results['charges'].abs().max() > 0.1
    if HAS_COULOMB:
        assert results['energy_coulomb'].abs().max() > 1e-3


def test_translation_rotation_permutation(model, eg_pair):
    reference = evaluate_images(model, [eg_pair])
    moved = eg_pair.copy()
    rotation = Rotation.from_euler('xyz', [0.7, -1.1, 2.3])
    moved.positions = rotation.apply(moved.positions) + np.array([3.0, -7.0, 11.0])
    permutation = np.random.default_rng(1).permutation(len(moved))
    moved = moved[permutation]
    results = evaluate_images(model, [moved])
    torch.testing.assert_close(results['energy'], reference['energy'], rtol=0, atol=1e-9)
    torch.testing.assert_close(results['charges'], reference['charges'][permutation], rtol=0, atol=1e-10)
    expected_forces = rotation.apply(reference['forces'].numpy())[permutation]
    np.testing.assert_allclose(results['forces'].numpy(), expected_forces, atol=1e-9)


@pytest.mark.parametrize('total_charge', [0, -1])
def test_forces_are_the_negative_gradient(model, eg_pair, total_charge):
    """Central finite differences along random directions and along single coordinates (float64)."""
    atoms = eg_pair.copy()
    atoms.info['total_charge'] = total_charge
    batch = flat_batch([atoms])
    forces = evaluate(model, **batch)['forces'].detach()
    rng = np.random.default_rng(2)
    directions = [torch.nn.functional.normalize(torch.tensor(rng.normal(size=forces.shape)).flatten(), dim=0)
                  .view_as(forces) for _ in range(3)]
    for atom, axis in [(0, 0), (5, 1), (12, 2), (20, 0)]:
        direction = torch.zeros_like(forces)
        direction[atom, axis] = 1.0
        directions.append(direction)
    step = 1e-4
    for direction in directions:
        energies = [
            evaluate(model, **{**batch, 'positions': batch['positions'] + sign * step * direction},
                     compute_forces=False)['energy'].item()
            for sign in (1.0, -1.0)
        ]
        finite_difference = (energies[0] - energies[1]) / (2 * step)
        assert abs(finite_difference + float((forces * direction).sum())) < 1e-6 * max(1.0, abs(finite_difference))


@pytest.fixture(scope='module')
def small_box() -> Atoms:
    """4 EG molecules in a sheared periodic cell (triclinic, so off-diagonal stress is tested too)."""
    box = ethylene_glycol_liquid(4, density_g_cm3=1.0, seed=3)
    shear = np.array([[1.0, 0.0, 0.0], [0.15, 1.0, 0.0], [-0.1, 0.08, 1.0]])
    box.set_cell(box.cell.array @ shear, scale_atoms=True)
    return box


def test_stress_is_the_strain_derivative(model, small_box):
    batch = flat_batch([small_box])
    results = evaluate(model, **batch, compute_stress=True)
    stress = results['stress'].detach()[0]
    volume = abs(np.linalg.det(small_box.cell.array))
    step = 1e-5
    for a, b in [(0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (2, 0)]:
        energies = []
        for sign in (1.0, -1.0):
            deformation = torch.eye(3, dtype=torch.float64)
            deformation[a, b] += sign * step
            strained = {**batch, 'positions': batch['positions'] @ deformation, 'cells': batch['cells'] @ deformation}
            energies.append(evaluate(model, **strained, compute_forces=False)['energy'].item())
        finite_difference = (energies[0] - energies[1]) / (2 * step * volume)
        assert abs(finite_difference - float(stress[a, b])) < 1e-6 + 1e-5 * abs(finite_difference), (a, b)
    assert stress.abs().max() > 1e-3


def test_batch_of_different_sizes_and_total_charges(model):
    """One call with Q = 0, +1, -1: each system's charges sum to its Q, and results equal separate calls."""
    images = [ethylene_glycol_oligomer(n, seed=n) for n in (1, 3, 2)]
    for atoms, charge in zip(images, (0, 1, -1), strict=True):
        atoms.info['total_charge'] = charge
    batch = flat_batch(images)
    results = evaluate_images(model, images)
    sums = torch.zeros(3, dtype=torch.float64).index_add(0, batch['system_index'], results['charges'])
    torch.testing.assert_close(sums, batch['total_charge'], rtol=0, atol=1e-12)
    start = 0
    for index, atoms in enumerate(images):
        alone = evaluate_images(model, [atoms])
        stop = start + len(atoms)
        torch.testing.assert_close(results['energy'][index], alone['energy'][0], rtol=0, atol=1e-10)
        torch.testing.assert_close(results['forces'][start:stop], alone['forces'], rtol=0, atol=1e-10)
        torch.testing.assert_close(results['dipole'][index], alone['dipole'][0], rtol=0, atol=1e-10)
        start = stop
    assert results['charges'].abs().max() > 0.05


def _interaction(charges: torch.Tensor, positions: np.ndarray, n_first: int) -> float:
    """Bare Coulomb energy between the first ``n_first`` atoms and the rest (eV); 0 without a Coulomb term."""
    if not HAS_COULOMB:
        return 0.0
    distances = np.linalg.norm(positions[:n_first, None] - positions[None, n_first:], axis=-1)
    return COULOMB_CONSTANT * float(charges[:n_first] @ torch.tensor(1.0 / distances) @ charges[n_first:])


def test_two_molecules_30_angstrom_apart_are_the_sum_of_their_parts(model):
    """E(A + A') = 2 E(A) + k Σ_{i∈A, j∈A'} q_i q_j / r_ij for A' a rotated copy of A 30 Å away (neutral pair).

    By symmetry each copy holds half the total charge in both passes, so this holds exactly if the networks are
    local and the long-range terms exact. Dispersion at 30 Å (C6/r^6 < 1e-7 eV here) is below the tolerance.
    """
    first = ethylene_glycol_oligomer(2, seed=4)
    copy = first.copy()
    copy.positions = Rotation.from_euler('zyx', [1.0, 0.3, -0.4]).apply(copy.positions) + np.array([30.0, 0, 0])
    together = evaluate_images(model, [first + copy])
    alone = evaluate_images(model, [first])
    n_first = len(first)
    torch.testing.assert_close(together['charges'][:n_first], alone['charges'][0:], rtol=0, atol=1e-10)
    expected = 2 * alone['energy'].item() + _interaction(together['charges'], (first + copy).positions, n_first)
    assert abs(together['energy'].item() - expected) < 1e-6


def test_far_apart_molecules_interact_only_through_exact_coulomb(model):
    """A and B (different molecules, Q = +1) at 30 Å and at 60 Å: same charges, energy change = bare Coulomb change.

    The charge equilibration is global (one Lagrange multiplier per system and pass), so A and B share charge
    at any distance; but nothing short-ranged may see the distance once it exceeds every cutoff.
    """
    first, second = ethylene_glycol_oligomer(2, seed=4), ethylene_glycol_oligomer(1, seed=5)
    energies, charges, positions = [], [], []
    for distance in (30.0, 60.0):
        moved = second.copy()
        moved.positions += np.array([distance, 0.0, 0.0])
        pair = first + moved
        pair.info['total_charge'] = 1
        results = evaluate_images(model, [pair])
        energies.append(results['energy'].item())
        charges.append(results['charges'])
        positions.append(pair.positions)
    torch.testing.assert_close(charges[0], charges[1], rtol=0, atol=1e-10)
    assert abs(float(charges[0][:len(first)].sum())) > 1e-3  # the global constraint did move charge
    n_first = len(first)
    coulomb_change = _interaction(charges[0], positions[0], n_first) - _interaction(charges[1], positions[1], n_first)
    assert abs((energies[0] - energies[1]) - coulomb_change) < 1e-6
    if HAS_COULOMB:
        assert abs(coulomb_change) > 1e-4


def test_periodic_box_equals_replicated_cluster_short_range(small_box):
    """Short-range part: with χ ≡ 0 every charge is exactly zero (Coulomb vanishes) and no dispersion; the energy
    per cell and the forces of the central copy of a 5x5x5 open replica then equal the periodic ones."""
    model = scaled_random_model(seed=1, coulomb=dict(DEFAULT_COULOMB) if HAS_COULOMB else None, dispersion=None,
                       open_cluster_cutoff=5.1)
    with torch.no_grad():
        for network in model.charge_networks.networks:
            network[-1].weight[0].zero_()
            network[-1].bias[0].zero_()
    periodic = evaluate_images(model, [small_box])
    cluster = small_box.repeat((5, 5, 5))
    cluster.positions -= 2 * small_box.cell.array.sum(0)
    cluster.pbc = False
    cluster.cell = np.zeros((3, 3))
    central = 62 * len(small_box) + np.arange(len(small_box))  # image (2, 2, 2) of ase.Atoms.repeat
    np.testing.assert_allclose(cluster.positions[central], small_box.positions, atol=1e-10)
    replica = evaluate_images(model, [cluster])
    assert periodic['charges'].abs().max() == 0.0
    torch.testing.assert_close(replica['atomic_energies'][central], periodic['atomic_energies'], rtol=0, atol=1e-9)
    torch.testing.assert_close(replica['forces'][central], periodic['forces'], rtol=0, atol=1e-9)
    assert periodic['forces'].abs().max() > 1e-2


def test_float32_agrees_with_float64(eg_pair):
    double = scaled_random_model(seed=2)
    single = scaled_random_model(seed=2, dtype=torch.float32)
    reference, results = evaluate_images(double, [eg_pair]), evaluate_images(single, [eg_pair])
    assert results['energy'].dtype == torch.float32
    np.testing.assert_allclose(results['energy'].double().numpy(), reference['energy'].numpy(), rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(results['forces'].double().numpy(), reference['forces'].numpy(), atol=2e-3)
    np.testing.assert_allclose(results['charges'].double().numpy(), reference['charges'].numpy(), atol=1e-4)


def test_unknown_element_and_mixed_batch_are_refused(model, eg_pair, small_box):
    with pytest.raises(ValueError, match=r"\['N'\] are not in this model"):
        evaluate_images(model, [Atoms('N2', positions=[[0, 0, 0], [1.1, 0, 0]])])
    with pytest.raises(ValueError, match='all periodic or all open'):
        evaluate_images(model, [eg_pair, small_box])


def test_config_round_trip():
    config = QRNNConfig(charge_hidden=(16,), energy_hidden=(8, 8), dispersion=None)
    again = QRNNConfig.from_dict(config.to_dict())
    assert again == config
    assert math.isinf(again.open_cluster_cutoff)
    with pytest.raises(ValueError, match='unknown QRNN config'):
        QRNNConfig.from_dict({'hidden': [3]})
