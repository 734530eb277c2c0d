"""``AnalysisParser`` on stored outputs of ``aiida-qrnn-exec analyse`` (``fixtures/analysis``, see its README)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from aiida import orm
from aiida.plugins import ParserFactory

from aiida_qrnn.calculations.analysis import AnalysisCalculation

LABELS = ('n001_r00', 'n001_r01')


def _inputs(task: str, labels=LABELS) -> dict[str, orm.Data]:
    inputs: dict[str, orm.Data] = {'task': orm.Str(task)}
    for label in labels:
        inputs[f'trajectories__{label}'] = orm.SinglefileData(io.BytesIO(b'h5md'), filename='trajectory.h5')
        inputs[f'npt_logs__{label}'] = orm.ArrayData()
    return inputs


def _parse(generate_calc_job_node, case: str, inputs: dict, retrieve=None):
    node = generate_calc_job_node('analysis', case, inputs=inputs, retrieve=retrieve)
    return ParserFactory('qrnn.analysis').parse_from_node(node, store_provenance=False)


def test_properties_give_scalars_and_distributions_per_replica(generate_calc_job_node):
    results, calcfunction = _parse(generate_calc_job_node, 'properties', _inputs('properties'))
    assert calcfunction.is_finished_ok, calcfunction.exit_message
    assert sorted(results['scalars']) == sorted(results['distributions']) == list(LABELS)
    for label in LABELS:
        scalars = results['scalars'][label].get_dict()
        assert 0.5 < scalars['density'] < 2.0 and scalars['heat_capacity_quantum'] is not None
        distributions = results['distributions'][label]
        assert set(distributions.get_arraynames()) == {
            'occo_torsion__angle_deg', 'occo_torsion__probability_density_per_deg', 'oh_rdf__r_A', 'oh_rdf__g',
            'radius_of_gyration__rg_A', 'radius_of_gyration__probability_density_per_A'}
        torsion = distributions.get_array('occo_torsion__probability_density_per_deg')
        assert torsion.sum() * 5.0 == pytest.approx(1.0)
    assert not np.array_equal(results['distributions']['n001_r00'].get_array('oh_rdf__g'),
                              results['distributions']['n001_r01'].get_array('oh_rdf__g'))


def test_density_frame_gives_a_structure_per_replica(generate_calc_job_node):
    results, calcfunction = _parse(generate_calc_job_node, 'density_frame', _inputs('density_frame'))
    assert calcfunction.is_finished_ok, calcfunction.exit_message
    for label in LABELS:
        structure = results['structures'][label]
        assert len(structure.sites) == 60 and structure.pbc == (True, True, True)
        assert structure.base.attributes.get('npt_step') % 2 == 0
        assert 0.5 < structure.base.attributes.get('npt_mean_density_g_cm3') < 2.0


def test_missing_replica_is_311(generate_calc_job_node):
    _, calcfunction = _parse(generate_calc_job_node, 'density_frame', _inputs('density_frame', (*LABELS, 'n001_r02')))
    assert calcfunction.exit_status == AnalysisCalculation.exit_codes.ERROR_OUTPUT_INCOMPLETE.status
    assert "['n001_r02']" in calcfunction.exit_message


def test_missing_results_is_300(generate_calc_job_node):
    _, calcfunction = _parse(generate_calc_job_node, 'properties', _inputs('properties'), retrieve=['analyse.*'])
    assert calcfunction.exit_status == AnalysisCalculation.exit_codes.ERROR_OUTPUT_FILES_MISSING.status
    assert 'results.json' in calcfunction.exit_message


def test_refused_input_is_410_naming_the_file(generate_calc_job_node):
    _, calcfunction = _parse(generate_calc_job_node, 'bad_trajectory', _inputs('properties', LABELS[:1]))
    assert calcfunction.exit_status == AnalysisCalculation.exit_codes.ERROR_INVALID_INPUT.status
    assert 'replica n001_r00' in calcfunction.exit_message
    assert 'replicas/n001_r00/trajectory.h5' in calcfunction.exit_message
