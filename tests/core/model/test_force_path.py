"""The faster force path computes the same numbers as the plain formulas (float64, 1e-12).

Shared radial pairs for the short-range Coulomb removal, the chunked angular AEV, the one-system geometry and
sums, and the clamped Gaussian exponents are each checked against the straightforward computation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aiida_qrnn.core.model.aev import EXP_FLOOR, AEVComputer
from aiida_qrnn.core.model.coulomb import Coulomb
from aiida_qrnn.core.model.neighbors import neighbor_list, neighbor_pairs, pair_geometry, sum_over_pairs
from aiida_qrnn.core.model.qrnn import DEFAULT_COULOMB
from aiida_qrnn.core.structures import ethylene_glycol_oligomer
from aiida_qrnn.testing.models import flat_batch, scaled_random_model
from aiida_qrnn.testing.structures import ethylene_glycol_liquid

torch.set_num_threads(1)


@pytest.fixture(scope='module')
def box():
    return ethylene_glycol_liquid(12, density_g_cm3=1.1, seed=3)


@pytest.fixture(scope='module')
def clusters():
    return [ethylene_glycol_oligomer(units, seed=units) for units in (1, 2)]


def _coulomb_both_ways(model, images, periodic: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Coulomb energy of the model's own charges: inside the model, and by ``Coulomb.forward`` on the whole list."""
    inputs = flat_batch(images)
    n_systems = len(images)
    cutoff = model.periodic_cutoff if periodic else model.open_cluster_cutoff
    pairs, cell_shifts = neighbor_pairs(inputs['positions'], inputs['system_index'], inputs['cells'], inputs['pbc'],
                                        cutoff)
    output = model(inputs['positions'], inputs['numbers'], inputs['system_index'], inputs['cells'],
                   inputs['total_charge'], pairs, cell_shifts, n_systems, periodic)
    _, _, distances = pair_geometry(inputs['positions'], inputs['cells'], inputs['system_index'], pairs, cell_shifts)
    separate = model.coulomb(output['charges'], pairs, distances, inputs['system_index'], n_systems, periodic)
    return output['energy_coulomb'], separate


