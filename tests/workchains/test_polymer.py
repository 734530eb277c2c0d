"""``PolymerForceFieldWorkChain``: every protocol gives a valid builder; the initial split; bad inputs named.

The whole work chain runs end to end in CI through the demo (``aiida-qrnn demo``, protocol ``demo``, tests/cli).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from aiida import orm

from aiida_qrnn.calculations.functions.cluster_sets import split_clusters
from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.testing.structures import make_water_clusters
from aiida_qrnn.workchains.polymer import PolymerForceFieldWorkChain, classical_cells

EXEC = str(Path(sys.executable).parent / 'aiida-qrnn-exec')


@pytest.mark.parametrize('protocol', ['demo', 'fast', 'paper', 'xtb-study'])
def test_every_protocol_gives_a_valid_builder(aiida_code_installed, protocol):
    code = aiida_code_installed(default_calc_job_plugin='qrnn.train', filepath_executable=EXEC)
    label_code = aiida_code_installed(default_calc_job_plugin='qrnn.xtb', filepath_executable=shutil.which('xtb'))
    builder = PolymerForceFieldWorkChain.get_builder_from_protocol(code, label_code, protocol)
    assert builder.code.uuid == code.uuid and builder.sampling.md.code.uuid == code.uuid
    assert builder.label.code.uuid == label_code.uuid
    assert builder.initial_clusters.value == {'demo': 60, 'fast': 20000, 'paper': 217684, 'xtb-study': 400}[protocol]
    assert builder.label.engine.value == ('psi4' if protocol == 'paper' else 'xtb')
    assert builder.active_learning.committee_size.value == (5 if protocol in ('fast', 'paper') else 3)
    if protocol == 'paper':
        assert builder.label.parameters.get_dict() == {'method': 'wb97x-d3bj', 'basis': 'def2-tzvpd'}
        assert builder.active_learning.committee_size.value == 5
        assert builder.active_learning.selection['k'] == 40000
        assert builder.properties.cells['n_units'] == list(range(1, 11))
        assert builder.active_learning.properties.cells['replicas'] == 3
        assert builder.active_learning.property_stop['property'] == 'density'
    if protocol == 'xtb-study':
        assert builder.properties.cells['n_units'] == [1, 4] and builder.properties.vdos['trajectory_interval'] == 2
        assert builder.sampling.md.parameters['npt_steps'] == 10000
        assert builder.sampling.clusters['max_molecules_by_units'] == {'1': 4, '2': 3, '3': 2}  # no tetraEG


def test_unknown_protocol_and_scan_are_named(aiida_code_installed):
    code = aiida_code_installed(default_calc_job_plugin='qrnn.train', filepath_executable=EXEC)
    with pytest.raises(ValueError, match="unknown polymer protocol 'huge'"):
        PolymerForceFieldWorkChain.get_builder_from_protocol(code, code, 'huge')
    builder = PolymerForceFieldWorkChain.get_builder()
    with pytest.raises(ValueError, match=r"scans: unknown scan\(s\) \['bond'\]"):
        builder.scans = orm.Dict({'bond': {}})


def test_initial_split_is_seeded_and_complete(aiida_profile):
    clusters = ClusterSetData.from_atoms(make_water_clusters(10, seed=4))
    first = split_clusters(clusters, orm.Dict({'n_initial': 4, 'seed': 1}))
    again = split_clusters(clusters, orm.Dict({'n_initial': 4, 'seed': 1}))
    ids = [set(map(str, first[name].get_arrays().ids)) for name in ('initial', 'candidates')]
    assert len(ids[0]) == 4 and len(ids[1]) == 6 and not ids[0] & ids[1]
    assert ids[0] | ids[1] == set(map(str, clusters.get_arrays().ids))
    np.testing.assert_array_equal(again['initial'].get_arrays().ids, first['initial'].get_arrays().ids)
    with pytest.raises(ValueError, match=r'n_initial must be in 1\.\.9 for 10 sampled clusters, got 10'):
        split_clusters(clusters, orm.Dict({'n_initial': 10}))


def test_property_runs_start_from_the_classically_relaxed_cells_of_the_same_replicas():
    """The property cells (n_units x replicas) are matched by label to the sampling's relaxed cells; the labels the
    sampling did not relax are named (the work chain then packs fresh cells and reports it)."""
    relaxed = {label: f'relaxed {label}' for label in ('n001_r00', 'n001_r01', 'n002_r00', 'n004_r00', 'n004_r01')}
    chosen, missing = classical_cells(relaxed, {'n_units': [1, 4], 'replicas': 2})
    assert chosen == {label: f'relaxed {label}' for label in ('n001_r00', 'n001_r01', 'n004_r00', 'n004_r01')}
    assert missing == []
    chosen, missing = classical_cells(relaxed, {'n_units': [2, 3], 'replicas': 2})
    assert list(chosen) == ['n002_r00'] and missing == ['n002_r01', 'n003_r00', 'n003_r01']
