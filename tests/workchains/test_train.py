"""``TrainWorkChain``: a committee of two whose jobs stop at the walltime and are continued to the end."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.testing.models import TINY_CONFIG, teacher_labelled_clusters
from aiida_qrnn.workchains.train import TrainWorkChain, member_parameters


def test_member_parameters_shift_seed_and_split():
    parameters = {'training': {'seed': 10, 'max_epochs': 3}}
    assert member_parameters(parameters, 2, 5)['training'] == {
        'seed': 12, 'split_seed': 12, 'max_epochs': 3, 'validation_fraction': 0.4}
    assert 'validation_fraction' not in member_parameters(parameters, 0, 1)['training']


def _run(train_code, committee_size: int):
    """max_time_s = 0: every job trains one batch, checkpoints and exits 400; 6 training clusters in batches of 4
    make two batches, so each member finishes in its second job, which continues from the first's folder."""
    clusters = ClusterSetData.from_arrays(teacher_labelled_clusters(8), level_of_theory='teacher')
    training = {'max_epochs': 1, 'batch_size': 4, 'max_time_s': 0.0, 'validation_fraction': 0.25}
    results, node = run_get_node(
        TrainWorkChain, committee_size=orm.Int(committee_size),
        train={'code': train_code, 'datasets': {'clusters': clusters},
               'parameters': orm.Dict({'model': TINY_CONFIG.to_dict(), 'training': training})},
    )
    assert node.is_finished_ok, node.exit_message
    jobs = sorted(node.called, key=lambda job: job.pk)
    assert [job.exit_status for job in jobs] == [400] * committee_size + [0] * committee_size
    for first, second in zip(jobs[:committee_size], jobs[committee_size:], strict=True):
        assert second.inputs.parent_folder.uuid == first.outputs.remote_folder.uuid
        assert second.inputs.parameters['training']['seed'] == first.inputs.parameters['training']['seed']
    assert all(parameters['epochs'] == 1 for parameters in results['output_parameters'].values())
    return results


def test_walltime_stop_is_continued_to_the_end(train_code):
    results = _run(train_code, 1)
    assert results['model'].uuid == results['models']['member_0'].uuid


@pytest.mark.slow
def test_committee_members_run_in_parallel_and_differ(train_code):
    results = _run(train_code, 2)
    assert set(results['models']) == {'member_0', 'member_1'}
    assert results['models']['member_0'].model_hash != results['models']['member_1'].model_hash
