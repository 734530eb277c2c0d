"""``aiida-qrnn-exec analyse`` in a job folder: both tasks on an H5MD file of the MD engine's writer, and bad input
refused with the file named."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from aiida_qrnn.cli.exec import COMMANDS, cli
from aiida_qrnn.core.analysis.density import density_g_cm3, equilibrated_density
from aiida_qrnn.core.analysis.frames import FrameReader
from aiida_qrnn.core.analysis.properties import replica_properties
from aiida_qrnn.jobs.analysis import JOB, REPLICA_FILES, SEPARATOR
from aiida_qrnn.jobs.folder import ERROR_FILE, EXIT_BAD_INPUT
from aiida_qrnn.testing.trajectories import write_liquid_replica


def _folder(tmp_path, task: str, labels=('n001_r00',), write_replicas: bool = True, **overrides):
    for index, label in enumerate(labels if write_replicas else ()):
        write_liquid_replica(tmp_path / JOB.inputs['replicas'] / label, seed=index, n_frames=24, n_molecules=6)
    parameters = {'task': task, 'temperature_K': 300.0, 'analysis': {},
                  'replicas': {label: {'n_units': 1} for label in labels}, **overrides}
    (tmp_path / JOB.inputs['parameters']).write_text(json.dumps(parameters))
    return tmp_path


def _run(folder, monkeypatch):
    monkeypatch.chdir(folder)
    return CliRunner().invoke(cli, ['analyse'])


def test_analyse_is_registered():
    assert COMMANDS['analyse'] == 'aiida_qrnn.jobs.analysis:analyse'


def test_properties_of_two_replicas_equal_the_in_process_analysis(tmp_path, monkeypatch):
    folder = _folder(tmp_path, 'properties', labels=('n001_r00', 'n001_r01'))
    result = _run(folder, monkeypatch)
    assert result.exit_code == 0, result.output
    results = json.loads((folder / JOB.outputs['results']).read_text())
    assert sorted(results) == ['n001_r00', 'n001_r01']
    with np.load(folder / JOB.outputs['distributions']) as stored:
        arrays = {name: stored[name] for name in stored.files}
    for label in results:
        replica = folder / JOB.inputs['replicas'] / label
        with np.load(replica / REPLICA_FILES['npt_log']) as log:
            expected, distributions = replica_properties(
                dict(log), FrameReader.open(replica / REPLICA_FILES['trajectory']), temperature_K=300.0, n_units=1,
                vdos_trajectory=FrameReader.open(replica / REPLICA_FILES['vdos']))
        assert results[label] == pytest.approx(expected, nan_ok=True)
        assert results[label]['heat_capacity_quantum'] is not None  # the VDOS file was used
        for name, values in distributions.items():
            for array_name, array in values.items():
                np.testing.assert_array_equal(arrays[SEPARATOR.join((label, name, array_name))], array)
    assert results['n001_r00']['density'] != results['n001_r01']['density']


def test_density_frame_is_the_frame_closest_to_the_mean(tmp_path, monkeypatch):
    folder = _folder(tmp_path, 'density_frame')
    result = _run(folder, monkeypatch)
    assert result.exit_code == 0, result.output
    selected = json.loads((folder / JOB.outputs['results']).read_text())['n001_r00']
    replica = folder / JOB.inputs['replicas'] / 'n001_r00'
    frames = FrameReader.open(replica / REPLICA_FILES['trajectory'])
    with np.load(replica / REPLICA_FILES['npt_log']) as log:
        steps, volumes = log['step'], log['volume_A3']
    mass = frames.masses.sum()
    production = equilibrated_density(volumes, mass)
    assert selected['npt_mean_density_g_cm3'] == pytest.approx(production.mean_g_cm3, rel=1e-12)
    window = frames.steps >= steps[len(steps) - production.n_samples]  # frames of the production window
    densities = density_g_cm3(mass, np.abs(np.linalg.det(frames.cells)))
    distance = np.abs(densities - production.mean_g_cm3)
    assert window[selected['frame']] and distance[selected['frame']] == distance[window].min()
    assert distance[window].min() < np.ptp(densities) / 4  # the breathing cell offers frames near the mean
    assert selected['npt_step'] == frames.steps[selected['frame']]
    np.testing.assert_array_equal(selected['structure']['positions'], frames.atoms(selected['frame']).positions)
    assert not (folder / JOB.outputs['distributions']).exists()


@pytest.mark.parametrize('change, message', [
    ({'task': 'nothing'}, "'analysis_input.json': task must be one of"),
    ({'analysis': {'discard': 0.5}}, "'analysis_input.json': unknown analysis settings ['discard']"),
    ({'replicas': {}}, "'analysis_input.json': replicas must map at least one label"),
    ({'temperature_K': -1}, "'analysis_input.json': temperature_K must be a positive number"),
])
def test_bad_parameters_name_the_file(tmp_path, monkeypatch, change, message):
    folder = _folder(tmp_path, write_replicas=False, **{'task': 'properties', **change})
    result = _run(folder, monkeypatch)
    assert result.exit_code == EXIT_BAD_INPUT
    error = json.loads((folder / ERROR_FILE).read_text())
    assert error['status'] == EXIT_BAD_INPUT and error['message'].startswith(message), error['message']


def test_unreadable_trajectory_names_the_replica_and_file(tmp_path, monkeypatch):
    folder = _folder(tmp_path, 'properties')
    trajectory = folder / JOB.inputs['replicas'] / 'n001_r00' / REPLICA_FILES['trajectory']
    trajectory.write_bytes(b'not a trajectory')
    result = _run(folder, monkeypatch)
    assert result.exit_code == EXIT_BAD_INPUT
    message = json.loads((folder / ERROR_FILE).read_text())['message']
    assert message.startswith('replica n001_r00: ') and 'replicas/n001_r00/trajectory.h5' in message
    assert 'trajectory.h5' in result.stderr
    assert not (folder / JOB.outputs['results']).exists()


def test_log_without_a_column_names_the_log(tmp_path, monkeypatch):
    folder = _folder(tmp_path, 'density_frame')
    log_path = folder / JOB.inputs['replicas'] / 'n001_r00' / REPLICA_FILES['npt_log']
    with np.load(log_path) as log:
        columns = {name: log[name] for name in log.files if name != 'volume_A3'}
    np.savez(log_path, **columns)
    result = _run(folder, monkeypatch)
    assert result.exit_code == EXIT_BAD_INPUT
    message = json.loads((folder / ERROR_FILE).read_text())['message']
    assert 'replicas/n001_r00/npt_log.npz' in message and 'volume_A3' in message
