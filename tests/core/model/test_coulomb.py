"""Coulomb term: brute force for clusters, Ewald for periodic boxes, finite differences, smoothness, TorchScript."""

import math

import numpy as np
import pytest
import torch
import vesin
from ase.build import bulk

from aiida_qrnn.core.model.coulomb import Coulomb
from aiida_qrnn.core.units import COULOMB_CONSTANT

NACL_MADELUNG = 1.747564594633  # rock salt, per ion pair in units of k_e e²/r_nn (Madelung constant)


def periodic_pairs(positions: np.ndarray, cell: np.ndarray, cutoff: float) -> tuple[torch.Tensor, torch.Tensor]:
    """vesin half list of a fully periodic cell: pairs (2, P) int64 and Cartesian shifts (P, 3) float64."""
    i, j, cell_shifts = vesin.NeighborList(cutoff=cutoff, full_list=False).compute(
        points=positions, box=cell, periodic=True, quantities='ijS',
    )
    pairs = torch.from_numpy(np.stack([i, j]).astype(np.int64))  # (2, P)
    shifts = torch.from_numpy(cell_shifts.astype(np.float64) @ cell)  # (P, 3)
    return pairs, shifts


def all_pairs(n_atoms: int) -> torch.Tensor:
    """Every pair i < j of one open cluster: (2, P) int64."""
    return torch.triu_indices(n_atoms, n_atoms, 1)


def pair_distances(positions: torch.Tensor, pairs: torch.Tensor, shifts: torch.Tensor | None = None) -> torch.Tensor:
    """|r_j - r_i + shift| (P,), differentiable with respect to positions."""
    vectors = positions[pairs[1]] - positions[pairs[0]]  # (P, 3)
    if shifts is not None:
        vectors = vectors + shifts.to(positions.dtype)
    return vectors.norm(dim=1)


def ewald_energy(
    positions: torch.Tensor, charges: torch.Tensor, cell: np.ndarray, accuracy: float = 1e-10,
) -> torch.Tensor:
    """Reference Ewald energy (eV) of neutral point charges in a periodic cell, differentiable w.r.t. positions.

    Real-space erfc sum over a vesin list plus the reciprocal sum over all k with exp(-k²/4a²) > ``accuracy``.
    """
    volume = abs(np.linalg.det(cell))
    alpha = math.sqrt(math.pi) * (len(charges) / volume**2) ** (1 / 6)  # balances real and reciprocal cost
    real_cutoff = math.sqrt(-math.log(accuracy)) / alpha
    pairs, shifts = periodic_pairs(positions.detach().numpy(), cell, real_cutoff)
    r = pair_distances(positions, pairs, shifts)
    real = (charges[pairs[0]] * charges[pairs[1]] * torch.erfc(alpha * r) / r).sum()

    k_max = 2 * alpha * math.sqrt(-math.log(accuracy))
    reciprocal_cell = 2 * math.pi * np.linalg.inv(cell).T  # rows b_i with a_i·b_j = 2π δ_ij
    n_max = [math.ceil(k_max * np.linalg.norm(cell[axis]) / (2 * math.pi)) for axis in range(3)]
    grid = np.stack(np.meshgrid(*[np.arange(-n, n + 1) for n in n_max], indexing='ij'), -1).reshape(-1, 3)
    k_vectors = grid @ reciprocal_cell
    k2 = (k_vectors**2).sum(1)
    keep = (k2 > 0) & (k2 <= k_max**2)
    k_vectors = torch.from_numpy(k_vectors[keep])  # (K, 3)
    k2 = torch.from_numpy(k2[keep])  # (K,)
    phases = positions.to(torch.float64) @ k_vectors.T  # (atoms, K)
    structure_cos = (charges[:, None] * torch.cos(phases)).sum(0)  # (K,)
    structure_sin = (charges[:, None] * torch.sin(phases)).sum(0)  # (K,)
    reciprocal = (2 * math.pi / volume) * (
        torch.exp(-k2 / (4 * alpha**2)) / k2 * (structure_cos**2 + structure_sin**2)
    ).sum()
    self_term = -alpha / math.sqrt(math.pi) * (charges**2).sum()
    return COULOMB_CONSTANT * (real + reciprocal + self_term)


