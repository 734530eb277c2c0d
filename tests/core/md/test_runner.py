"""Physics and contract tests of ``run_md``: conservation, thermostat, barostat, restart, guards."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.lj import LennardJones

from aiida_qrnn.core.md import MDSettings, MDStatus, read_log, read_trajectory, run_md
from aiida_qrnn.core.md.checkpoint import Checkpoint

from .lennard_jones import ARGON, VectorLennardJones

ARGON_A = 5.26  # Å, fcc lattice constant of solid argon


def argon_box(repeat: int = 3, density_scale: float = 1.0) -> Atoms:
    """fcc argon, 4 repeat^3 atoms, lattice expanded so the number density is ``density_scale`` x the solid's."""
    atoms = bulk('Ar', 'fcc', a=ARGON_A, cubic=True).repeat(repeat)
    atoms.set_cell(atoms.cell * density_scale ** (-1 / 3), scale_atoms=True)
    return atoms


def lj() -> VectorLennardJones:
    return VectorLennardJones(**ARGON)


def test_lennard_jones_matches_ase():
    """The test calculator is ASE's smooth LJ: same energy, forces and stress on a strained, rattled box."""
    atoms = argon_box()
    atoms.rattle(0.2, seed=1)
    atoms.set_cell(atoms.cell * [1.0, 1.05, 0.97], scale_atoms=True)
    reference, vectorised = atoms.copy(), atoms.copy()
    reference.calc = LennardJones(smooth=True, **ARGON)
    vectorised.calc = lj()
    assert vectorised.get_potential_energy() == pytest.approx(reference.get_potential_energy(), abs=1e-12)
    np.testing.assert_allclose(vectorised.get_forces(), reference.get_forces(), atol=1e-12)
    np.testing.assert_allclose(vectorised.get_stress(), reference.get_stress(), atol=1e-14)


def test_nve_energy_drift(tmp_path):
    """Velocity Verlet, 108 LJ argon atoms at 80 K, dt 5 fs and 2.5 fs: the total
    energy stays within 2e-5 eV/atom (0.3 % of k_B T) of its start over 1 ps, and the deviation scales as dt^2."""
    deviations = []
    for timestep_fs in (5.0, 2.5):
        settings = MDSettings(ensemble='nve', n_steps=int(1000 / timestep_fs), timestep_fs=timestep_fs,
                              temperature_K=80.0, log_interval=4, trajectory_interval=10_000,
                              checkpoint_interval=10_000)
        result = run_md(settings, argon_box(), lj(), tmp_path / f'dt{timestep_fs}', rng=np.random.default_rng(0))
        assert result.status == MDStatus.FINISHED
        energy = read_log(tmp_path / f'dt{timestep_fs}' / 'md_log.csv')['total_energy_eV']
        deviations.append(np.abs(energy - energy[0]).max() / 108)
    assert deviations[0] < 2e-5
    assert 2.5 < deviations[0] / deviations[1] < 6.0  # second-order integrator: ratio 4 expected


