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
from aiida_qrnn.core.polymer import ETHYLENE_GLYCOL, GLYME, NYLON_6, PROPYLENE_GLYCOL, Polymer
from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.data.model import ModelData
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


def test_transfer_protocols_are_propylene_glycol_and_take_another_polymer(aiida_code_installed):
    code = aiida_code_installed(default_calc_job_plugin='qrnn.train', filepath_executable=EXEC)
    label_code = aiida_code_installed(default_calc_job_plugin='qrnn.xtb', filepath_executable=shutil.which('xtb'))
    builder = PolymerForceFieldWorkChain.get_builder_from_protocol(code, label_code, 'transfer-demo')
    assert Polymer.from_dict(builder.polymer.get_dict()) == PROPYLENE_GLYCOL
    assert builder.baseline.value is False and 'scans' not in builder
    assert builder.active_learning.max_rounds.value == 1 and builder.active_learning.transfer['max_epochs'] == 2
    fast = PolymerForceFieldWorkChain.get_builder_from_protocol(code, label_code, 'transfer-fast')
    assert Polymer.from_dict(fast.polymer.get_dict()) == PROPYLENE_GLYCOL and fast.baseline.value is False
    assert fast.sampling.cells['n_units'] == [1, 2] and fast.properties.cells['n_units'] == [1, 2, 3]
    glyme = PolymerForceFieldWorkChain.get_builder_from_protocol(code, label_code, 'transfer-demo', polymer='glyme')
    assert Polymer.from_dict(glyme.polymer.get_dict()) == GLYME
    with pytest.raises(ValueError, match="polymer 'PPG' is not a built-in definition"):
        PolymerForceFieldWorkChain.get_builder_from_protocol(code, label_code, 'transfer-demo', polymer='PPG')


def test_scans_are_refused_for_a_polymer_other_than_ethylene_glycol(aiida_code_installed):
    from aiida_qrnn.workchains.polymer import validate_inputs

    scans = orm.Dict({'torsion': {'step_deg': 30.0}})
    message = validate_inputs({'polymer': orm.Dict(PROPYLENE_GLYCOL.to_dict()), 'scans': scans}, None)
    assert "'propylene glycol'" in message and 'leave scans out' in message
    assert validate_inputs({'polymer': orm.Dict(ETHYLENE_GLYCOL.to_dict()), 'scans': scans}, None) is None
    assert validate_inputs({'scans': scans}, None) is None


def test_experimental_reference_of_the_family(aiida_profile):
    from aiida_qrnn.workchains.polymer import experimental_reference

    values = experimental_reference(orm.Dict(PROPYLENE_GLYCOL.to_dict()), orm.Float(300.0)).get_dict()
    assert values['family'] == 'propylene glycol'
    assert values['density'] == {'perry_105': {'1': pytest.approx(1.031164, abs=1e-6)}}
    assert set(values['heat_capacity']) == {'zabransky_cp_spline', 'crc_thermo'}
    assert experimental_reference(orm.Dict(NYLON_6.to_dict()), orm.Float(300.0))['density'] == {}


@pytest.mark.integration  # 2-4 min on 2 shared cores: in CI, as issue 18 asks
def test_transfer_from_a_model_to_propylene_glycol_end_to_end(aiida_code_installed):
    """The transfer-demo protocol from a given model (H, C, N, O; random weights stand in for an EG model): PG cells
    with GAFF2, xtb labels of PG clusters, the model's transfer-learned successor, QRNN properties of PG."""
    from aiida.engine import run_get_node

    from aiida_qrnn.testing.models import small_qrnn_node

    code = aiida_code_installed(default_calc_job_plugin='qrnn.train', filepath_executable=EXEC)
    label_code = aiida_code_installed(default_calc_job_plugin='qrnn.xtb', filepath_executable=shutil.which('xtb'))
    parent = small_qrnn_node(seed=0).store()
    builder = PolymerForceFieldWorkChain.get_builder_from_protocol(code, label_code, 'transfer-demo', model=parent)
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message

    sampling = node.base.links.get_outgoing(link_label_filter='sampling').one().node
    assert sampling.inputs.polymer.pk == node.inputs.polymer.pk
    md = sampling.outputs.final_structures['n002_r00'].creator
    assert md.outputs.output_parameters['force_field'] == 'GAFF2'
    with results['clusters'].open_cluster_set() as opened:
        formulas = {opened[index].get_chemical_formula() for index in range(len(opened))}
    assert 'C3H8O2' in formulas or 'C6H14O3' in formulas  # a single PG or DPG molecule among the clusters
    assert sorted(results['clusters'].elements) == ['C', 'H', 'O']

    active_learning = node.base.links.get_outgoing(link_label_filter='active_learning').one().node
    extractions = [called for called in active_learning.called if called.process_label == 'extract_clusters']
    assert extractions and all(called.inputs.polymer.pk == node.inputs.polymer.pk for called in extractions)

    model = results['model']
    assert model.pk != parent.pk
    ancestors = orm.QueryBuilder().append(orm.Node, filters={'id': model.pk}, tag='model').append(
        ModelData, with_descendants='model', filters={'id': parent.pk}, project='id').distinct().all(flat=True)
    assert ancestors == [parent.pk]  # the final model descends from the given one (transfer learning)
    assert set(results['properties']) == {'qrnn'}  # no OPLS-AA baseline for PG
    assert results['properties']['qrnn']['n001']['density']['value'] > 0
    assert results['experimental']['density'] == {'perry_105': {'1': pytest.approx(1.031164, abs=1e-6)}}
