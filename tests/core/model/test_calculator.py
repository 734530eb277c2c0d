"""ASE calculator: consistency with the module, numerical stress, TorchScript, Verlet lists, ModelData, MD."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import units
from ase.calculators.calculator import PropertyNotImplementedError
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet
from ase.stress import voigt_6_to_full_3x3_stress

from aiida_qrnn.core.model.calculator import QRNNCalculator, load_model, save_model
from aiida_qrnn.core.structures import ethylene_glycol_oligomer
from aiida_qrnn.testing.models import evaluate_images, scaled_random_model
from aiida_qrnn.testing.structures import ethylene_glycol_liquid

torch.set_num_threads(1)  # two cores shared by several processes: more threads make this file 5x slower


@pytest.fixture(scope='module')
def model():
    return scaled_random_model(seed=3)


@pytest.fixture
def box():
    return ethylene_glycol_liquid(4, density_g_cm3=1.0, seed=7)


def test_cluster_properties_match_the_module(model):
    molecule = ethylene_glycol_oligomer(2, seed=2)
    molecule.info['total_charge'] = -1
    molecule.calc = QRNNCalculator(model)
    reference = evaluate_images(model, [molecule])
    assert molecule.get_potential_energy() == pytest.approx(reference['energy'].item(), abs=1e-12)
    np.testing.assert_allclose(molecule.get_forces(), reference['forces'].numpy(), atol=1e-12)
    charges = molecule.get_charges()
    assert charges.sum() == pytest.approx(-1.0, abs=1e-12)
    np.testing.assert_allclose(molecule.get_dipole_moment(), charges @ molecule.positions, atol=1e-12)
    with pytest.raises(PropertyNotImplementedError):
        molecule.get_stress()


def test_stress_matches_ase_numerical_stress(model, box):
    box.calc = QRNNCalculator(model)
    stress = box.get_stress(voigt=False)
    numerical = voigt_6_to_full_3x3_stress(box.calc.calculate_numerical_stress(box, d=1e-5))
    np.testing.assert_allclose(stress, numerical, atol=1e-7)
    assert np.abs(stress).max() > 1e-3


def test_script_mode_and_verlet_list_give_the_same_numbers(model, box):
    eager = QRNNCalculator(model)
    scripted = QRNNCalculator(model, mode='script', neighbor_skin_A=1.0)
    box.calc = eager
    energy, forces, stress = box.get_potential_energy(), box.get_forces(), box.get_stress()
    other = box.copy()
    other.calc = scripted
    for _ in range(2):  # the second call reuses the cached list built at cutoff + skin
        assert other.get_potential_energy() == pytest.approx(energy, abs=1e-10)
        np.testing.assert_allclose(other.get_forces(), forces, atol=1e-10)
        np.testing.assert_allclose(other.get_stress(), stress, atol=1e-10)
        other.positions += 0.05
    assert scripted._cached is not None


def test_invalid_options_are_refused(model):
    with pytest.raises(ValueError, match='mode must be'):
        QRNNCalculator(model, mode='fast')
    with pytest.raises(ValueError, match='neighbor_skin_A'):
        QRNNCalculator(model, neighbor_skin_A=-1.0)


def test_model_file_round_trip_is_bit_identical(model, tmp_path, box):
    path = save_model(model, tmp_path / 'model.safetensors')
    loaded = load_model(path)
    first = evaluate_images(model, [box], compute_stress=True)
    second = evaluate_images(loaded, [box], compute_stress=True)
    for name in ('energy', 'forces', 'stress', 'charges'):
        assert torch.equal(first[name], second[name]), name
    (tmp_path / 'bad.safetensors').write_bytes(b'not a model')
    with pytest.raises(ValueError, match=r"bad\.safetensors'"):
        load_model(tmp_path / 'bad.safetensors')


def test_model_data_round_trip_is_bit_identical(aiida_profile, model, tmp_path, box):
    """Weights + config through a stored ModelData node and through its exported file: identical predictions."""
    from aiida_qrnn.data.model import ModelData

    node = ModelData(model.state_dict(), config=model.config.to_dict(), elements=list(model.config.elements)).store()
    reference = evaluate_images(model, [box], compute_stress=True)
    for source in (node, node.export(tmp_path / 'exported.safetensors')):
        box.calc = QRNNCalculator.from_model(source)
        assert box.get_potential_energy() == reference['energy'].item()
        assert np.array_equal(box.get_forces(), reference['forces'].numpy())
        assert np.array_equal(box.get_charges(), reference['charges'].numpy())


def _md(n_steps: int, integrator: str) -> tuple[np.ndarray, list[float], list[float]]:
    """MD of a 40-atom periodic EG box with a default-initialised random model (forces ~0.05 eV/Å: a numerical,
    not a physical, check; the scaled-up test models would boil the box)."""
    model = scaled_random_model(seed=3, scale=1.0)
    box = ethylene_glycol_liquid(4, density_g_cm3=1.1, seed=11)
    box.calc = QRNNCalculator(model, neighbor_skin_A=1.0)
    MaxwellBoltzmannDistribution(box, temperature_K=300, rng=np.random.default_rng(0))
    if integrator == 'langevin':
        dynamics = Langevin(box, timestep=0.5 * units.fs, temperature_K=300, friction=0.01 / units.fs,
                            rng=np.random.default_rng(1))
    else:
        dynamics = VelocityVerlet(box, timestep=0.5 * units.fs)
    total_energies: list[float] = []
    potential_energies: list[float] = []

    def record() -> None:
        total_energies.append(box.get_total_energy())
        potential_energies.append(box.get_potential_energy())

    dynamics.attach(record, interval=10)
    dynamics.run(n_steps)
    return box.positions, total_energies, potential_energies


def test_nve_conserves_energy_for_100_steps():
    """Velocity Verlet, 0.5 fs: forces are the exact gradient, so the total energy stays put while the potential
    energy moves."""
    positions, total_energies, potential_energies = _md(100, 'verlet')
    assert np.isfinite(positions).all() and np.isfinite(total_energies).all()
    assert np.ptp(total_energies) < 2e-3  # eV
    assert np.ptp(potential_energies) > 20 * np.ptp(total_energies)


def test_langevin_1000_steps_without_nan():
    """Langevin at 300 K, 0.5 fs, 1000 steps (issue 3 "Done when")."""
    positions, total_energies, _ = _md(1000, 'langevin')
    assert np.isfinite(positions).all() and np.isfinite(total_energies).all()