def test_nvt_holds_temperature(tmp_path):
    """Nosé-Hoover chain, 108 LJ argon atoms, target 80 K, tau 100 fs, 10 ps: the mean kinetic temperature of the
    last 7.5 ps is within 4 % of the target (single-step fluctuations are sqrt(2/3N) = 8 %), and the
    conserved extended energy drifts less than 1e-4 eV/atom."""
    settings = MDSettings(ensemble='nvt', n_steps=2000, timestep_fs=5.0, temperature_K=80.0,
                          thermostat_tau_fs=100.0, log_interval=5, trajectory_interval=10_000,
                          checkpoint_interval=10_000)
    result = run_md(settings, argon_box(), lj(), tmp_path, rng=np.random.default_rng(0))
    assert result.status == MDStatus.FINISHED
    log = read_log(tmp_path / 'md_log.csv')
    temperature = log['temperature_K'][len(log['step']) // 4:]
    assert temperature.mean() == pytest.approx(80.0, rel=0.04)
    conserved = log['conserved_energy_eV']
    assert np.abs(conserved - conserved[0]).max() / 108 < 1e-4


def test_npt_density_from_both_sides(tmp_path):
    """MTK NPT of an LJ fluid at T* = 1.5, P* = 1 (180 K, 424 bar for argon): started at 0.6 and 1.25 x the
    solid's density (0.73 and 1.46 g/cm^3), both runs end, after 3 ps, at the same mean density over the last
    3 ps (within 5 %; single frames fluctuate by 5 %), far from both starts."""
    temperature_K = 1.5 * ARGON['epsilon'] / 8.617333262e-5
    pressure_bar = ARGON['epsilon'] / ARGON['sigma'] ** 3 / 6.241509074e-7  # eps/sigma^3 in bar (eV/Å^3 -> bar)
    densities = []
    for scale in (0.4, 0.8):
        settings = MDSettings(ensemble='npt', n_steps=1200, timestep_fs=5.0, temperature_K=temperature_K,
                              pressure_bar=pressure_bar, thermostat_tau_fs=100.0, barostat_tau_fs=500.0,
                              log_interval=5, trajectory_interval=10_000, checkpoint_interval=10_000)
        result = run_md(settings, argon_box(density_scale=scale), lj(), tmp_path / str(scale),
                        rng=np.random.default_rng(1))
        assert result.status == MDStatus.FINISHED
        density = read_log(tmp_path / str(scale) / 'md_log.csv')['density_g_cm3']
        densities.append((density[0], density[len(density) // 2:].mean()))
    (low_start, low_mean), (high_start, high_mean) = densities
    assert low_mean == pytest.approx(high_mean, rel=0.05)
    assert low_start < 0.85 * low_mean and high_start > 1.15 * high_mean


def _restart_settings(ensemble: str, **overrides) -> MDSettings:
    values = {'ensemble': ensemble, 'n_steps': 24, 'timestep_fs': 5.0, 'temperature_K': 100.0,
              'thermostat_tau_fs': 50.0, 'barostat_tau_fs': 200.0, 'pressure_bar': 500.0, 'log_interval': 2,
              'trajectory_interval': 3, 'checkpoint_interval': 5} | overrides
    return MDSettings(**values)


@pytest.mark.parametrize('engine', ['torch', 'ase'])
@pytest.mark.parametrize(('ensemble', 'cell_fluctuations'), [('nve', 'isotropic'), ('nvt', 'isotropic'),
                                                             ('npt', 'isotropic'), ('npt', 'full')])
def test_restart_is_bit_for_bit(tmp_path, ensemble, cell_fluctuations, engine):
    """A run stopped by its walltime after every step and continued 24 times ends in exactly (==, not approx)
    the same positions, momenta, thermostat/barostat state, trajectory and log as an uninterrupted run; frames
    and log rows written after the last checkpoint of an interrupted run are cut back, not duplicated."""
    atoms = argon_box(repeat=2)
    atoms.rattle(0.05, seed=3)
    settings = _restart_settings(ensemble, cell_fluctuations=cell_fluctuations, engine=engine)
    assert run_md(settings, atoms, lj(), tmp_path / 'straight', rng=np.random.default_rng(7)).status == 0

    interrupted = _restart_settings(ensemble, cell_fluctuations=cell_fluctuations, walltime_s=0.0, engine=engine)
    statuses = []
    for call in range(30):
        rng = np.random.default_rng(7) if call == 0 else np.random.default_rng(12345)  # restored from checkpoint
        statuses.append(run_md(interrupted, atoms, lj(), tmp_path / 'restarted', rng=rng).status)
        if statuses[-1] == MDStatus.FINISHED:
            break
    assert statuses.count(MDStatus.STOPPED_WALLTIME) >= 10 and statuses[-1] == MDStatus.FINISHED

    straight = Checkpoint.load(tmp_path / 'straight' / 'checkpoint.npz')
    restarted = Checkpoint.load(tmp_path / 'restarted' / 'checkpoint.npz')
    assert straight.step == restarted.step == 24 and straight.time_fs == restarted.time_fs
    assert straight.integrator_state.keys() == restarted.integrator_state.keys()
    for key, value in straight.integrator_state.items():
        np.testing.assert_array_equal(restarted.integrator_state[key], value, err_msg=key)
    assert straight.rng_state == restarted.rng_state
    assert (tmp_path / 'straight' / 'md_log.csv').read_text() == (tmp_path / 'restarted' / 'md_log.csv').read_text()
    frames_straight = read_trajectory(tmp_path / 'straight' / 'trajectory.h5')
    frames_restarted = read_trajectory(tmp_path / 'restarted' / 'trajectory.h5')
    np.testing.assert_array_equal(frames_straight.steps, np.arange(0, 25, 3))
    for name in ('steps', 'times_fs', 'positions', 'cells', 'velocities'):
        np.testing.assert_array_equal(getattr(frames_restarted, name), getattr(frames_straight, name), err_msg=name)


def test_restart_discards_output_after_checkpoint(tmp_path):
    """Frames and log rows written after the last checkpoint (a run killed between checkpoints) are cut back when
    the run continues, so the final files equal those of an uninterrupted run."""
    atoms = argon_box(repeat=2)
    settings = _restart_settings('nvt')
    run_md(settings, atoms, lj(), tmp_path / 'straight', rng=np.random.default_rng(7))
    run_md(_restart_settings('nvt', n_steps=10), atoms, lj(), tmp_path / 'killed', rng=np.random.default_rng(7))
    # Pretend the first run went on past its last checkpoint (step 10) before it was killed.
    killed_checkpoint = (tmp_path / 'killed' / 'checkpoint.npz').read_bytes()
    run_md(_restart_settings('nvt', n_steps=20), atoms, lj(), tmp_path / 'killed')
    (tmp_path / 'killed' / 'checkpoint.npz').write_bytes(killed_checkpoint)
    run_md(settings, atoms, lj(), tmp_path / 'killed')
    assert (tmp_path / 'straight' / 'md_log.csv').read_text() == (tmp_path / 'killed' / 'md_log.csv').read_text()
    np.testing.assert_array_equal(read_trajectory(tmp_path / 'killed' / 'trajectory.h5').positions,
                                  read_trajectory(tmp_path / 'straight' / 'trajectory.h5').positions)


def test_close_contact_stops_with_its_status(tmp_path):
    """Two atoms pushed to 0.3 Å: the run stops before the first step with UNSTABLE_CLOSE_CONTACT, writes the
    structure and status.json, and leaves no checkpoint."""
    atoms = argon_box(repeat=2)
    atoms.positions[1] = atoms.positions[0] + [0.3, 0.0, 0.0]
    result = run_md(_restart_settings('nvt'), atoms, lj(), tmp_path, rng=np.random.default_rng(0))
    assert result.status == MDStatus.UNSTABLE_CLOSE_CONTACT and result.step == 0
    assert 'atoms 0 and 1 are 0.300 Å apart' in result.message
    assert json.loads((tmp_path / 'status.json').read_text())['name'] == 'UNSTABLE_CLOSE_CONTACT'
    assert (tmp_path / 'unstable.extxyz').is_file() and not (tmp_path / 'checkpoint.npz').exists()


@pytest.mark.parametrize('engine', ['torch', 'ase'])
def test_huge_timestep_runs_away_and_restarts_with_smaller_step(tmp_path, engine):
    """NVE with dt = 100 fs (a fifth of argon's vibration period) heats the box past 3 x 100 K within a few
    steps: UNSTABLE_TEMPERATURE, with the last good checkpoint kept. Continuing from it with dt = 5 fs finishes."""
    atoms = argon_box(repeat=2)
    unstable = _restart_settings('nve', timestep_fs=100.0, checkpoint_interval=1, n_steps=200, engine=engine)
    result = run_md(unstable, atoms, lj(), tmp_path, rng=np.random.default_rng(0))
    assert result.status == MDStatus.UNSTABLE_TEMPERATURE and result.status.is_unstable
    checkpoint = Checkpoint.load(tmp_path / 'checkpoint.npz')
    assert checkpoint.step == result.step - 1
    stable = _restart_settings('nve', timestep_fs=5.0, n_steps=checkpoint.step + 40, engine=engine)
    finished = run_md(stable, atoms, lj(), tmp_path)
    assert finished.status == MDStatus.FINISHED
    assert finished.time_fs == pytest.approx(checkpoint.time_fs + 40 * 5.0)


@pytest.mark.parametrize('engine', ['torch', 'ase'])
def test_exploding_thermostat_is_a_status_not_a_traceback(tmp_path, engine):
    """NVT with dt = 200 fs: the Nosé-Hoover chain variables overflow inside a step, positions become NaN and
    the LJ neighbour list raises; the run reports UNSTABLE_NOT_FINITE instead of crashing."""
    settings = _restart_settings('nvt', timestep_fs=200.0, n_steps=200, engine=engine)
    result = run_md(settings, argon_box(repeat=2), lj(), tmp_path, rng=np.random.default_rng(0))
    assert result.status == MDStatus.UNSTABLE_NOT_FINITE


class _NanAfter(Calculator):
    """Harmonic springs to the starting sites that return NaN energy and forces from the ``n``-th call on: the
    way a model fails when an atom leaves its training domain."""

    implemented_properties = ['energy', 'forces']

    def __init__(self, sites: np.ndarray, n: int) -> None:
        super().__init__()
        self.sites, self.n, self.calls = sites, n, 0

    def calculate(self, atoms=None, properties=None, system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        displacement = self.atoms.positions - self.sites  # (n_atoms, 3)
        scale = np.nan if self.calls >= self.n else 1.0
        self.results['energy'] = scale * 0.5 * float((displacement**2).sum())
        self.results['forces'] = scale * -displacement


@pytest.mark.parametrize('engine', ['torch', 'ase'])
def test_nan_stops_with_its_status(tmp_path, engine):
    atoms = argon_box(repeat=2)
    result = run_md(_restart_settings('nvt', engine=engine), atoms, _NanAfter(atoms.positions.copy(), n=6), tmp_path,
                    rng=np.random.default_rng(0))
    assert result.status == MDStatus.UNSTABLE_NOT_FINITE and result.step == 5


def test_checkpoint_of_other_structure_or_ensemble_is_refused(tmp_path):
    atoms = argon_box(repeat=2)
    run_md(_restart_settings('nvt', n_steps=5), atoms, lj(), tmp_path, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match='ensemble change is a new run'):
        run_md(_restart_settings('npt', n_steps=10), atoms, lj(), tmp_path)
    with pytest.raises(ValueError, match='other atomic numbers'):
        run_md(_restart_settings('nvt', n_steps=10), argon_box(repeat=3), lj(), tmp_path)


@pytest.mark.parametrize(('values', 'match'), [
    ({'ensemble': 'npht'}, 'ensemble must be one of'),
    ({'timestep_fs': 0.0}, 'timestep_fs must be a positive number'),
    ({'n_steps': 2.5}, 'n_steps must be a non-negative integer'),  # 0 steps is allowed (a run already done)
    ({'temperature': 300}, r"unknown MD setting\(s\) \['temperature'\]"),
])
def test_bad_settings_are_named(values, match):
    with pytest.raises(ValueError, match=match):
        MDSettings.from_dict(values)


def test_settings_round_trip_and_paper_defaults():
    settings = MDSettings()
    assert MDSettings.from_dict(settings.to_dict()) == settings
    assert (settings.timestep_fs, settings.temperature_K, settings.thermostat_tau_fs, settings.barostat_tau_fs,
            settings.pressure_bar, settings.trajectory_interval * settings.timestep_fs) == (
        0.5, 300.0, 50.0, 2500.0, 1.01325, 500.0)


@pytest.mark.parametrize(('ensemble', 'cell_fluctuations'), [('nvt', 'isotropic'), ('npt', 'isotropic'),
                                                             ('npt', 'full')])
def test_conserved_energy_matches_ase(ensemble, cell_fluctuations):
    """Our conserved quantity (which avoids ``free_energy``) equals ASE's ``get_conserved_energy`` mid-run."""
    from aiida_qrnn.core.md.integrators import build_integrator, conserved_energy

    atoms = argon_box(repeat=2)
    atoms.calc = lj()
    atoms.rattle(0.05, seed=2)
    settings = _restart_settings(ensemble, cell_fluctuations=cell_fluctuations)
    integrator = build_integrator(settings, atoms)
    integrator.run(5)
    assert conserved_energy(integrator) == pytest.approx(integrator.get_conserved_energy(), abs=1e-12)


def test_ase_run_object_steps_checkpoints_and_resumes(tmp_path):
    """``AseMdRun`` driven by hand: start, step, checkpoint, finish; reopening the folder resumes at that step in the
    same state, and the trajectory keeps only the frames up to the checkpoint."""
    from aiida_qrnn.core.md.runner import AseMdRun

    settings = _restart_settings('nvt', engine='ase')
    run = AseMdRun(settings, argon_box(repeat=2), lj(), tmp_path, rng=np.random.default_rng(0))
    assert (run.md.step, run.md.resumed, run.md.state) == (0, False, None)
    for _ in range(4):
        assert run.step() is None
    run.checkpoint()
    positions = run.atoms.get_positions()
    run.step()
    run.md.writer.append(run.atoms, run.md.step, run.md.time_fs)  # a frame after the checkpoint
    assert run.finish(MDStatus.STOPPED_WALLTIME, 'stopped by hand').step == 5
    resumed = AseMdRun(settings, argon_box(repeat=2), lj(), tmp_path, rng=np.random.default_rng(1))
    assert (resumed.md.step, resumed.md.resumed, resumed.md.writer.n_frames) == (4, True, 0)
    np.testing.assert_array_equal(resumed.atoms.get_positions(), positions)
    assert resumed.run().status == MDStatus.FINISHED
    assert read_trajectory(tmp_path / 'trajectory.h5').steps.tolist() == [6, 9, 12, 15, 18, 21, 24]
