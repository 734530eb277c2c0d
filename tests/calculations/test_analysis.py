"""``AnalysisCalculation`` running the real ``aiida-qrnn-exec analyse`` on localhost (on the MD jobs' code, as the
property work chain runs it). A refused input is tested on the job itself (``tests/jobs/test_analysis.py``) and on
the parser's stored outputs (``tests/parsers/test_analysis.py``)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_qrnn.calculations.analysis import AnalysisCalculation, validate_inputs
from aiida_qrnn.core.analysis.frames import FrameReader
from aiida_qrnn.core.analysis.properties import replica_properties
from aiida_qrnn.testing.trajectories import write_liquid_replica


def _log(path) -> orm.ArrayData:
    node = orm.ArrayData()
    with np.load(path) as log:
        for name in log.files:
            node.set_array(name, log[name])
    return node


def test_properties_job_equals_the_in_process_analysis(md_code, tmp_path):
    """One job over one replica, with its VDOS run: the scalars and distributions of replica_properties."""
    folder = write_liquid_replica(tmp_path / 'r00', n_frames=24, n_molecules=6)
    results, node = run_get_node(
        AnalysisCalculation, code=md_code, task=orm.Str('properties'),
        npt_logs={'n001_r00': _log(folder / 'npt_log.npz')},
        trajectories={'n001_r00': orm.SinglefileData(folder / 'trajectory.h5')},
        vdos_trajectories={'n001_r00': orm.SinglefileData(folder / 'vdos.h5')}, n_units={'n001_r00': orm.Int(1)},
        analysis=orm.Dict({'viscosity_mPa_s': 20.0}),
    )
    assert node.is_finished_ok, node.exit_message
    with np.load(folder / 'npt_log.npz') as log:
        expected, distributions = replica_properties(
            dict(log), FrameReader.open(folder / 'trajectory.h5'), temperature_K=300.0, n_units=1,
            vdos_trajectory=FrameReader.open(folder / 'vdos.h5'), viscosity_Pa_s=0.02)
    assert results['scalars']['n001_r00'].get_dict() == pytest.approx(expected, nan_ok=True)
    assert 'given in the analysis settings' in expected['self_diffusivity_yeh_hummer_note']
    stored = results['distributions']['n001_r00']
    for name, arrays in distributions.items():
        for array_name, values in arrays.items():
            np.testing.assert_array_equal(stored.get_array(f'{name}__{array_name}'), values)


def test_validation_names_the_replicas_without_a_trajectory(aiida_profile):
    log, trajectory = orm.ArrayData(), orm.SinglefileData(io.BytesIO(b'h5md'), filename='trajectory.h5')
    message = validate_inputs({'npt_logs': {'a': log, 'b': log}, 'trajectories': {'a': trajectory}}, None)
    assert message == "npt_logs and trajectories must name the same replicas, got ['a', 'b'] and ['a']."
    message = validate_inputs({'npt_logs': {'a': log}, 'trajectories': {'a': trajectory},
                               'vdos_trajectories': {'c': trajectory}}, None)
    assert message == "vdos_trajectories: replicas ['c'] have no trajectory."
    assert validate_inputs({'npt_logs': {'a': log}, 'trajectories': {'a': trajectory}}, None) is None
    assert validate_inputs({}, None) is None  # left out by a wrapping work chain
