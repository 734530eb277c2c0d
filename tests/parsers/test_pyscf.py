"""``PyscfParser`` on stored records of real PySCF runs (see ``fixtures/pyscf/README.md``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from aiida import orm
from aiida.common.links import LinkType

from aiida_qrnn.core.dataset import ClusterSet
from aiida_qrnn.core.units import E_BOHR_TO_E_ANGSTROM, HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM, HARTREE_TO_EV
from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.parsers.pyscf import PyscfParser

FIXTURES = Path(__file__).parent / 'fixtures' / 'pyscf'


@pytest.fixture
def parse(aiida_localhost):
    """Parse a fixture folder as the retrieved folder of a stored ``CalcJobNode``."""

    def factory(case: str):
        folder = FIXTURES / case
        node = orm.CalcJobNode(computer=aiida_localhost, process_type='aiida.calculations:qrnn.pyscf')
        node.base.links.add_incoming(ClusterSetData(folder / 'clusters.h5').store(), LinkType.INPUT_CALC, 'clusters')
        parameters = json.loads((folder / 'parameters.json').read_text())
        node.base.links.add_incoming(orm.Dict(parameters).store(), LinkType.INPUT_CALC, 'parameters')
        node.store()
        retrieved = orm.FolderData()
        for path in sorted(folder.iterdir()):
            if path.name.startswith(('c0', 'pyscf.')):
                retrieved.base.repository.put_object_from_file(path, path.name)
        retrieved.base.links.add_incoming(node, LinkType.CREATE, 'retrieved')
        retrieved.store()
        return PyscfParser.parse_from_node(node, store_provenance=False)

    return factory


def test_success(parse):
    results, calcfunction = parse('success')
    assert calcfunction.exit_status == 0, calcfunction.exit_message
    arrays = results['clusters'].get_arrays()
    assert results['clusters'].level_of_theory == 'wb97x-d3bj/sto-3g'
    for index in range(2):
        record = json.loads((FIXTURES / 'success' / f'c{index:06d}.json').read_text())
        rows = slice(arrays.offsets[index], arrays.offsets[index + 1])
        assert arrays.labels['energy'][index] == pytest.approx(record['energy_hartree'] * HARTREE_TO_EV, abs=1e-10)
        np.testing.assert_allclose(
            arrays.labels['forces'][rows],
            -np.array(record['gradient_hartree_per_bohr']) * HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM,
        )
        dipole = np.array(record['dipole_e_bohr']) * E_BOHR_TO_E_ANGSTROM
        np.testing.assert_allclose(arrays.labels['dipole'][index], dipole)


def test_scf_failed(parse):
    results, calcfunction = parse('scf_failed')
    assert calcfunction.exit_status == 510
    assert 'clusters' not in results
    (failure,) = results['failed_clusters'].get_list()
    assert failure['reason'] == 'scf_not_converged'
    assert 'did not converge in 1 cycles' in failure['message']


def test_killed_job_keeps_finished_clusters(parse):
    results, calcfunction = parse('killed')
    assert calcfunction.exit_status == 401
    with ClusterSet(FIXTURES / 'killed' / 'clusters.h5') as given:
        assert list(results['clusters'].get_arrays().ids) == [given.ids[0]]
        failures = results['failed_clusters'].get_list()
        assert [(f['index'], f['id'], f['reason']) for f in failures] == [
            (1, given.ids[1], 'missing_output'), (2, given.ids[2], 'missing_output'),
        ]
