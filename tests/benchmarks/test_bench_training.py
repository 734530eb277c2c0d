"""The training benchmark runs end to end on a CPU with tiny sizes, in the modes the GPU check uses (throughput
beside ANI-2x, validation curves per precision), so a GPU session does not lose its minutes to a broken script; no
speed is asserted."""

from __future__ import annotations

import json
import math

import pytest

from aiida_qrnn.testing.benchmarks import loaded_benchmark

pytest.importorskip('torchani')


@pytest.fixture(scope='module')
def bench_training():
    with loaded_benchmark('bench_training') as module:
        yield module


def test_throughput_and_curves_run_and_merge_into_one_file(bench_training, tmp_path, monkeypatch):
    monkeypatch.setenv('TORCHANI_NO_WARN_EXTENSIONS', '1')
    output = tmp_path / 'training.json'
    bench_training.main(['--batch-size', '2', '--steps', '1', '--output', str(output)])
    stored = bench_training.main(['--precision-curves', 'highest', '--curve-clusters', '12', '--curve-epochs', '2',
                                  '--output', str(output)])
    assert stored == json.loads(output.read_text())
    assert set(stored) == {'cpu-float32-batch2', 'cpu-float32-precision-curves'}
    step = stored['cpu-float32-batch2']
    assert step['precision'] == 'highest' and step['n_parameters'] > 300_000
    for value in (step['clusters_per_s'], step['prepare_seconds_per_step'], step['cpu_seconds_per_step'],
                  step['torchani_ani2x_single_network']['clusters_per_s']):
        assert math.isfinite(value) and value > 0
    curve = stored['cpu-float32-precision-curves']['curves']['highest']
    assert len(curve['validation_forces_rmse_eV_per_A']) == 2
    assert all(math.isfinite(value) for value in curve['train_loss'] + curve['validation_score'])
    assert curve['max_relative_difference_to_float32']['validation_score'] == 0.0


def test_reduced_precision_is_refused_on_a_cpu(bench_training, tmp_path):
    with pytest.raises(ValueError, match="precision='tf32' needs a CUDA device"):
        bench_training.main(['--batch-size', '2', '--steps', '1', '--precision', 'tf32', '--output',
                             str(tmp_path / 'training.json')])
