"""``TrainParser`` on stored outputs of a real ``aiida-qrnn-exec train`` run (see ``fixtures/train/README.md``)."""

from __future__ import annotations

from pathlib import Path

from aiida_qrnn.parsers.train import TrainParser

FIXTURES = Path(__file__).parent / 'fixtures' / 'train'


def test_walltime_stop_is_400_with_split_and_results(generate_calc_job_node):
    node = generate_calc_job_node('train', 'walltime')
    results, calcfunction = TrainParser.parse_from_node(node, store_provenance=False)
    assert calcfunction.exit_status == 400
    assert results['output_parameters']['name'] == 'STOPPED_WALLTIME'
    assert len(results['split'].get_array('train')) == 16 and 'model' not in results


def test_killed_job_with_a_checkpoint_is_a_walltime_stop(generate_calc_job_node):
    _, calcfunction = TrainParser.parse_from_node(generate_calc_job_node('train', 'killed'), store_provenance=False)
    assert calcfunction.exit_status == 400
    assert 'killed before results.json' in calcfunction.exit_message
