"""Ewald/PME Coulomb of periodic cells (torch-pme k-space + real space over the pair list) against a direct lattice
sum, finite differences and the strain derivative; see docs/model-long-range.md."""

import numpy as np
import pytest
import torch

from aiida_qrnn.core.model.coulomb import Coulomb
from aiida_qrnn.core.model.neighbors import neighbor_list
from aiida_qrnn.core.model.qrnn import QRNN, QRNNConfig, evaluate
from aiida_qrnn.core.units import COULOMB_CONSTANT
from aiida_qrnn.testing.structures import ethylene_glycol_liquid

CELL = np.array([[7.0, 0.0, 0.0], [1.0, 6.5, 0.0], [0.5, 0.8, 7.5]])  # Å, triclinic


def _ionic_box() -> tuple[np.ndarray, np.ndarray]:
    """8 point charges, neutral and inversion-symmetric (zero dipole), so the direct lattice sum over spheres of
    cells converges to the Ewald (tin-foil) energy."""
    half = np.random.default_rng(1).uniform(-0.45, 0.45, (4, 3)) @ CELL
    return np.concatenate([half, -half]), np.array([1.0, -1.0, 0.6, -0.6] * 2)


def _direct_lattice_sum(positions: np.ndarray, charges: np.ndarray, shells: int) -> tuple[float, np.ndarray]:
    """Energy (eV) and forces (eV/Å) summed over all images with |n| <= shells (spherical order)."""
    n = np.arange(-shells, shells + 1)
    images = np.stack(np.meshgrid(n, n, n, indexing='ij'), -1).reshape(-1, 3)
    shifts = images[np.linalg.norm(images, axis=1) <= shells] @ CELL  # (images, 3)
    vectors = positions[None, :, None, :] - positions[:, None, None, :] + shifts[None, None]  # (i, j, images, 3)
    r = np.linalg.norm(vectors, axis=-1)
    r[r < 1e-9] = np.inf  # an atom with itself in the home cell
    qq = charges[:, None, None] * charges[None, :, None]
    energy = 0.5 * COULOMB_CONSTANT * (qq / r).sum()
    forces = -COULOMB_CONSTANT * ((qq / r**3)[..., None] * vectors).sum(axis=(1, 2))  # on i, from all j images
    return energy, forces


