"""``Psi4Calculation`` run for real with Psi4 1.3.2 on localhost; ωB97X-D3BJ checked against PySCF's."""

from __future__ import annotations

import base64
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase import Atoms

from aiida_qrnn.calculations.psi4 import (
    Psi4Calculation,
    psi4_input,
    validate_closed_shell_clusters,
    validate_label_parameters,
)
from aiida_qrnn.core.d3bj import D3BJ_PARAMETERS
from aiida_qrnn.core.pyscf_labels import label_cluster
from aiida_qrnn.core.units import E_BOHR_TO_E_ANGSTROM, HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM, HARTREE_TO_EV
from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.testing.structures import ethylene_glycol, make_water_clusters

# Installed by scripts/install.sh; a missing executable is a failure of the set-up, not a reason to skip.
PSI4 = shutil.which('psi4') or 'psi4'
#: The package's executable of the running environment, which a job on localhost runs.
EXEC = str(Path(sys.executable).parent / 'aiida-qrnn-exec')
#: Exact integrals and a large unpruned grid on both sides, so the two programs compute the same number.
MATCHED_PSI4_OPTIONS = {'scf_type': 'pk', 'dft_radial_points': 99, 'dft_spherical_points': 590,
                        'e_convergence': 1e-10, 'd_convergence': 1e-8}
MATCHED_PYSCF_OPTIONS = {'atom_grid': [99, 590], 'conv_tol': 1e-11}


@pytest.fixture(autouse=True)
def single_thread(monkeypatch):
    """PySCF runs in the test process: one BLAS/OpenMP thread, as in the jobs."""
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    monkeypatch.setenv('OPENBLAS_NUM_THREADS', '1')


@pytest.fixture
def psi4_codes(aiida_code_installed) -> dict[str, orm.InstalledCode]:
    return {
        'code': aiida_code_installed(default_calc_job_plugin='qrnn.psi4', filepath_executable=PSI4),
        'd3bj_code': aiida_code_installed(filepath_executable=EXEC),
    }


def run_psi4(codes, images: list[Atoms], parameters: dict):
    clusters = ClusterSetData.from_atoms(images)
    results, node = run_get_node(Psi4Calculation, clusters=clusters, parameters=orm.Dict(parameters), **codes)
    return clusters, results, node


def test_wb97x_d3bj_water_matches_pyscf(psi4_codes):
    """Psi4 ωB97X (ωB97X-V without VV10) + D3(BJ) from the D3 step equals PySCF's ωB97X-D3BJ to 1e-5 Eh,
    with forces and dipole; the labels keep the input geometry and cluster id, in package units."""
    water = make_water_clusters(1)[0]
    parameters = {'method': 'wb97x-d3bj', 'basis': 'def2-svp', 'options': MATCHED_PSI4_OPTIONS}
    clusters, results, node = run_psi4(psi4_codes, [water], parameters)

    assert node.exit_status == 0, node.exit_message
    labelled = results['clusters']
    assert labelled.level_of_theory == 'wb97x-d3bj/def2-svp'
    given, arrays = clusters.get_arrays(), labelled.get_arrays()
    np.testing.assert_array_equal(arrays.ids, given.ids)
    np.testing.assert_array_equal(arrays.positions, given.positions)

    reference = label_cluster(
        water.numbers, water.positions, 0, method='wb97x-d3bj', basis='def2-svp', options=MATCHED_PYSCF_OPTIONS,
    )
    assert reference['status'] == 'ok'
    assert arrays.labels['energy'][0] / HARTREE_TO_EV == pytest.approx(reference['energy_hartree'], abs=1e-5)
    forces = -np.array(reference['gradient_hartree_per_bohr']) * HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM
    np.testing.assert_allclose(arrays.labels['forces'], forces, atol=1e-4)
    dipole = np.array(reference['dipole_e_bohr']) * E_BOHR_TO_E_ANGSTROM
    np.testing.assert_allclose(arrays.labels['dipole'][0], dipole, atol=1e-4)
    # Forces of an isolated molecule sum to zero (translation invariance of the energy).
    np.testing.assert_allclose(arrays.labels['forces'].sum(axis=0), 0.0, atol=1e-4)


