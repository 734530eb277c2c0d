"""``run_md`` on both engines and ``run_md_replicas``: checkpoints across engines, batches equal single runs,
one diverging replica stops alone, and the ensembles' averages agree between the engines."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase.build import bulk

from aiida_qrnn.core.md import MDSettings, MDStatus, read_log, read_trajectory, run_md, run_md_replicas
from aiida_qrnn.core.md.checkpoint import Checkpoint
from aiida_qrnn.core.model.calculator import QRNNCalculator
from aiida_qrnn.testing.models import tiny_md_model
from aiida_qrnn.testing.structures import ethylene_glycol_liquid

from .lennard_jones import ARGON, VectorLennardJones

torch.set_num_threads(1)  # two cores shared by several processes


def argon(seed: int = 0, repeat: int = 2):
    atoms = bulk('Ar', 'fcc', a=5.26, cubic=True).repeat(repeat)
    atoms.rattle(0.05, seed=seed)
    return atoms


def lj() -> VectorLennardJones:
    return VectorLennardJones(**ARGON)


def short(ensemble: str, **changes) -> MDSettings:
    values = {'ensemble': ensemble, 'n_steps': 20, 'timestep_fs': 5.0, 'temperature_K': 100.0,
              'thermostat_tau_fs': 50.0, 'barostat_tau_fs': 200.0, 'pressure_bar': 500.0, 'log_interval': 2,
              'trajectory_interval': 5, 'checkpoint_interval': 10}
    return MDSettings(**(values | changes))


def assert_checkpoints_close(path, reference_path, rtol: float) -> None:
    state, reference = Checkpoint.load(path), Checkpoint.load(reference_path)
    assert (state.step, state.n_frames) == (reference.step, reference.n_frames)
    assert state.integrator_state.keys() == reference.integrator_state.keys()
    for key, value in reference.integrator_state.items():
        np.testing.assert_allclose(state.integrator_state[key], value, rtol=rtol, atol=rtol, err_msg=key)


@pytest.mark.parametrize(('ensemble', 'cell_fluctuations'), [('nvt', 'isotropic'), ('npt', 'isotropic'),
                                                             ('npt', 'full')])
@pytest.mark.parametrize(('first', 'second'), [('ase', 'torch'), ('torch', 'ase')])
def test_checkpoint_continues_on_the_other_engine(tmp_path, ensemble, cell_fluctuations, first, second):
    """10 steps on one engine, the next 10 on the other from its checkpoint: the same state, log and frames (to
    float tolerance) as 20 steps on the first engine alone."""
    settings = short(ensemble, cell_fluctuations=cell_fluctuations, engine=first)
    run_md(settings, argon(), lj(), tmp_path / 'straight', rng=np.random.default_rng(3))
    assert run_md(short(ensemble, cell_fluctuations=cell_fluctuations, engine=first, n_steps=10), argon(), lj(),
                  tmp_path / 'switched', rng=np.random.default_rng(3)).status == MDStatus.FINISHED
    result = run_md(short(ensemble, cell_fluctuations=cell_fluctuations, engine=second), argon(), lj(),
                    tmp_path / 'switched')
    assert result.status == MDStatus.FINISHED and result.step == 20
    assert_checkpoints_close(tmp_path / 'switched' / 'checkpoint.npz', tmp_path / 'straight' / 'checkpoint.npz',
                             rtol=1e-10)
    switched, straight = read_log(tmp_path / 'switched' / 'md_log.csv'), read_log(tmp_path / 'straight' / 'md_log.csv')
    for name, column in straight.items():
        np.testing.assert_allclose(switched[name], column, rtol=1e-9, atol=1e-9, err_msg=name)
    np.testing.assert_allclose(read_trajectory(tmp_path / 'switched' / 'trajectory.h5').positions,
                               read_trajectory(tmp_path / 'straight' / 'trajectory.h5').positions, atol=1e-10)


def test_batched_qrnn_replicas_equal_single_runs(tmp_path):
    """Three ethylene-glycol boxes of different sizes (2, 4, 4 molecules) in one batch, one model call per step,
    NPT with a full cell: each replica's checkpoint, log and frames equal those of the same replica run alone."""
    model = tiny_md_model()
    boxes = [ethylene_glycol_liquid(n, density_g_cm3=0.6, seed=seed) for n, seed in ((2, 0), (4, 0), (4, 2))]
    settings = MDSettings(ensemble='npt', cell_fluctuations='full', n_steps=12, timestep_fs=0.5,
                          temperature_K=300.0, thermostat_tau_fs=20.0, barostat_tau_fs=100.0, pressure_bar=1000.0,
                          log_interval=3, trajectory_interval=4, checkpoint_interval=6, max_temperature_K=3000.0)
    folders = [tmp_path / f'batch{index}' for index in range(3)]
    results = run_md_replicas(settings, boxes, QRNNCalculator(model), folders,
                              rngs=[np.random.default_rng(seed) for seed in range(3)])
    assert [result.status for result in results] == [MDStatus.FINISHED] * 3
    for index, box in enumerate(boxes):
        alone = tmp_path / f'alone{index}'
        assert run_md(settings, box, QRNNCalculator(model), alone, rng=np.random.default_rng(index)).status == 0
        assert_checkpoints_close(folders[index] / 'checkpoint.npz', alone / 'checkpoint.npz', rtol=1e-9)
        batch_log, alone_log = read_log(folders[index] / 'md_log.csv'), read_log(alone / 'md_log.csv')
        for name, column in alone_log.items():
            np.testing.assert_allclose(batch_log[name], column, rtol=1e-9, atol=1e-9, err_msg=name)
    assert json.loads((folders[1] / 'status.json').read_text())['name'] == 'FINISHED'


