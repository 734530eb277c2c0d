"""The dispersion tail correction of periodic cells against a numerical integral of the model's own pair term."""

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from aiida_qrnn.core.model.dispersion import D3Dispersion, tail_integrals
from aiida_qrnn.core.model.qrnn import QRNN, QRNNConfig, evaluate
from aiida_qrnn.testing.structures import ethylene_glycol_liquid


def _dilute_cell() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two C and one O far apart in a 40 Å cube: coordination numbers ~0, so each C6 is the free-atom one."""
    numbers = torch.tensor([6, 6, 8])
    positions = torch.tensor([[0.0, 0.0, 0.0], [20.0, 0.0, 0.0], [0.0, 20.0, 20.0]], dtype=torch.float64)
    return numbers, positions, torch.eye(3, dtype=torch.float64).unsqueeze(0) * 40.0


def test_tail_energy_equals_the_integral_of_the_removed_pair_term():
    """E_tail = (2π/V) Σ_ij ∫ r² [u_unswitched(r) - u_switched(r)] dr, with u from the module's own pair_energies
    for a pair (i, j) (its CN, hence C6, is that of isolated atoms, as in the dilute cell)."""
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # tables without float32 rounding
    try:
        switched = D3Dispersion(elements=[1, 6, 8])
        unswitched = D3Dispersion(cutoff=1e5, switch_width=1.0, elements=[1, 6, 8])
    finally:
        torch.set_default_dtype(default_dtype)
    numbers, _, cell = _dilute_cell()
    pair = torch.tensor([[0], [1]])

    def removed(r: float, z_i: int, z_j: int) -> float:
        species = switched.species_of_number[torch.tensor([z_i, z_j])]
        distance = torch.tensor([r], dtype=torch.float64)
        return r * r * float(unswitched.pair_energies(species, pair, distance) - switched.pair_energies(species, pair,
                                                                                                           distance))

    expected = 0.0
    for z_i in numbers.tolist():
        for z_j in numbers.tolist():
            inside = quad(removed, 10.0, 12.0, args=(z_i, z_j), epsabs=0, epsrel=1e-11)[0]
            beyond = quad(removed, 12.0, np.inf, args=(z_i, z_j), epsabs=0, epsrel=1e-11)[0]
            expected += 2 * math.pi / 40.0**3 * (inside + beyond)
    system_index = torch.zeros(3, dtype=torch.long)
    no_pairs, no_distances = torch.zeros((2, 0), dtype=torch.long), torch.zeros(0, dtype=torch.float64)
    with_tail = switched(numbers, no_pairs, no_distances, system_index, 1, cell)
    without = switched(numbers, no_pairs, no_distances, system_index, 1)
    assert float(without) == 0.0
    assert float(with_tail) == pytest.approx(expected, rel=1e-9)
    assert float(with_tail) < 0


def test_tail_integrals_of_an_undamped_sharp_cutoff():
    """No damping, switch width -> 0: ∫_Rc^∞ r^-4 dr = 1/(3 Rc³)."""
    integrals = tail_integrals(torch.ones(1, 1), 12.0, 1e-9, 0.0)
    assert float(integrals[0, 0]) == pytest.approx(1 / (3 * 12.0**3), rel=1e-8)


def test_tail_pressure_is_the_energy_over_the_volume_and_clusters_are_unaffected():
    """For C6 independent of the volume (dilute cell), E_tail ∝ 1/V, so its pressure -dE/dV = E_tail / V; the
    stress of the model's tail comes from autograd through the strained cell."""
    numbers, positions, cell = _dilute_cell()
    torch.manual_seed(0)
    model = QRNN(QRNNConfig(charge_hidden=(4,), energy_hidden=(4,), coulomb=None)).double()
    untailed = QRNN(QRNNConfig(charge_hidden=(4,), energy_hidden=(4,), coulomb=None,
                               dispersion={'tail_correction': False})).double()
    untailed.load_state_dict(model.state_dict())
    system_index, pbc, charge = torch.zeros(3, dtype=torch.long), torch.ones((1, 3), dtype=torch.bool), torch.zeros(1)
    results = [evaluate(m, positions, numbers, system_index, cell, pbc, charge.double(), compute_stress=True)
               for m in (model, untailed)]
    tail_energy = float(results[0]['energy'] - results[1]['energy'])
    tail_stress = (results[0]['stress'] - results[1]['stress'])[0]
    assert tail_energy < 0
    np.testing.assert_allclose(tail_stress.numpy(), -tail_energy / 40.0**3 * np.eye(3), rtol=1e-9, atol=1e-15)
    open_cell = torch.zeros((1, 3, 3), dtype=torch.float64)
    no_pbc = torch.zeros((1, 3), dtype=torch.bool)
    cluster = [float(evaluate(m, positions, numbers, system_index, open_cell, no_pbc, charge.double())['energy'][0])
               for m in (model, untailed)]
    assert cluster[0] == cluster[1]


def test_ethylene_glycol_liquid_tail_matches_the_documented_numbers():
    """docs/model-long-range.md: about -0.65 meV/atom and -111 bar for liquid EG (1.1 g/cm³) at the 12 Å cutoff."""
    liquid = ethylene_glycol_liquid(8)
    numbers = torch.tensor(liquid.numbers)
    positions = torch.tensor(liquid.positions)
    cell = torch.tensor(liquid.cell.array).unsqueeze(0)
    system_index = torch.zeros(len(liquid), dtype=torch.long)
    dispersion = D3Dispersion(elements=[1, 6, 8]).double()
    from aiida_qrnn.core.model.neighbors import neighbor_list

    nl = neighbor_list(positions, system_index, cell, torch.ones((1, 3), dtype=torch.bool), 12.0)
    tail = float(dispersion(numbers, nl.pairs, nl.distances, system_index, 1, cell)
                 - dispersion(numbers, nl.pairs, nl.distances, system_index, 1))
    per_atom_mev = 1000 * tail / len(liquid)
    assert per_atom_mev == pytest.approx(-0.65, abs=0.03)
