"""The torch MD engine against ASE's integrators: same trajectory from the same state with the same forces."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

from aiida_qrnn.core.md.engine import MDEngine, initial_state
from aiida_qrnn.core.md.forcefields import CalculatorForceField, QRNNForceField
from aiida_qrnn.core.md.integrators import build_integrator, conserved_energy, get_integrator_state
from aiida_qrnn.core.md.settings import MDSettings
from aiida_qrnn.core.model.calculator import QRNNCalculator
from aiida_qrnn.testing.models import tiny_md_model
from aiida_qrnn.testing.structures import ethylene_glycol_liquid

from .lennard_jones import ARGON, VectorLennardJones

torch.set_num_threads(1)  # two cores shared by several processes

ENSEMBLES = [('nve', 'isotropic'), ('nvt', 'isotropic'), ('npt', 'isotropic'), ('npt', 'full')]


def thermal_argon(seed: int = 0) -> Atoms:
    """32 fcc argon atoms, rattled, with 100 K Maxwell-Boltzmann momenta."""
    atoms = bulk('Ar', 'fcc', a=5.26, cubic=True).repeat(2)
    atoms.rattle(0.05, seed=3 + seed)
    atoms.set_momenta(_maxwell_boltzmann(atoms, 100.0, seed))
    return atoms


def _maxwell_boltzmann(atoms: Atoms, temperature_K: float, seed: int) -> np.ndarray:
    copy = atoms.copy()
    MaxwellBoltzmannDistribution(copy, temperature_K=temperature_K, rng=np.random.default_rng(seed))
    return copy.get_momenta()


def settings_for(ensemble: str, cell_fluctuations: str, **changes) -> MDSettings:
    values = {'ensemble': ensemble, 'cell_fluctuations': cell_fluctuations, 'timestep_fs': 5.0,
              'temperature_K': 100.0, 'thermostat_tau_fs': 50.0, 'barostat_tau_fs': 200.0, 'pressure_bar': 500.0}
    return MDSettings(**(values | changes))


def engine_for(settings: MDSettings, atoms_list: list[Atoms], force_field) -> MDEngine:
    states = [initial_state(settings, a.positions, a.get_momenta(), a.cell.array) for a in atoms_list]
    return MDEngine(settings, force_field, [a.get_masses() for a in atoms_list], states)


def assert_states_close(reference: dict, state: dict, rtol: float, atol: float) -> None:
    assert reference.keys() == state.keys()
    for key, value in reference.items():
        np.testing.assert_allclose(state[key], value, rtol=rtol, atol=atol, err_msg=key)


@pytest.mark.parametrize(('ensemble', 'cell_fluctuations'), ENSEMBLES)
def test_engine_reproduces_ase_integrators(ensemble, cell_fluctuations):
    """200 steps of 5 fs (1 ps) of Lennard-Jones argon: every state variable the checkpoint holds, and the
    conserved quantity, agree with ASE's integrator to 1e-9 relative (ASE computes in numpy, the engine in torch;
    rounding differs in the last digits and grows slowly along the chaotic trajectory)."""
    settings = settings_for(ensemble, cell_fluctuations)
    atoms = thermal_argon()
    reference_atoms = atoms.copy()
    reference_atoms.calc = VectorLennardJones(**ARGON)
    reference = build_integrator(settings, reference_atoms)
    engine = engine_for(settings, [atoms], CalculatorForceField(VectorLennardJones(**ARGON), [atoms]))
    for _ in range(200):
        reference.step()
        engine.step()
    assert_states_close(get_integrator_state(reference), engine.get_states()[0], rtol=1e-9, atol=1e-10)
    assert float(engine.conserved_energy()[0]) == pytest.approx(conserved_energy(reference), abs=1e-9)
    if ensemble == 'npt':  # the barostat really moved the cell
        assert not np.allclose(engine.get_states()[0]['cell'], atoms.cell.array, rtol=1e-3)


@pytest.mark.parametrize(('ensemble', 'cell_fluctuations'), [('nvt', 'isotropic'), ('npt', 'full')])
def test_engine_with_qrnn_reproduces_ase_with_qrnn_calculator(ensemble, cell_fluctuations):
    """A tiny QRNN on a 4-molecule ethylene-glycol box: the engine (batched model call, Verlet list with a 1 Å
    skin, stress from the same backward pass) follows ASE driving ``QRNNCalculator`` (exact list every call) over
    40 steps of 0.5 fs. Pairs between the cutoff and cutoff + skin add exact zeros, so only rounding differs."""
    model = tiny_md_model()
    atoms = ethylene_glycol_liquid(4, density_g_cm3=1.0, seed=0)
    atoms.set_momenta(_maxwell_boltzmann(atoms, 300.0, seed=1))
    settings = settings_for(ensemble, cell_fluctuations, timestep_fs=0.5, temperature_K=300.0,
                            thermostat_tau_fs=20.0, barostat_tau_fs=100.0, pressure_bar=1000.0)
    reference_atoms = atoms.copy()
    reference_atoms.calc = QRNNCalculator(model)
    reference = build_integrator(settings, reference_atoms)
    force_field = QRNNForceField.from_calculator(QRNNCalculator(model, neighbor_skin_A=1.0), [atoms])
    engine = engine_for(settings, [atoms], force_field)
    for _ in range(40):
        reference.step()
        engine.step()
    assert_states_close(get_integrator_state(reference), engine.get_states()[0], rtol=1e-8, atol=1e-9)
    assert 1 <= force_field.neighbors.n_builds < 40  # the list was reused, not rebuilt every step
