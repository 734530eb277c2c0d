"""The ZBL repulsive prior: finite differences, its size at 0.3 Å, zero at bonded distances, and that it keeps a
random-weight model from fusing two molecules."""

import itertools
import math

import pytest
import torch

from aiida_qrnn.core.model.calculator import load_model, save_model
from aiida_qrnn.core.model.qrnn import QRNN, QRNNConfig, evaluate
from aiida_qrnn.core.model.repulsion import ZBLRepulsion
from aiida_qrnn.core.structures import ethylene_glycol_oligomer
from aiida_qrnn.core.units import COULOMB_CONSTANT


def _pair_energy(prior: ZBLRepulsion, z_i: int, z_j: int, r: float) -> float:
    numbers = torch.tensor([z_i, z_j])
    return float(prior.pair_energies(numbers, torch.tensor([[0], [1]]), torch.tensor([r], dtype=torch.float64))[0])


def test_two_atoms_at_a_third_of_an_angstrom_repel_strongly_and_bonded_ones_not_at_all():
    prior = ZBLRepulsion()
    assert _pair_energy(prior, 6, 8, 0.3) > 50.0  # eV; bare k_e Z_i Z_j / r = 2304 eV
    assert _pair_energy(prior, 1, 1, 0.3) > 5.0
    # C-O, C-H, O-H, H-H at their bond lengths and above 0.8 x covalent radius sums: exactly zero
    for z_i, z_j, r in [(6, 8, 1.14), (6, 1, 0.86), (8, 1, 0.78), (1, 1, 0.5), (6, 6, 1.53)]:
        assert _pair_energy(prior, z_i, z_j, r) == 0.0
    # below 0.5 x the sum it is the bare ZBL: k_e Z²/r φ(r/a)
    a = 0.8854 * 0.529177210903 / (2 * 6**0.23)
    x = 0.3 / a
    phi = sum(c * math.exp(-e * x) for c, e in
              [(0.18175, 3.19980), (0.50986, 0.94229), (0.28022, 0.40290), (0.02817, 0.20162)])
    assert _pair_energy(prior, 6, 6, 0.3) == pytest.approx(COULOMB_CONSTANT * 36 / 0.3 * float(phi), rel=1e-12)


def test_repulsive_at_every_distance_and_forces_equal_finite_differences():
    prior = ZBLRepulsion()
    distances = torch.linspace(0.05, 1.5, 300, dtype=torch.float64)
    energies = [_pair_energy(prior, 6, 8, float(r)) for r in distances]
    assert all(later <= earlier for earlier, later in itertools.pairwise(energies))
    numbers = torch.tensor([6, 8, 1, 1])
    positions = torch.tensor([[0.0, 0.0, 0.0], [0.7, 0.1, 0.0], [0.2, 0.5, 0.1], [0.5, 0.4, 0.3]],
                             dtype=torch.float64, requires_grad=True)
    pairs = torch.triu_indices(4, 4, 1)
    system_index = torch.zeros(4, dtype=torch.long)

    def energy(x: torch.Tensor) -> torch.Tensor:
        return prior(numbers, pairs, (x[pairs[1]] - x[pairs[0]]).norm(dim=1), system_index, 1)

    assert float(energy(positions)) > 0
    assert torch.autograd.gradcheck(energy, (positions,))


def test_model_config_round_trip_and_old_configs_unchanged():
    config = QRNNConfig(repulsion={'inner': 0.4, 'outer': 0.8})
    assert QRNNConfig.from_dict(config.to_dict()) == config
    assert 'repulsion' not in QRNNConfig().to_dict()  # files of models without the prior stay as they were
    with pytest.raises(ValueError, match='inner'):
        QRNN(QRNNConfig(repulsion={'inner': 0.9, 'outer': 0.8}))


def test_prior_round_trips_through_a_model_file(tmp_path):
    torch.manual_seed(0)
    model = QRNN(QRNNConfig(charge_hidden=(8,), energy_hidden=(8,), repulsion={'inner': 0.4}))
    loaded = load_model(save_model(model, tmp_path / 'model.pt'))
    assert loaded.config.repulsion == {'inner': 0.4} and loaded.repulsion is not None
    assert loaded.repulsion.inner == 0.4 and loaded.repulsion.outer == 0.8


def test_prior_keeps_two_molecules_of_a_random_model_from_fusing():
    """Damped descent (deterministic, 150 steps) of two EG molecules 3 Å apart under a random-weight model: without
    the prior atoms end up ~0.1 Å apart; with it the closest pair stays above 0.6 Å. Same weights in both runs."""
    first = ethylene_glycol_oligomer(1, seed=0)
    second = first.copy()
    second.positions += [3.0, 0.0, 0.0]
    cluster = first + second
    numbers = torch.tensor(cluster.numbers)
    args = (torch.zeros(len(cluster), dtype=torch.long), torch.zeros((1, 3, 3), dtype=torch.float64),
            torch.zeros((1, 3), dtype=torch.bool), torch.zeros(1, dtype=torch.float64))
    closest = {}
    torch.manual_seed(0)
    without = QRNN(QRNNConfig(charge_hidden=(32,), energy_hidden=(32, 32))).double()
    for repulsion in (None, {}):
        model = QRNN(QRNNConfig(charge_hidden=(32,), energy_hidden=(32, 32), repulsion=repulsion)).double()
        model.load_state_dict(without.state_dict())
        positions = torch.tensor(cluster.positions)
        velocity = torch.zeros_like(positions)
        for _ in range(150):
            forces = evaluate(model, positions, numbers, *args)['forces'].detach()
            velocity = 0.9 * velocity + 0.01 * forces
            positions = positions + velocity.clamp(-0.05, 0.05)
        distances = torch.cdist(positions, positions) + 100 * torch.eye(len(cluster), dtype=torch.float64)
        closest[repulsion is not None] = float(distances.min())
    assert closest[False] < 0.4, closest
    assert closest[True] > 0.6, closest