def test_wb97x_d3bj_ethylene_glycol_matches_pyscf(psi4_codes):
    """The issue's check: one EG molecule, ωB97X-D3BJ/def2-SVP energies of Psi4+D3(BJ) and PySCF within 1e-5 Eh."""
    glycol = ethylene_glycol()
    parameters = {'method': 'wb97x-d3bj', 'basis': 'def2-svp', 'options': MATCHED_PSI4_OPTIONS,
                  'properties': ['energy', 'dipole']}
    _, results, node = run_psi4(psi4_codes, [glycol], parameters)
    assert node.exit_status == 0, node.exit_message
    reference = label_cluster(
        glycol.numbers, glycol.positions, 0, method='wb97x-d3bj', basis='def2-svp', options=MATCHED_PYSCF_OPTIONS,
        forces=False,
    )
    energy = results['clusters'].get_arrays().labels['energy'][0] / HARTREE_TO_EV
    assert energy == pytest.approx(reference['energy_hartree'], abs=1e-5)


def test_scf_failure_is_recorded_and_the_batch_goes_on(psi4_codes):
    """With two SCF iterations allowed every cluster fails with scf_not_converged; the job still finishes."""
    images = make_water_clusters(2)
    parameters = {'method': 'hf', 'basis': 'sto-3g', 'options': {'maxiter': 2}, 'properties': ['energy', 'dipole']}
    _, results, node = run_psi4(psi4_codes, images, parameters)

    assert node.exit_status == Psi4Calculation.exit_codes.ERROR_SCF_NOT_CONVERGED.status
    assert 'clusters' not in results
    failures = results['failed_clusters'].get_list()
    assert [failure['index'] for failure in failures] == [0, 1]
    assert {failure['reason'] for failure in failures} == {'scf_not_converged'}
    assert 'Could not converge SCF iterations in 2 iterations' in failures[0]['message']


def test_d3bj_parameters_are_psi4s():
    """The parameters applied are the ones Psi4 1.3.2 defines for wB97X-D3BJ (also checked per record)."""
    assert D3BJ_PARAMETERS['wb97x'].as_dict() == {'s6': 1.0, 's8': 0.2641, 'a1': 0.0, 'a2': 5.4959}


def test_input_keeps_the_frame_and_paper_settings():
    text = psi4_input(
        index=3, cluster_id='abc', numbers=np.array([8, 1, 1]), positions=np.eye(3), total_charge=0,
        method='wb97x-d3bj', options={'basis': 'def2-svp', 'dft_basis_tolerance': 1e-10}, properties=['energy'],
        strip_d3bj=True,
    )
    for line in ('no_reorient', 'no_com', 'symmetry c1', 'c000003.json'):
        assert line in text
    encoded = text.split("b64decode('")[1].split("'")[0]
    settings = json.loads(base64.b64decode(encoded))
    assert settings == {'method': 'wb97x-d3bj', 'options': {'basis': 'def2-svp', 'dft_basis_tolerance': 1e-10},
                        'strip_d3bj': True, 'forces': False}
    compile(text.replace('geometry(', 'dict(').replace('set_options', 'dict'), 'c000003.in', 'exec')


@pytest.mark.parametrize(
    ('parameters', 'key'),
    [
        ({'basis': 'def2-svp'}, 'method'),
        ({'method': 'hf'}, 'basis'),
        ({'method': 'b3lyp-d3bj', 'basis': 'def2-svp'}, 'b3lyp-d3bj'),
        ({'method': 'hf', 'basis': 'sto-3g', 'properties': ['charges']}, 'properties'),
        ({'method': 'hf', 'basis': 'sto-3g', 'option': {}}, 'option'),
        ({'method': 'hf', 'basis': 'sto-3g', 'num_threads': 0}, 'num_threads'),
    ],
)
def test_validate_parameters_names_the_key(parameters, key):
    message = validate_label_parameters(orm.Dict(parameters), None)
    assert message is not None
    assert key in message


def test_validate_clusters_refuses_odd_electrons_and_periodic():
    images = make_water_clusters(2)
    images[1].info['total_charge'] = 1
    message = validate_closed_shell_clusters(ClusterSetData.from_atoms(images), None)
    assert message.startswith('clusters: cluster 1 (id ') and '19 electrons (total charge +1)' in message
    images = make_water_clusters(2)
    images[0].cell, images[0].pbc = np.eye(3) * 10.0, True
    assert 'cluster 0 is periodic' in validate_closed_shell_clusters(ClusterSetData.from_atoms(images), None)


def test_d3bj_method_needs_the_exec_code(aiida_code_installed):
    code = aiida_code_installed(default_calc_job_plugin='qrnn.psi4', filepath_executable='/bin/true')
    clusters = ClusterSetData.from_atoms(make_water_clusters(1))
    with pytest.raises(ValueError, match='d3bj_code'):
        run_get_node(Psi4Calculation, code=code, clusters=clusters,
                     parameters=orm.Dict({'method': 'wb97x-d3bj', 'basis': 'def2-svp'}))