@pytest.mark.parametrize('short_range_cutoff', [4.6, 5.5])  # inside the radial AEV cutoff (5.1 Å), and beyond
def test_short_range_removal_over_radial_pairs_equals_whole_list(box, clusters, short_range_cutoff):
    model = scaled_random_model(coulomb={**DEFAULT_COULOMB, 'short_range_cutoff': short_range_cutoff})
    assert model._short_range_in_radial == (short_range_cutoff <= model.aev.radial_cutoff)
    for images, periodic in (([box], True), (clusters, False)):
        fused, separate = _coulomb_both_ways(model, images, periodic)
        assert float(separate.detach().abs().min()) > 1e-3  # a real Coulomb energy, not zero
        np.testing.assert_allclose(fused.detach().numpy(), separate.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_chunked_angular_aev_equals_one_step(box):
    positions = torch.tensor(box.positions, dtype=torch.float64, requires_grad=True)
    system_index = torch.zeros(len(box), dtype=torch.long)
    cells = torch.tensor(box.cell.array, dtype=torch.float64).unsqueeze(0)
    pbc = torch.ones((1, 3), dtype=torch.bool)
    species = torch.tensor([{1: 0, 6: 1, 8: 2}[number] for number in box.numbers])
    results = []
    for chunk in (10**9, 777):
        computer = AEVComputer(3).double()
        computer.cpu_triplet_chunk = chunk
        pair_list = neighbor_list(positions, system_index, cells, pbc, 5.1)
        aev = computer(species, pair_list.pairs, pair_list.vectors, pair_list.distances)[0]
        weights = torch.linspace(-1.0, 1.0, aev.numel(), dtype=torch.float64).view_as(aev)
        (gradient,) = torch.autograd.grad((aev * weights).sum(), positions)
        results.append((aev.detach(), gradient))
    (aev_one, gradient_one), (aev_chunked, gradient_chunked) = results
    assert float(aev_one[:, 48:].abs().max()) > 0.1  # the angular part is there
    torch.testing.assert_close(aev_chunked, aev_one, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gradient_chunked, gradient_one, rtol=1e-12, atol=1e-12)


def test_geometry_and_sums_of_a_batch_equal_each_box_alone(box):
    other = ethylene_glycol_liquid(9, density_g_cm3=0.9, seed=4)
    other.set_cell(other.cell.array @ np.array([[1.0, 0.0, 0.0], [0.2, 1.0, 0.0], [0.1, -0.1, 1.0]]),
                   scale_atoms=True)  # a skewed cell
    inputs = flat_batch([box, other])
    cells = inputs['cells'].clone().requires_grad_(True)
    pairs, cell_shifts = neighbor_pairs(inputs['positions'], inputs['system_index'], cells, inputs['pbc'], 6.0)
    shifts, vectors, distances = pair_geometry(inputs['positions'], cells, inputs['system_index'], pairs, cell_shifts)
    # the plain formula: r_ij = x_j - x_i + S @ cell of the pair's system
    pair_cells = cells[inputs['system_index'][pairs[0]]]
    expected_shifts = torch.einsum('pa,pab->pb', cell_shifts, pair_cells)
    torch.testing.assert_close(shifts, expected_shifts, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(vectors, inputs['positions'][pairs[1]] - inputs['positions'][pairs[0]] + expected_shifts,
                               rtol=1e-12, atol=1e-12)
    values = torch.exp(-distances)  # any pair values
    batched = sum_over_pairs(values, pairs, inputs['system_index'], 2)
    (batched_cell_gradient,) = torch.autograd.grad(batched.sum(), cells)
    for system, atoms in enumerate((box, other)):
        alone = flat_batch([atoms])
        alone_cells = alone['cells'].clone().requires_grad_(True)
        alone_pairs, alone_shifts = neighbor_pairs(alone['positions'], alone['system_index'], alone_cells,
                                                   alone['pbc'], 6.0)
        _, _, alone_distances = pair_geometry(alone['positions'], alone_cells, alone['system_index'], alone_pairs,
                                              alone_shifts)
        alone_sum = sum_over_pairs(torch.exp(-alone_distances), alone_pairs, alone['system_index'], 1)
        (alone_cell_gradient,) = torch.autograd.grad(alone_sum.sum(), alone_cells)
        torch.testing.assert_close(batched[system:system + 1], alone_sum, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(batched_cell_gradient[system], alone_cell_gradient[0], rtol=1e-10, atol=1e-10)


def test_clamped_gaussian_exponents_change_nothing_measurable():
    computer = AEVComputer(3).double()
    distances = torch.linspace(0.5, 5.2, 400, dtype=torch.float64)
    shifts = computer.radial_shifts
    cutoff = torch.where(distances < 5.1, 0.5 * torch.cos(distances * math.pi / 5.1) + 0.5, 0.0)
    plain = 0.25 * torch.exp(-computer.radial_eta * (distances.unsqueeze(1) - shifts) ** 2) * cutoff.unsqueeze(1)
    assert float((-computer.radial_eta * (distances.unsqueeze(1) - shifts) ** 2).min()) < EXP_FLOOR  # clamp active
    torch.testing.assert_close(computer.radial_terms(distances), plain, rtol=1e-12, atol=math.exp(EXP_FLOOR))


def test_coulomb_module_pieces_add_up_to_its_forward(box):
    """long_range_kernel - short_range_kernel and self_energy are exactly what Coulomb.forward sums."""
    coulomb = Coulomb(**DEFAULT_COULOMB).double()
    inputs = flat_batch([box])
    pairs, cell_shifts = neighbor_pairs(inputs['positions'], inputs['system_index'], inputs['cells'], inputs['pbc'],
                                        12.0)
    _, _, distances = pair_geometry(inputs['positions'], inputs['cells'], inputs['system_index'], pairs, cell_shifts)
    charges = torch.sin(torch.arange(len(box), dtype=torch.float64))
    charges = charges - charges.mean()
    r, kernel = coulomb.long_range_kernel(distances, True)
    pair_energy = coulomb.coulomb_constant * charges[pairs[0]] * charges[pairs[1]] * (
        kernel - coulomb.short_range_kernel(r))
    expected = pair_energy.sum() + coulomb.self_energy(charges, inputs['system_index'], 1)
    actual = coulomb(charges, pairs, distances, inputs['system_index'], 1, True)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)
