"""``ActiveLearningWorkChain`` with real GFN2-xTB labels, real training, scoring and selection jobs on localhost."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from aiida import orm
from aiida.engine import run_get_node

from aiida_qrnn.core.model.calculator import save_model
from aiida_qrnn.core.model.qrnn import QRNN, QRNNConfig
from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.data.model import ModelData
from aiida_qrnn.provenance import lineage
from aiida_qrnn.testing.inputs import active_learning_builder
from aiida_qrnn.testing.structures import make_water_clusters
from aiida_qrnn.workchains.active_learning import (
    ActiveLearningWorkChain,
    candidate_pool,
    property_change,
    stop_rule_met,
)


@pytest.fixture
def initial_data(active_learning_run) -> ClusterSetData:
    """Eight water clusters labelled by xtb: the data the session's two-round run started from."""
    return active_learning_run[0]


def train_calculation(model):
    return model.creator


def test_two_rounds_grow_the_data_and_transfer_the_model(active_learning_run):
    initial_data, results, node = active_learning_run  # active_learning_builder's two rounds, run once per session
    assert node.is_finished_ok, node.exit_message
    summary = results['summary'].get_dict()
    assert [entry['round'] for entry in summary['rounds']] == [1, 2]
    assert 'max_rounds' in summary['stopped']

    rounds = results['rounds']
    sizes = [initial_data.n_clusters, *(rounds[name]['clusters'].n_clusters for name in ('round_01', 'round_02'))]
    assert sizes == [8, 11, 14]  # strictly more data every round: 2 top + 1 random each
    # the round's model was trained on exactly the merged set, starting from the previous model
    first_model = train_calculation(rounds['round_01']['model']).inputs.parent_model
    for name in ('round_01', 'round_02'):
        job = train_calculation(rounds[name]['model'])
        assert job.inputs.datasets['clusters'].uuid == rounds[name]['clusters'].uuid
    assert train_calculation(rounds['round_02']['model']).inputs.parent_model.uuid == rounds['round_01']['model'].uuid
    assert train_calculation(first_model).inputs.datasets['clusters'].uuid == initial_data.uuid
    assert results['model'].uuid == rounds['round_02']['model'].uuid

    # round 2 never selects what round 1 labelled, and the selections follow the scores
    selected = [set(map(str, rounds[name]['selected'].get_arrays().ids)) for name in ('round_01', 'round_02')]
    assert len(selected[0]) == len(selected[1]) == 3 and not selected[0] & selected[1]
    for name in ('round_01', 'round_02'):
        selection = rounds[name]['selected'].creator
        rho_f = selection.inputs.scores.get_array('rho_f')
        top = np.sort(np.argsort(-rho_f, kind='stable')[:2])
        assert set(top) <= set(selection.outputs.indices.get_list())
        assert len(rounds[name]['committee']) == 2
        assert len(rho_f) == selection.inputs.clusters.n_clusters
    assert [rounds[name]['selected'].creator.inputs.parameters['seed'] for name in ('round_01', 'round_02')] == [4, 5]

    # the lineage of the last model names its labels, the rounds and the parent model
    answer = lineage(results['model'])
    assert any('gfn2-xtb' in line for line in answer['labels'])
    assert any('round_02' in line for line in answer['rounds'])
    assert any(rounds['round_01']['model'].model_hash[:12] in line for line in answer['models'])


def test_stop_rule_ends_the_loop_before_labelling(codes, initial_data, tmp_path):
    torch.manual_seed(0)
    model = QRNN(QRNNConfig(elements=('H', 'O'), charge_hidden=(8,), energy_hidden=(8,), dispersion=None))
    given = ModelData.from_file(save_model(model, tmp_path / 'given.safetensors'))
    builder = active_learning_builder(codes, initial_data, stop_rule=orm.Dict({'quantile': 0.5, 'threshold': 1e9}),
                                      model=given)
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    assert results['model'].uuid == given.uuid  # the given model is the current one: no first model is trained
    trainings = node.base.links.get_outgoing(node_class=orm.WorkChainNode).all()
    assert [link.link_label for link in trainings if link.node.process_label == 'TrainWorkChain'] == [
        'committee_round_01']  # only the committee
    summary = results['summary'].get_dict()
    assert summary['stopped'].startswith('round 1: stop rule met')
    assert 'selected' not in results['rounds']['round_01']
    assert not [child for child in node.called if child.process_label == 'LabelWorkChain']


def test_stop_rule_and_pool_helpers(aiida_profile):
    scores = {'rho_f': np.array([0.1, 0.2, 0.3, 4.0]), 'max_force_deviation': np.zeros(4)}
    assert stop_rule_met(scores, {'threshold': 0.35, 'quantile': 0.5}) == (True, 0.25)
    assert not stop_rule_met(scores, {'threshold': 0.35, 'quantile': 1.0})[0]
    known = ClusterSetData.from_atoms(make_water_clusters(3, seed=9))
    candidates = ClusterSetData.from_atoms(make_water_clusters(5, seed=9))
    pool = candidate_pool(known, a=candidates, b=candidates)
    assert pool.n_clusters == 2 and pool.label_names == []
    with pytest.raises(ValueError, match='already in the training data'):
        candidate_pool(candidates, a=known)


def test_property_change_is_the_largest_relative_change():
    previous = {'n001': {'density': {'value': 1.0}}, 'n002': {'density': {'value': 2.0}}}
    current = {'n001': {'density': {'value': 1.01}}, 'n002': {'density': {'value': 1.9}}, 'n003': {}}
    assert property_change(previous, current, 'density') == pytest.approx(0.05)
    with pytest.raises(ValueError, match='no common chain length'):
        property_change(previous, {'n004': {}}, 'density')


def test_bad_inputs_are_refused_naming_the_input(codes, initial_data):
    with pytest.raises(ValueError, match=r'parameters\.rule must be one of'):
        run_get_node(active_learning_builder(codes, initial_data, selection=orm.Dict({'rule': 'best'})))
    with pytest.raises(ValueError, match='stop_rule: give a threshold'):
        run_get_node(active_learning_builder(codes, initial_data, stop_rule=orm.Dict({'quantile': 0.5})))
    with pytest.raises(ValueError, match=r"property_stop.property must be one of .*, got 'viscosity'"):
        active_learning_builder(codes, initial_data,
                                property_stop=orm.Dict({'property': 'viscosity', 'relative_change': 0.1}))
    with pytest.raises(ValueError, match='property_stop needs properties'):
        run_get_node(active_learning_builder(codes, initial_data,
                                             property_stop=orm.Dict({'property': 'density', 'relative_change': 0.1})))
    builder = active_learning_builder(codes, initial_data)
    builder.candidates = {}
    _, node = run_get_node(builder)
    assert node.exit_status == ActiveLearningWorkChain.exit_codes.ERROR_NO_CANDIDATE_SOURCE.status
    assert 'md.structures' in node.exit_message and not node.called