def test_one_diverging_replica_stops_alone(tmp_path):
    """Three argon boxes in one batch, the middle one with two atoms squeezed to 2.2 Å (LJ repulsion of ~10 eV/Å):
    it heats past its temperature limit within a few steps and stops with UNSTABLE_TEMPERATURE and its own
    ``unstable.extxyz``; the other two finish, equal to runs without it (to rounding: a lone replica's sums skip
    the per-replica scatter)."""
    squeezed = argon(seed=1)
    squeezed.positions[1] = squeezed.positions[0] + [2.2, 0.0, 0.0]
    boxes = [argon(seed=0), squeezed, argon(seed=2)]
    settings = short('nvt', n_steps=30, min_distance_A=1.0)
    folders = [tmp_path / name for name in ('a', 'b', 'c')]
    results = run_md_replicas(settings, boxes, lj(), folders, rngs=[np.random.default_rng(s) for s in range(3)])
    assert results[0].status == results[2].status == MDStatus.FINISHED
    assert results[1].status == MDStatus.UNSTABLE_TEMPERATURE and 0 < results[1].step < 30
    assert (folders[1] / 'unstable.extxyz').is_file() and not (folders[0] / 'unstable.extxyz').exists()
    for index in (0, 2):
        alone = tmp_path / f'alone{index}'
        run_md(settings, boxes[index], lj(), alone, rng=np.random.default_rng(index))
        assert_checkpoints_close(folders[index] / 'checkpoint.npz', alone / 'checkpoint.npz', rtol=1e-12)


def _block_mean_and_error(series: np.ndarray, n_blocks: int = 8) -> tuple[float, float]:
    """Mean and its standard error from block averages (blocks longer than the correlation time)."""
    blocks = np.array_split(series, n_blocks)
    means = np.array([block.mean() for block in blocks])
    return float(series.mean()), float(means.std(ddof=1) / np.sqrt(n_blocks))


@pytest.mark.parametrize(('ensemble', 'quantities'), [('nvt', ('temperature_K', 'potential_energy_eV')),
                                                     ('npt', ('temperature_K', 'volume_A3'))])
def test_averages_agree_between_engines(tmp_path, ensemble, quantities):
    """Nosé-Hoover NVT and isotropic MTK NPT of LJ argon (32 atoms, 90 K, 500 bar), 1 000 steps of 10 fs from
    different velocities on each engine: the means of the last 800 steps (temperature and potential energy, or
    temperature and volume) agree within 4 combined standard errors (block averages), and the temperature is near
    its target."""
    settings = short(ensemble, n_steps=1000, timestep_fs=10.0, temperature_K=90.0, thermostat_tau_fs=200.0,
                     barostat_tau_fs=1000.0, log_interval=5, trajectory_interval=10_000, checkpoint_interval=10_000)
    averages = {}
    for seed, engine in enumerate(('ase', 'torch')):
        folder = tmp_path / engine
        run_md(MDSettings(**(settings.to_dict() | {'engine': engine})), argon(seed=seed), lj(), folder,
               rng=np.random.default_rng(seed))
        log = read_log(folder / 'md_log.csv')
        kept = log['step'] > 200
        averages[engine] = {name: _block_mean_and_error(log[name][kept]) for name in quantities}
    for name in quantities:
        (mean_ase, error_ase), (mean_torch, error_torch) = averages['ase'][name], averages['torch'][name]
        assert abs(mean_ase - mean_torch) < 4 * np.hypot(error_ase, error_torch), (name, averages)
    assert averages['torch']['temperature_K'][0] == pytest.approx(90.0, rel=0.1)


def test_batches_the_engine_cannot_run_are_refused(tmp_path):
    from ase.constraints import FixAtoms

    fixed = argon()
    fixed.set_constraint(FixAtoms(indices=[0]))
    with pytest.raises(ValueError, match=r'structures \[1\] carry ASE constraints'):
        run_md_replicas(short('nvt'), [argon(), fixed], lj(), [tmp_path / 'a', tmp_path / 'b'])
    cluster = argon()
    cluster.pbc = False
    with pytest.raises(ValueError, match='must share their periodicity'):
        run_md_replicas(short('nvt'), [argon(), cluster], lj(), [tmp_path / 'a', tmp_path / 'b'])
    with pytest.raises(ValueError, match='one folder per structure'):
        run_md_replicas(short('nvt'), [argon(), argon()], lj(), [tmp_path / 'a'])
    with pytest.raises(ValueError, match='replica folders must differ'):
        run_md_replicas(short('nvt'), [argon(), argon()], lj(), [tmp_path / 'a', tmp_path / 'a'])


@pytest.mark.parametrize(('values', 'match'), [
    ({'engine': 'numpy'}, 'engine must be one of'),
    ({'max_temperature_K': 0}, 'max_temperature_K must be None or above temperature_K'),
    ({'temperature_K': 1e9}, 'temperature_K=1000000000.0 K is above'),
    ({'timestep_fs': 1e6}, 'timestep_fs=1000000.0 fs is above'),
    ({'pressure_bar': -1e9}, 'pressure_bar=-1000000000.0 bar is beyond'),
])
def test_unphysical_settings_are_named(values, match):
    with pytest.raises(ValueError, match=match):
        MDSettings.from_dict(values)