def _energy(coulomb: Coulomb, positions: torch.Tensor, charges: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    system_index = torch.zeros(len(charges), dtype=torch.long)
    pbc = torch.ones((1, 3), dtype=torch.bool)
    nl = neighbor_list(positions, system_index, cell.unsqueeze(0), pbc, coulomb.cutoff)
    return coulomb(charges, nl.pairs, nl.distances, system_index, 1, True, positions, cell.unsqueeze(0))[0]


@pytest.mark.parametrize('method', ['ewald', 'pme'])
def test_energy_and_forces_equal_a_direct_lattice_sum(method):
    positions, charges = _ionic_box()
    reference_energy, reference_forces = _direct_lattice_sum(positions, charges, 30)
    coarse_energy, _ = _direct_lattice_sum(positions, charges, 20)
    assert abs(coarse_energy - reference_energy) < 1e-5  # the direct sum has converged to this level
    position_tensor = torch.tensor(positions, dtype=torch.float64, requires_grad=True)
    energy = _energy(
        Coulomb(method=method, short_range_cutoff=0.0), position_tensor, torch.tensor(charges, dtype=torch.float64),
        torch.tensor(CELL, dtype=torch.float64),
    )
    forces = -torch.autograd.grad(energy, position_tensor)[0].numpy()
    assert abs(float(energy) - reference_energy) < 1e-5  # measured 3e-7 (Ewald), 3e-7 (PME)
    np.testing.assert_allclose(forces, reference_forces, atol=1e-4)


def test_rock_salt_madelung_energy():
    a = 5.64
    base = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    positions = torch.tensor(np.concatenate([base, base + np.array([0.5, 0, 0])]) * a, dtype=torch.float64)
    charges = torch.tensor([1.0] * 4 + [-1.0] * 4, dtype=torch.float64)
    energy = _energy(Coulomb(method='ewald', short_range_cutoff=0.0), positions, charges,
                     torch.eye(3, dtype=torch.float64) * a)
    assert float(energy) / 8 == pytest.approx(-1.747565 * COULOMB_CONSTANT / a, abs=1e-5)  # per ion: -M k_e/(2 r0)


@pytest.mark.parametrize('method', ['ewald', 'pme'])
def test_forces_equal_finite_differences_with_short_range_removal(method):
    positions, charges = _ionic_box()
    coulomb = Coulomb(method=method, cutoff=6.0, short_range_cutoff=3.0)
    cell = torch.tensor(CELL, dtype=torch.float64)
    charge_tensor = torch.tensor(charges, dtype=torch.float64)
    position_tensor = torch.tensor(positions, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: _energy(coulomb, x, charge_tensor, cell), (position_tensor,))


@pytest.mark.parametrize('method', ['ewald', 'pme'])
def test_model_stress_is_the_strain_derivative(method):
    """QRNN with Ewald/PME on a small EG box: evaluate's autograd stress equals central differences of the energy
    under a homogeneous strain of positions and cell (torch-pme's cell gradients included)."""
    torch.manual_seed(0)
    model = QRNN(QRNNConfig(charge_hidden=(8,), energy_hidden=(8,), coulomb={'method': method, 'cutoff': 6.0}))
    model = model.double()
    liquid = ethylene_glycol_liquid(4, density_g_cm3=0.9)
    positions = torch.tensor(liquid.positions)
    numbers = torch.tensor(liquid.numbers)
    cell = torch.tensor(liquid.cell.array).unsqueeze(0)
    args = (numbers, torch.zeros(len(liquid), dtype=torch.long))
    pbc, charge = torch.ones((1, 3), dtype=torch.bool), torch.zeros(1, dtype=torch.float64)
    results = evaluate(model, positions, *args, cell, pbc, charge, compute_stress=True)
    assert float(results['energy_coulomb'].abs()) > 1e-3  # the charges are not negligible
    volume = float(torch.linalg.det(cell[0]))
    step = 1e-5
    for a, b in [(0, 0), (1, 1), (2, 2), (0, 1), (1, 2)]:
        energies = []
        for sign in (1, -1):
            strain = torch.eye(3, dtype=torch.float64)
            strain[a, b] += sign * step / 2
            strain[b, a] += sign * step / 2
            energies.append(float(evaluate(model, positions @ strain, *args, cell @ strain, pbc, charge,
                                           compute_forces=False)['energy'][0]))
        numeric = (energies[0] - energies[1]) / (2 * step) / volume
        assert float(results['stress'][0, a, b]) == pytest.approx(numeric, abs=1e-7)


def test_all_methods_are_exact_coulomb_for_open_clusters():
    positions, charges = _ionic_box()
    pairs = torch.triu_indices(8, 8, 1)
    position_tensor = torch.tensor(positions, dtype=torch.float64)
    distances = (position_tensor[pairs[1]] - position_tensor[pairs[0]]).norm(dim=1)
    system_index = torch.zeros(8, dtype=torch.long)
    charge_tensor = torch.tensor(charges, dtype=torch.float64)
    open_energies = [Coulomb(method=method)(charge_tensor, pairs, distances, system_index, 1, False)
                     for method in ('dsf', 'ewald', 'pme')]
    assert float(open_energies[0]) == float(open_energies[1]) == float(open_energies[2])


@pytest.mark.parametrize(('options', 'parameter'), [
    ({'method': 'p3m'}, 'method'), ({'method': 'ewald', 'smearing': -1.0}, 'smearing'),
    ({'method': 'ewald', 'lr_wavelength': 0.0}, 'lr_wavelength'), ({'method': 'pme', 'mesh_spacing': 0.0},
                                                                     'mesh_spacing'),
    ({'method': 'pme', 'interpolation_nodes': 2}, 'interpolation_nodes'),
])
def test_bad_ewald_options_name_the_parameter(options, parameter):
    with pytest.raises(ValueError, match=parameter):
        Coulomb(**options)


def test_torchscript_model_with_pme_and_the_prior_equals_eager():
    torch.manual_seed(0)
    model = QRNN(QRNNConfig(charge_hidden=(8,), energy_hidden=(8,), coulomb={'method': 'pme', 'cutoff': 6.0},
                            repulsion={})).double()
    liquid = ethylene_glycol_liquid(4, density_g_cm3=0.9)
    inputs = (torch.tensor(liquid.positions), torch.tensor(liquid.numbers), torch.zeros(len(liquid), dtype=torch.long),
              torch.tensor(liquid.cell.array).unsqueeze(0), torch.ones((1, 3), dtype=torch.bool),
              torch.zeros(1, dtype=torch.float64))
    eager = evaluate(model, *inputs, compute_stress=True)
    scripted = evaluate(torch.jit.script(model), *inputs, compute_stress=True)
    for key in ('energy', 'forces', 'stress'):
        torch.testing.assert_close(scripted[key], eager[key], rtol=1e-12, atol=1e-12)


def test_a_batch_of_two_cells_equals_two_calls():
    positions, charges = _ionic_box()
    coulomb = Coulomb(method='pme', cutoff=6.0, short_range_cutoff=0.0)
    cell = torch.tensor(CELL, dtype=torch.float64)
    single = float(_energy(coulomb, torch.tensor(positions), torch.tensor(charges), cell))
    larger_cell = cell * 1.1
    single_larger = float(_energy(coulomb, torch.tensor(positions), torch.tensor(charges), larger_cell))
    batch_positions = torch.tensor(np.concatenate([positions, positions]))
    batch_charges = torch.tensor(np.concatenate([charges, charges]))
    system_index = torch.tensor([0] * 8 + [1] * 8)
    cells = torch.stack([cell, larger_cell])
    nl = neighbor_list(batch_positions, system_index, cells, torch.ones((2, 3), dtype=torch.bool), 6.0)
    batch = coulomb(batch_charges, nl.pairs, nl.distances, system_index, 2, True, batch_positions, cells)
    np.testing.assert_allclose(batch.numpy(), [single, single_larger], rtol=1e-12)
