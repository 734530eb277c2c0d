"""``Psi4Parser`` and ``parse_raw.psi4`` on stored outputs of real Psi4 1.3.2 runs (see ``fixtures/psi4/README.md``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from aiida import orm
from aiida.common.links import LinkType

from aiida_qrnn.core.dataset import ClusterSet
from aiida_qrnn.core.label_records import FailureReason, RecordError
from aiida_qrnn.core.units import BOHR_TO_ANGSTROM, HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM, HARTREE_TO_EV
from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.parsers.parse_raw.psi4 import parse_cluster
from aiida_qrnn.parsers.psi4 import Psi4Parser

FIXTURES = Path(__file__).parent / 'fixtures' / 'psi4'
RETRIEVE_PATTERNS = ['c*.json', 'c*.out', 'c*.err', 'd3bj.err']
PARAMETERS = {'method': 'wb97x-d3bj', 'basis': 'sto-3g'}
D3BJ = {'s6': 1.0, 's8': 0.2641, 'a1': 0.0, 'a2': 5.4959}


@pytest.fixture
def generate_calc_job_node(generate_calc_job_node):
    """The shared factory with Psi4's input set: the case's clusters (or ``clusters``) and :data:`PARAMETERS`."""

    def factory(case: str, clusters: ClusterSetData | None = None) -> orm.CalcJobNode:
        inputs = {'clusters': clusters or ClusterSetData(FIXTURES / case / 'clusters.h5'),
                  'parameters': orm.Dict(PARAMETERS)}
        return generate_calc_job_node('psi4', case, inputs=inputs, retrieve=RETRIEVE_PATTERNS)

    return factory


def raw_values(case: str, index: int) -> tuple[float, np.ndarray]:
    """Energy (Eh) and gradient (Eh/bohr) of Psi4 plus D3(BJ), read straight from the two records."""
    record = json.loads((FIXTURES / case / f'c{index:06d}.json').read_text())
    d3bj = json.loads((FIXTURES / case / f'c{index:06d}.d3bj.json').read_text())
    energy = record['energy_hartree'] + d3bj['energy_hartree']
    gradient = np.array(record['gradient_hartree_per_bohr']) + np.array(d3bj['gradient_hartree_per_bohr'])
    return energy, gradient


def test_parser_success(generate_calc_job_node):
    node = generate_calc_job_node('success')
    results, calcfunction = Psi4Parser.parse_from_node(node, store_provenance=False)

    assert calcfunction.exit_status == 0, calcfunction.exit_message
    assert 'failed_clusters' not in results
    clusters = results['clusters']
    assert clusters.level_of_theory == 'wb97x-d3bj/sto-3g'
    assert sorted(clusters.label_names) == ['dipole', 'energy', 'forces']
    arrays = clusters.get_arrays()
    with ClusterSet(FIXTURES / 'success' / 'clusters.h5') as given:
        np.testing.assert_array_equal(arrays.ids, given.ids)
    for index in range(2):
        energy, gradient = raw_values('success', index)
        rows = slice(arrays.offsets[index], arrays.offsets[index + 1])
        assert arrays.labels['energy'][index] == pytest.approx(energy * HARTREE_TO_EV, abs=1e-10)
        np.testing.assert_allclose(arrays.labels['forces'][rows], -gradient * HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM)
    # The D3(BJ) record of water: a small negative energy, and it is really included.
    d3bj = json.loads((FIXTURES / 'success' / 'c000000.d3bj.json').read_text())
    assert -1e-3 < d3bj['energy_hartree'] < 0
    # Hydroxide: Psi4 1.3 reports Debye; the record holds e*bohr, the label e*Å.
    record = json.loads((FIXTURES / 'success' / 'c000001.json').read_text())
    np.testing.assert_allclose(arrays.labels['dipole'][1], np.array(record['dipole_e_bohr']) * BOHR_TO_ANGSTROM)


def test_parser_failures(generate_calc_job_node):
    """SCF failure, truncated output and never-started cluster: each reason listed, the good cluster labelled."""
    node = generate_calc_job_node('failures')
    results, calcfunction = Psi4Parser.parse_from_node(node, store_provenance=False)

    # Clusters without a record come first: a restart resubmits them.
    assert calcfunction.exit_status == 401
    assert calcfunction.exit_message == 'The job stopped early: 2 of 4 clusters have no record.'
    failures = {failure['index']: failure for failure in results['failed_clusters'].get_list()}
    assert {index: failure['reason'] for index, failure in failures.items()} == {
        1: 'scf_not_converged', 2: 'interrupted', 3: 'missing_output',
    }
    assert 'Could not converge SCF iterations in 2 iterations' in failures[1]['message']
    with ClusterSet(FIXTURES / 'failures' / 'clusters.h5') as given:
        assert [failure['id'] for failure in failures.values()] == list(given.ids[1:])
        labelled = results['clusters'].get_arrays()
        assert list(labelled.ids) == [given.ids[0]]
    energy, _ = raw_values('failures', 0)
    assert labelled.labels['energy'][0] == pytest.approx(energy * HARTREE_TO_EV, abs=1e-10)


def test_parser_refuses_records_of_another_cluster(generate_calc_job_node):
    """The records of ``success/`` checked against other input clusters: geometry_mismatch, nothing labelled."""
    from aiida_qrnn.testing.structures import make_water_clusters

    other = ClusterSetData.from_atoms(make_water_clusters(2, seed=3))
    results, calcfunction = Psi4Parser.parse_from_node(
        generate_calc_job_node('success', clusters=other), store_provenance=False
    )
    assert calcfunction.exit_status == 410
    assert {failure['reason'] for failure in results['failed_clusters'].get_list()} == {'geometry_mismatch'}
    assert 'clusters' not in results


def test_parser_no_output(generate_calc_job_node, tmp_path, aiida_localhost):
    node = orm.CalcJobNode(computer=aiida_localhost, process_type='aiida.calculations:qrnn.psi4')
    node.base.links.add_incoming(ClusterSetData(FIXTURES / 'success' / 'clusters.h5').store(), LinkType.INPUT_CALC,
                                 'clusters')
    node.base.links.add_incoming(orm.Dict(PARAMETERS).store(), LinkType.INPUT_CALC, 'parameters')
    node.store()
    retrieved = orm.FolderData()
    retrieved.base.links.add_incoming(node, LinkType.CREATE, 'retrieved')
    retrieved.store()
    _, calcfunction = Psi4Parser.parse_from_node(node, store_provenance=False)
    assert calcfunction.exit_status == 302


def fixture_inputs(case: str, index: int) -> dict:
    with ClusterSet(FIXTURES / case / 'clusters.h5') as clusters:
        atoms = clusters[index]
    folder = FIXTURES / case
    read = lambda name: (folder / name).read_text() if (folder / name).is_file() else None  # noqa: E731
    return {
        'cluster_id': atoms.info['id'], 'numbers': atoms.numbers, 'positions': atoms.positions,
        'record': read(f'c{index:06d}.json'), 'd3bj_record': read(f'c{index:06d}.d3bj.json'),
        'd3bj_parameters': D3BJ, 'output': read(f'c{index:06d}.out'), 'stderr': read(f'c{index:06d}.err'),
    }


def test_raw_missing_d3bj_record_is_not_labelled():
    inputs = fixture_inputs('success', 0)
    inputs['d3bj_record'] = None
    with pytest.raises(RecordError) as error:
        parse_cluster(**inputs)
    assert error.value.reason == FailureReason.MISSING_OUTPUT


def test_raw_d3bj_parameters_must_be_psi4s():
    """If the applied D3(BJ) parameters differ from Psi4's definition of the method, the label is refused."""
    inputs = fixture_inputs('success', 0)
    inputs['d3bj_parameters'] = {**D3BJ, 'a2': 5.0}
    with pytest.raises(RecordError, match='D3\\(BJ\\) record is for cluster'):
        parse_cluster(**inputs)


def test_raw_truncated_record_is_unreadable():
    inputs = fixture_inputs('success', 0)
    inputs['record'] = inputs['record'][:100]
    with pytest.raises(RecordError) as error:
        parse_cluster(**inputs)
    assert error.value.reason == FailureReason.UNREADABLE_OUTPUT
