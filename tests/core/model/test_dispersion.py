"""D3 dispersion: C6 equal to tad-dftd3's, energy equal to a double loop, forces, smooth cutoff, extensivity."""

import math

import numpy as np
import pytest
import tad_dftd3
import tad_mctc
import torch
from ase import Atoms
from ase.build import molecule

from aiida_qrnn.core.model.dispersion import D3Dispersion
from aiida_qrnn.core.structures import ethylene_glycol_oligomer
from aiida_qrnn.core.units import BOHR_TO_ANGSTROM, HARTREE_TO_EV

AU_C6_TO_EV_ANGSTROM6 = HARTREE_TO_EV * BOHR_TO_ANGSTROM**6


def molecules() -> dict[str, Atoms]:
    return {'methane': molecule('CH4'), 'water': molecule('H2O'), 'ethylene glycol': ethylene_glycol_oligomer(1),
            'EG trimer': ethylene_glycol_oligomer(3)}


def all_pairs(n_atoms: int) -> torch.Tensor:
    """Every pair i < j of one open cluster: (2, P) int64."""
    return torch.triu_indices(n_atoms, n_atoms, 1)


def pair_distances(positions: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    return (positions[pairs[1]] - positions[pairs[0]]).norm(dim=1)  # (P,)


def tad_dftd3_c6(atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
    """Coordination numbers and the C6 matrix (eV·Å^6) computed by tad-dftd3 itself, in atomic units inside."""
    numbers = torch.tensor(atoms.numbers)
    positions = torch.tensor(atoms.positions, dtype=torch.float64) / BOHR_TO_ANGSTROM
    reference = tad_dftd3.reference.Reference(dtype=torch.float64)
    cn = tad_mctc.ncoord.cn_d3(numbers, positions, counting_function=tad_dftd3.ncoord.exp_count)
    weights = tad_dftd3.model.weight_references(numbers, cn, reference, tad_dftd3.model.gaussian_weight)
    c6 = tad_dftd3.model.atomic_c6(numbers, weights, reference)
    return cn.numpy(), c6.numpy() * AU_C6_TO_EV_ANGSTROM6


def switch(r: float, cutoff: float, width: float) -> float:
    x = min(max((r - (cutoff - width)) / width, 0.0), 1.0)
    return 1 - 10 * x**3 + 15 * x**4 - 6 * x**5


def brute_force_energy(atoms: Atoms, c6: np.ndarray, model: D3Dispersion) -> float:
    """Double loop of -C6/r^6 · 1/(1 + d (R0/r)^12) · S(r) with tad-dftd3's C6 and R0AB."""
    from tad_mctc.data import radii

    r0_table = radii.VDW_PAIRWISE(dtype=torch.float64).numpy() * BOHR_TO_ANGSTROM
    energy = 0.0
    for i in range(len(atoms)):
        for j in range(i + 1, len(atoms)):
            r = float(np.linalg.norm(atoms.positions[j] - atoms.positions[i]))
            r0 = r0_table[atoms.numbers[i], atoms.numbers[j]]
            damping = 1 / (1 + model.damping * (r0 / r) ** 12)
            energy -= c6[i, j] / r**6 * damping * switch(r, model.cutoff, model.switch_width)
    return energy


def single_energy(model: D3Dispersion, atoms: Atoms, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    positions = torch.tensor(atoms.positions, dtype=dtype)
    pairs = all_pairs(len(atoms))
    numbers = torch.tensor(atoms.numbers)
    return model(numbers, pairs, pair_distances(positions, pairs), torch.zeros(len(atoms), dtype=torch.long), 1)[0]


@pytest.fixture(scope='module')
def model() -> D3Dispersion:
    return D3Dispersion().double()


@pytest.mark.parametrize('name', list(molecules()))
def test_c6_and_cn_equal_tad_dftd3(model, name):
    atoms = molecules()[name]
    expected_cn, expected_c6 = tad_dftd3_c6(atoms)
    pairs = all_pairs(len(atoms))
    cn, c6 = model.coordination_and_c6(
        torch.tensor(atoms.numbers), pairs, pair_distances(torch.tensor(atoms.positions), pairs))
    np.testing.assert_allclose(cn.numpy(), expected_cn, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(c6.numpy(), expected_c6[pairs[0], pairs[1]], rtol=1e-6)


@pytest.mark.parametrize('name', ['methane', 'ethylene glycol', 'EG trimer'])
def test_energy_equals_double_loop(model, name):
    atoms = molecules()[name]
    _, c6 = tad_dftd3_c6(atoms)
    assert float(single_energy(model, atoms)) == pytest.approx(brute_force_energy(atoms, c6, model), rel=1e-6)


def test_batch_of_systems_equals_separate_calls(model):
    """A flat batch of three molecules of different sizes gives each molecule's own energy."""
    parts = [molecules()[name] for name in ('water', 'ethylene glycol', 'methane')]
    offsets = np.cumsum([0] + [len(atoms) for atoms in parts])
    positions = torch.tensor(np.concatenate([atoms.positions for atoms in parts]))
    numbers = torch.tensor(np.concatenate([atoms.numbers for atoms in parts]))
    pairs = torch.cat(
        [all_pairs(len(atoms)) + int(offset) for atoms, offset in zip(parts, offsets[:-1], strict=True)], dim=1)
    system_index = torch.repeat_interleave(torch.arange(3), torch.tensor([len(atoms) for atoms in parts]))
    energies = model(numbers, pairs, pair_distances(positions, pairs), system_index, 3)
    np.testing.assert_allclose(energies.numpy(), [float(single_energy(model, atoms)) for atoms in parts], rtol=1e-12)


def test_forces_equal_finite_differences(model):
    """gradcheck in float64 with the CN dependence of C6 included, and with pairs inside the switching region."""
    atoms = ethylene_glycol_oligomer(1)
    dimer = atoms + atoms.copy()
    dimer.positions[len(atoms):] += [0.0, 0.0, 4.0]
    pairs = all_pairs(len(dimer))
    numbers = torch.tensor(dimer.numbers)
    system_index = torch.zeros(len(dimer), dtype=torch.long)
    switching = D3Dispersion(cutoff=5.5, switch_width=3.0).double()  # many pairs between 2.5 and 5.5 Å

    def energy(positions: torch.Tensor) -> torch.Tensor:
        return switching(numbers, pairs, pair_distances(positions, pairs), system_index, 1)

    positions = torch.tensor(dimer.positions, requires_grad=True)
    assert torch.autograd.gradcheck(energy, (positions,), eps=1e-6, atol=1e-8, rtol=1e-5)


def test_pair_energy_goes_smoothly_to_zero_at_the_cutoff():
    """Two neon atoms: E, dE/dr and d²E/dr² -> 0 at the cutoff; pairs beyond it contribute exactly nothing."""
    model = D3Dispersion(cutoff=8.0, switch_width=2.0).double()
    r = torch.tensor([6.0, 8.0 - 1e-3, 8.0, 9.0, 40.0], dtype=torch.float64, requires_grad=True)
    pairs = torch.stack([torch.arange(0, 10, 2), torch.arange(1, 10, 2)])
    numbers = torch.full((10,), 10)
    energy = model(numbers, pairs, r, torch.arange(10) // 2, 5)
    (slope,) = torch.autograd.grad(energy.sum(), r, create_graph=True)
    (curvature,) = torch.autograd.grad(slope.sum(), r)
    energy, slope = energy.detach(), slope.detach()
    assert float(energy[0]) < 0
    assert abs(float(energy[1])) < 1e-8 * abs(float(energy[0]))  # ~ (R_c - r)^3
    assert abs(float(slope[1])) < 1e-5 * abs(float(slope[0]))
    assert energy[2:].tolist() == [0.0, 0.0, 0.0]
    assert slope[2:].tolist() == [0.0, 0.0, 0.0] and abs(float(curvature[2])) < 1e-12


def test_undamped_tail_is_minus_c6_over_r6():
    """Between damping and switch (r = 7..9 Å for cutoff 12 Å) a C-O pair energy is -C6/r^6 within 1e-4.

    (At 5 Å the damping still takes 0.2 %: 6 (R0/r)^12 with R0 = 2.57 Å.)
    """
    model = D3Dispersion(cutoff=12.0).double()
    r = torch.tensor([7.0, 8.0, 9.0], dtype=torch.float64)
    pairs = torch.stack([torch.arange(0, 6, 2), torch.arange(1, 6, 2)])
    numbers = torch.tensor([6, 8] * 3)
    energy = model(numbers, pairs, r, torch.arange(6) // 2, 3)
    _, c6 = model.coordination_and_c6(numbers, pairs, r)
    np.testing.assert_allclose((energy * r**6 / c6).numpy(), -1.0, atol=1e-4)


def test_extensive_for_molecules_far_apart(model):
    """Two molecules 30 Å apart: the energy is the sum of the parts (both the pair sum and the CNs are local)."""
    first, second = ethylene_glycol_oligomer(2), ethylene_glycol_oligomer(1, seed=1)
    second.positions += [30.0, 0.0, 0.0]
    pair = first + second
    assert float(single_energy(model, pair)) == pytest.approx(
        float(single_energy(model, first)) + float(single_energy(model, second)), rel=1e-12)


def test_translation_and_rotation_invariance(model):
    atoms = ethylene_glycol_oligomer(2)
    energy = float(single_energy(model, atoms))
    moved = atoms.copy()
    moved.rotate(37.0, (1.0, 2.0, -0.5), center='COM')
    moved.positions += [3.0, -7.0, 11.0]
    assert float(single_energy(model, moved)) == pytest.approx(energy, rel=1e-12)


def test_float32_agrees_with_float64():
    atoms = ethylene_glycol_oligomer(3)
    model = D3Dispersion()
    energy32 = single_energy(model.float(), atoms, torch.float32)
    energy64 = single_energy(model.double(), atoms, torch.float64)
    assert energy32.dtype == torch.float32
    assert float(energy32) == pytest.approx(float(energy64), rel=1e-5)


def test_torchscript_matches_eager(model):
    atoms = ethylene_glycol_oligomer(2)
    pairs = all_pairs(len(atoms))
    args = (torch.tensor(atoms.numbers), pairs, pair_distances(torch.tensor(atoms.positions), pairs),
            torch.zeros(len(atoms), dtype=torch.long), 1)
    scripted = torch.jit.script(model)
    assert scripted.cutoff == model.cutoff == 12.0
    torch.testing.assert_close(scripted(*args), model(*args), rtol=1e-14, atol=0)


def test_tables_are_constants_not_weights():
    """The D3 tables are buffers built once (moved with .to), not entries of the state_dict."""
    model = D3Dispersion(elements=[1, 6, 8])
    assert model.state_dict() == {}
    assert model.reference_c6.shape == (3 * 5, 3 * 5)  # C has 5 reference systems
    assert model.double().reference_c6.dtype == torch.float64


def test_unsupported_elements():
    """An element outside the tables gives NaN for its system only, and check_numbers names it."""
    model = D3Dispersion(elements=[1, 6, 8]).double()
    numbers = torch.tensor([6, 1, 7, 8])
    system_index = torch.tensor([0, 0, 1, 1])
    pairs = torch.tensor([[0, 2], [1, 3]])
    energy = model(numbers, pairs, torch.tensor([1.1, 1.3], dtype=torch.float64), system_index, 2)
    assert math.isfinite(float(energy[0])) and math.isnan(float(energy[1]))
    with pytest.raises(ValueError, match=r'atomic numbers \[7\]'):
        model.check_numbers(numbers)
    model.check_numbers(torch.tensor([1, 6, 8]))


@pytest.mark.parametrize(('options', 'parameter'), [
    ({'cutoff': -1.0}, 'cutoff'), ({'switch_width': 20.0}, 'switch_width'), ({'damping': 0.0}, 'damping'),
    ({'elements': [1, 95]}, 'elements'), ({'elements': []}, 'elements'),
])
def test_bad_options_name_the_parameter(options, parameter):
    with pytest.raises(ValueError, match=parameter):
        D3Dispersion(**options)
