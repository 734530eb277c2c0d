"""``TrainParser`` on stored outputs of a real ``aiida-qrnn-exec train`` run (see ``fixtures/train/README.md``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiida import orm
from aiida.common.links import LinkType

from aiida_qrnn.parsers.train import TrainParser

FIXTURES = Path(__file__).parent / 'fixtures' / 'train'


@pytest.fixture
def generate_calc_job_node(aiida_localhost):
    """A stored ``CalcJobNode`` whose retrieved folder is a fixture folder, as after a real run."""

    def factory(case: str) -> orm.CalcJobNode:
        node = orm.CalcJobNode(computer=aiida_localhost, process_type='aiida.calculations:qrnn.train')
        node.store()
        retrieved = orm.FolderData()
        for path in sorted((FIXTURES / case).iterdir()):
            retrieved.base.repository.put_object_from_file(path, path.name)
        retrieved.base.links.add_incoming(node, LinkType.CREATE, 'retrieved')
        retrieved.store()
        return node

    return factory


def test_walltime_stop_is_400_with_split_and_results(generate_calc_job_node):
    results, calcfunction = TrainParser.parse_from_node(generate_calc_job_node('walltime'), store_provenance=False)
    assert calcfunction.exit_status == 400
    assert results['output_parameters']['name'] == 'STOPPED_WALLTIME'
    assert len(results['split'].get_array('train')) == 16 and 'model' not in results


def test_killed_job_with_a_checkpoint_is_a_walltime_stop(generate_calc_job_node):
    _, calcfunction = TrainParser.parse_from_node(generate_calc_job_node('killed'), store_provenance=False)
    assert calcfunction.exit_status == 400
    assert 'killed before results.json' in calcfunction.exit_message
