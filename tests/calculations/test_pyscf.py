"""``PyscfCalculation`` run for real (``aiida-qrnn-exec pyscf``) on localhost, checked against PySCF in-process."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase import Atoms

from aiida_qrnn.calculations.pyscf import PyscfCalculation, validate_parameters
from aiida_qrnn.core.pyscf_labels import label_cluster
from aiida_qrnn.core.units import E_BOHR_TO_E_ANGSTROM, HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM, HARTREE_TO_EV
from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.testing.structures import make_water_clusters


def hydroxide() -> Atoms:
    atoms = Atoms('OH', positions=[(0.1, 0.2, 0.3), (0.1, 0.2, 1.27)])
    atoms.info.update(total_charge=-1, kind='user', source='hydroxide')
    return atoms


def test_labels_match_pyscf_in_process(pyscf_code, monkeypatch):
    """Water and OH-, wB97X-D3BJ/STO-3G: labels equal PySCF run in this process, in package units; an SCF
    that cannot converge in 2 cycles is recorded and the job goes on."""
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    images = [make_water_clusters(1)[0], hydroxide()]
    parameters = {'method': 'wb97x-d3bj', 'basis': 'sto-3g'}
    results, node = run_get_node(
        PyscfCalculation, code=pyscf_code, clusters=ClusterSetData.from_atoms(images), parameters=orm.Dict(parameters)
    )
    assert node.exit_status == 0, node.exit_message
    labelled = results['clusters']
    assert labelled.level_of_theory == 'wb97x-d3bj/sto-3g'
    arrays = labelled.get_arrays()
    for index, atoms in enumerate(images):
        reference = label_cluster(
            atoms.numbers, atoms.positions, atoms.info.get('total_charge', 0), method='wb97x-d3bj', basis='sto-3g',
            options={},
        )
        rows = slice(arrays.offsets[index], arrays.offsets[index + 1])
        assert arrays.labels['energy'][index] == pytest.approx(reference['energy_hartree'] * HARTREE_TO_EV, abs=1e-6)
        np.testing.assert_allclose(
            arrays.labels['forces'][rows],
            -np.array(reference['gradient_hartree_per_bohr']) * HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM, atol=1e-5,
        )
        np.testing.assert_allclose(
            arrays.labels['dipole'][index], np.array(reference['dipole_e_bohr']) * E_BOHR_TO_E_ANGSTROM, atol=1e-5
        )
        # Forces of an isolated cluster sum to zero.
        np.testing.assert_allclose(arrays.labels['forces'][rows].sum(axis=0), 0.0, atol=1e-3)


def test_scf_failure_is_recorded(pyscf_code):
    images = make_water_clusters(2)
    parameters = {'method': 'hf', 'basis': 'sto-3g', 'options': {'max_cycle': 1}, 'properties': ['energy', 'dipole']}
    results, node = run_get_node(
        PyscfCalculation, code=pyscf_code, clusters=ClusterSetData.from_atoms(images), parameters=orm.Dict(parameters)
    )
    assert node.exit_status == PyscfCalculation.exit_codes.ERROR_SCF_NOT_CONVERGED.status
    assert [failure['reason'] for failure in results['failed_clusters'].get_list()] == ['scf_not_converged'] * 2


def test_validate_parameters_names_the_option():
    message = validate_parameters(orm.Dict({'method': 'hf', 'basis': 'sto-3g', 'options': {'maxiter': 3}}), None)
    assert 'maxiter' in message
    assert validate_parameters(orm.Dict({'method': 'hf', 'basis': 'sto-3g', 'options': {'max_cycle': 3}}), None) is None
