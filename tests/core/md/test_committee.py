"""Committee disagreement during MD: ``committee.csv`` against ``committee_scores``, the driver's stop, restarts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aiida_qrnn.core.dataset import ClusterArrays
from aiida_qrnn.core.md import COMMITTEE_FILE, MDSettings, MDStatus, read_committee_log, read_trajectory, run_md
from aiida_qrnn.core.md.checkpoint import Checkpoint
from aiida_qrnn.core.md.committee import first_exceedance
from aiida_qrnn.core.model.calculator import QRNNCalculator
from aiida_qrnn.core.model.committee import Committee
from aiida_qrnn.core.selection import committee_scores
from aiida_qrnn.core.structures import ethylene_glycol_oligomer
from aiida_qrnn.testing.models import scaled_random_model

torch.set_num_threads(1)  # two cores shared by several processes

#: Short NVT runs of one ethylene glycol molecule (10 atoms, open boundaries); frames where the committee is read.
SETTINGS = {'ensemble': 'nvt', 'n_steps': 20, 'timestep_fs': 0.25, 'temperature_K': 300.0, 'trajectory_interval': 5,
            'log_interval': 5, 'checkpoint_interval': 5, 'committee_interval': 5, 'max_temperature_K': 1e6}


@pytest.fixture(scope='module')
def models() -> dict:
    return {'driver': scaled_random_model(seed=0, scale=1.0),
            'committee': [scaled_random_model(seed=seed, scale=1.0) for seed in (1, 2)]}


def _run(models: dict, workdir, **changes) -> tuple:
    settings = MDSettings(**{**SETTINGS, **changes})
    result = run_md(settings, ethylene_glycol_oligomer(1, seed=0), QRNNCalculator(models['driver']), workdir,
                    rng=np.random.default_rng(7), committee=Committee(models['committee']))
    return result, read_committee_log(workdir / COMMITTEE_FILE)


def test_committee_log_equals_committee_scores_of_the_frames(models, tmp_path):
    """Every ``committee_interval`` steps one row; its rho_f and max force deviation are those that
    ``core.selection.committee_scores`` gives for the trajectory frame of the same step."""
    result, log = _run(models, tmp_path)
    assert result.status == MDStatus.FINISHED
    assert list(log['step']) == [0, 5, 10, 15, 20]
    np.testing.assert_allclose(log['time_fs'], log['step'] * SETTINGS['timestep_fs'])
    frames = read_trajectory(tmp_path / 'trajectory.h5')
    assert list(frames.steps) == list(log['step'])
    n_frames, n_atoms = frames.positions.shape[:2]
    clusters = ClusterArrays(numbers=np.tile(frames.numbers, n_frames), positions=frames.positions.reshape(-1, 3),
                             offsets=np.arange(n_frames + 1) * n_atoms, total_charge=np.zeros(n_frames),
                             pbc=np.zeros((n_frames, 3), bool), cell=np.zeros((n_frames, 3, 3))).validate()
    scores = committee_scores(Committee(models['committee']), clusters, dtype=torch.float64)
    np.testing.assert_allclose(log['rho_f'], scores['rho_f'], rtol=1e-10)
    np.testing.assert_allclose(log['max_force_deviation'], scores['max_force_deviation'], rtol=1e-10)
    assert (np.diff(log['max_force_deviation']) != 0).all()  # the configuration moved between rows


def test_driver_stops_at_the_first_row_above_the_threshold(models, tmp_path):
    """The same run with ``committee_max_force_deviation`` between the largest deviation before some step and the
    deviation at that step stops there, with a checkpoint at that step; the log has no row after it."""
    _, full = _run(models, tmp_path / 'full', n_steps=40)
    deviation = full['max_force_deviation']
    earlier_max = np.maximum.accumulate(deviation)[:-1]  # (rows - 1,) largest deviation before each later row
    record = int(np.flatnonzero(deviation[1:] > earlier_max)[0]) + 1  # first row above all rows before it
    threshold = float(earlier_max[record - 1] + deviation[record]) / 2
    expected = first_exceedance(full, 'max_force_deviation', threshold)
    assert expected == (full['step'][record], deviation[record]) and expected[0] < 40
    result, stopped = _run(models, tmp_path / 'stopped', n_steps=40, committee_max_force_deviation=threshold)
    assert result.status == MDStatus.COMMITTEE_DISAGREEMENT and not result.status.is_unstable
    assert result.step == expected[0]
    assert f'step {expected[0]}' in result.message and 'committee_max_force_deviation' in result.message
    assert list(stopped['step']) == [step for step in full['step'] if step <= expected[0]]
    assert Checkpoint.load(tmp_path / 'stopped' / 'checkpoint.npz').step == expected[0]
    status = json.loads((tmp_path / 'stopped' / 'status.json').read_text())
    assert status['name'] == 'COMMITTEE_DISAGREEMENT' and status['step'] == expected[0]


def test_continued_run_appends_to_the_committee_log(models, tmp_path):
    """10 steps, then the same folder continued to 20: the log is that of an uninterrupted 20-step run."""
    _, uninterrupted = _run(models, tmp_path / 'whole')
    first, part = _run(models, tmp_path / 'parts', n_steps=10)
    assert first.status == MDStatus.FINISHED and list(part['step']) == [0, 5, 10]
    _, continued = _run(models, tmp_path / 'parts')
    assert list(continued['step']) == [0, 5, 10, 15, 20]
    for name, values in uninterrupted.items():
        np.testing.assert_allclose(continued[name], values, rtol=1e-12, err_msg=name)


def test_partial_last_line_is_skipped_and_bad_settings_are_named(models, tmp_path):
    path = tmp_path / COMMITTEE_FILE
    path.write_text('step,time_fs,rho_f,max_force_deviation\n0,0.0,0.5,0.25\n5,2.5,0.7')
    assert list(read_committee_log(path)['rho_f']) == [0.5]
    assert first_exceedance(read_committee_log(path), 'rho_f', 0.1) == (0, 0.5)
    with pytest.raises(ValueError, match='quantity'):
        first_exceedance(read_committee_log(path), 'energy', 0.1)
    with pytest.raises(ValueError, match='committee_interval > 0'):
        MDSettings(committee_max_force_deviation=0.5)
    with pytest.raises(ValueError, match='committee_interval'):
        MDSettings(committee_interval=-1)
    with pytest.raises(ValueError, match='committee_interval'):
        run_md(MDSettings(**{**SETTINGS, 'committee_interval': 0}), ethylene_glycol_oligomer(1),
               QRNNCalculator(models['driver']), tmp_path / 'run', committee=Committee(models['committee']))