def random_cluster(n_atoms: int, seed: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions (n, 3) in a 6 Å box with no pair closer than 0.8 Å, and neutral random charges (n,)."""
    rng = np.random.default_rng(seed)
    positions = [rng.uniform(0, 6, 3)]
    while len(positions) < n_atoms:
        candidate = rng.uniform(0, 6, 3)
        if np.linalg.norm(np.array(positions) - candidate, axis=1).min() > 0.8:
            positions.append(candidate)
    charges = rng.normal(scale=0.5, size=n_atoms)
    charges -= charges.mean()
    return torch.tensor(np.array(positions), dtype=dtype), torch.tensor(charges, dtype=dtype)


def brute_force_energy(positions: np.ndarray, charges: np.ndarray, short_range_cutoff: float) -> float:
    """Double loop over all pairs: k_e q_i q_j (1 - f_sr(r)) / r."""
    energy = 0.0
    for i in range(len(charges)):
        for j in range(i + 1, len(charges)):
            r = np.linalg.norm(positions[j] - positions[i])
            envelope = 0.0
            if r < short_range_cutoff:
                envelope = math.exp(1 - 1 / (1 - (r / short_range_cutoff) ** 2))
            energy += COULOMB_CONSTANT * charges[i] * charges[j] * (1 - envelope) / r
    return energy


def nacl(repeat: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Rock salt, a = 5.64 Å, cubic cell repeated ``repeat`` times: positions, charges ±1, cell."""
    atoms = bulk('NaCl', 'rocksalt', a=5.64, cubic=True).repeat(repeat)
    charges = torch.tensor([1.0 if symbol == 'Na' else -1.0 for symbol in atoms.get_chemical_symbols()])
    return torch.tensor(atoms.positions), charges.to(torch.float64), np.array(atoms.cell)


def dsf_energy(model: Coulomb, positions: torch.Tensor, charges: torch.Tensor, cell: np.ndarray) -> torch.Tensor:
    """Periodic energy of one cell through a vesin half list at the model's cutoff."""
    pairs, shifts = periodic_pairs(positions.detach().numpy(), cell, model.cutoff)
    distances = pair_distances(positions, pairs, shifts)
    return model(charges, pairs, distances, torch.zeros(len(charges), dtype=torch.long), 1, True)[0]


@pytest.mark.parametrize('short_range_cutoff', [0.0, 4.6])
def test_open_clusters_equal_brute_force(short_range_cutoff):
    """A batch of two clusters of different size: each energy is the double-loop sum, with or without removal."""
    (positions_a, charges_a), (positions_b, charges_b) = random_cluster(7, 0), random_cluster(12, 1)
    positions = torch.cat([positions_a, positions_b])
    charges = torch.cat([charges_a, charges_b])
    pairs = torch.cat([all_pairs(7), all_pairs(12) + 7], dim=1)
    system_index = torch.tensor([0] * 7 + [1] * 12)
    model = Coulomb(short_range_cutoff=short_range_cutoff)
    energy = model(charges, pairs, pair_distances(positions, pairs), system_index, 2, False)
    expected = [brute_force_energy(p.numpy(), q.numpy(), short_range_cutoff)
                for p, q in ((positions_a, charges_a), (positions_b, charges_b))]
    np.testing.assert_allclose(energy.numpy(), expected, rtol=1e-12)


def test_short_range_removal_is_local():
    """Beyond short_range_cutoff the kernel is bare Coulomb; below it the removed part is finite and -> full at 0."""
    r = torch.tensor([0.01, 1.0, 3.0, 4.5, 4.6, 5.0, 9.0], dtype=torch.float64)
    pairs = torch.stack([torch.arange(0, 14, 2), torch.arange(1, 14, 2)])
    charges = torch.ones(14, dtype=torch.float64)
    system_index = torch.arange(14) // 2
    screened = Coulomb(short_range_cutoff=4.6)(charges, pairs, r, system_index, 7, False)
    bare = COULOMB_CONSTANT / r
    np.testing.assert_allclose(screened[4:].numpy(), bare[4:].numpy(), rtol=1e-14)
    assert 0 < screened[0] < 1e-2 * bare[0]  # ~ k_e r / r_sr², vanishes at short range
    assert torch.all(screened[:4] < bare[:4])


def test_ewald_reference_reproduces_madelung():
    """The test's own Ewald sum gives the rock-salt Madelung energy (validates the reference below)."""
    positions, charges, cell = nacl(2)
    expected = -COULOMB_CONSTANT * NACL_MADELUNG / (5.64 / 2) * len(charges) / 2
    assert float(ewald_energy(positions, charges, cell)) == pytest.approx(expected, abs=1e-6)


def test_dsf_converges_to_ewald_for_rock_salt():
    """Rock salt at alpha = 0.2/Å: |E_DSF - E_Ewald| per ion falls with the cutoff, below 1e-5 eV at 20 Å.

    Measured (eV/ion): 3.9e-2 (10 Å), 4.2e-3 (12 Å), 1.2e-4 (15 Å), 2.4e-7 (20 Å).
    """
    positions, charges, cell = nacl(2)
    reference = float(ewald_energy(positions, charges, cell))
    errors = [
        abs(float(dsf_energy(Coulomb(cutoff=cutoff, short_range_cutoff=0.0), positions, charges, cell)) - reference)
        / len(charges)
        for cutoff in (10.0, 12.0, 15.0, 20.0)
    ]
    assert errors == sorted(errors, reverse=True)
    assert errors[1] < 1e-2
    assert errors[3] < 1e-5


def test_dsf_primitive_triclinic_cell_with_self_images():
    """Two-ion fcc primitive cell (triclinic, 4 Å): every pair is an image pair, many of an ion with itself."""
    atoms = bulk('NaCl', 'rocksalt', a=5.64)
    charges = torch.tensor([1.0, -1.0], dtype=torch.float64)
    positions = torch.tensor(atoms.positions)
    energy = dsf_energy(Coulomb(cutoff=20.0, short_range_cutoff=0.0), positions, charges, np.array(atoms.cell))
    assert float(energy) == pytest.approx(-COULOMB_CONSTANT * NACL_MADELUNG / (5.64 / 2), abs=1e-5)


def test_dsf_forces_of_a_polar_box_are_close_to_ewald():
    """A box of 64 rigid SPC-charged waters at 1 g/cm³, default settings: force RMSE against Ewald < 2 %.

    This is the error of the damped shifted force itself (the neglected reciprocal part): measured 1.1 % of the
    RMS force here, 2.1 % for 512 waters; docs/model-long-range.md has the table.
    """
    rng = np.random.default_rng(3)
    water = np.array([[0.0, 0.0, 0.0], [0.0, 0.8165, 0.5774], [0.0, -0.8165, 0.5774]])
    molecules = []
    for index in np.ndindex(4, 4, 4):
        rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        molecules.append(water @ rotation.T + np.array(index) * 3.104 + rng.normal(scale=0.2, size=3))
    positions = torch.tensor(np.concatenate(molecules), requires_grad=True)
    charges = torch.tensor(np.tile([-0.82, 0.41, 0.41], 64))
    cell = np.eye(3) * 4 * 3.104
    reference = -torch.autograd.grad(ewald_energy(positions, charges, cell), positions)[0]
    forces = -torch.autograd.grad(dsf_energy(Coulomb(short_range_cutoff=0.0), positions, charges, cell), positions)[0]
    relative_rmse = (forces - reference).pow(2).mean().sqrt() / reference.pow(2).mean().sqrt()
    assert relative_rmse < 0.02


@pytest.mark.parametrize('periodic', [False, True])
def test_forces_equal_finite_differences(periodic):
    """Autograd through the distances matches central differences (gradcheck, float64), removal included."""
    positions, charges = random_cluster(6, 2)
    pairs = all_pairs(6)
    model = Coulomb(cutoff=5.0, short_range_cutoff=3.0)

    def energy(positions: torch.Tensor) -> torch.Tensor:
        return model(charges, pairs, pair_distances(positions, pairs), torch.zeros(6, dtype=torch.long), 1, periodic)

    assert torch.autograd.gradcheck(energy, (positions.requires_grad_(),), eps=1e-6, atol=1e-7, rtol=1e-6)


def test_dsf_pair_energy_and_force_vanish_smoothly_at_the_cutoff():
    """A +/- pair: energy and its slope -> 0 as r -> R_c from below, and both are exactly 0 from R_c on."""
    model = Coulomb(cutoff=10.0, short_range_cutoff=4.6)
    r = torch.tensor([10.0 - 1e-3, 10.0 - 1e-6, 10.0, 10.5], dtype=torch.float64, requires_grad=True)
    pairs = torch.stack([torch.arange(0, 8, 2), torch.arange(1, 8, 2)])
    charges = torch.tensor([1.0, -1.0] * 4, dtype=torch.float64)
    energy = model(charges, pairs, r, torch.arange(8) // 2, 4, True)
    self_energy = -COULOMB_CONSTANT * (math.erfc(2.0) / 20.0 + 0.2 / math.sqrt(math.pi)) * 2
    pair_energy = energy - self_energy
    (slope,) = torch.autograd.grad(pair_energy.sum(), r)
    pair_energy = pair_energy.detach()
    assert abs(float(pair_energy[0])) < 1e-7 and abs(float(slope[0])) < 1e-4  # quadratic / linear in R_c - r
    assert abs(float(pair_energy[1])) < 1e-13 and abs(float(slope[1])) < 1e-7
    assert float(pair_energy[2]) == float(pair_energy[3]) == 0.0
    assert float(slope[2]) == float(slope[3]) == 0.0


def test_translation_invariance_of_a_periodic_box():
    """Shifting every ion (and wrapping back into the cell) leaves the periodic energy unchanged."""
    positions, charges, cell = nacl(1)
    positions = positions + torch.tensor(np.random.default_rng(4).normal(scale=0.1, size=positions.shape))
    model = Coulomb()
    shifted = torch.remainder(positions + torch.tensor([1.3, -2.1, 0.7], dtype=torch.float64), 5.64)
    assert float(dsf_energy(model, shifted, charges, cell)) == pytest.approx(
        float(dsf_energy(model, positions, charges, cell)), rel=1e-12)


def test_translation_invariance_of_a_cluster():
    positions, charges = random_cluster(9, 5)
    pairs = all_pairs(9)
    model = Coulomb()
    system_index = torch.zeros(9, dtype=torch.long)
    energy = model(charges, pairs, pair_distances(positions, pairs), system_index, 1, False)
    moved = positions + torch.tensor([10.0, -3.0, 7.5], dtype=torch.float64)
    assert float(model(charges, pairs, pair_distances(moved, pairs), system_index, 1, False)) == pytest.approx(
        float(energy), rel=1e-12)


@pytest.mark.parametrize('periodic', [False, True])
def test_float32_agrees_with_float64(periodic):
    positions, charges = random_cluster(10, 6)
    pairs = all_pairs(10)
    system_index = torch.zeros(10, dtype=torch.long)
    model = Coulomb(cutoff=6.0)
    energies = [
        model(charges.to(dtype), pairs, pair_distances(positions.to(dtype), pairs), system_index, 1, periodic)
        for dtype in (torch.float32, torch.float64)
    ]
    assert energies[0].dtype == torch.float32
    np.testing.assert_allclose(energies[0].double().numpy(), energies[1].numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('periodic', [False, True])
def test_torchscript_matches_eager(periodic):
    positions, charges = random_cluster(8, 7)
    pairs = all_pairs(8)
    system_index = torch.tensor([0] * 3 + [1] * 5)
    pairs = pairs[:, system_index[pairs[0]] == system_index[pairs[1]]]  # no pair crosses systems
    model = Coulomb(cutoff=6.0)
    scripted = torch.jit.script(model)
    args = (charges, pairs, pair_distances(positions, pairs), system_index, 2, periodic)
    assert scripted.cutoff == model.cutoff == 6.0
    torch.testing.assert_close(scripted(*args), model(*args), rtol=1e-14, atol=0)


@pytest.mark.parametrize(('options', 'parameter'), [
    ({'cutoff': 0.0}, 'cutoff'), ({'cutoff': math.inf}, 'cutoff'), ({'dsf_alpha': -0.1}, 'dsf_alpha'),
    ({'short_range_cutoff': 20.0}, 'short_range_cutoff'),
])
def test_bad_options_name_the_parameter(options, parameter):
    with pytest.raises(ValueError, match=parameter):
        Coulomb(**options)
