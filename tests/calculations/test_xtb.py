"""``XtbCalculation`` run for real with xtb on localhost, checked against direct xtb runs."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import ase.io
import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase import Atoms

from aiida_qrnn.calculations.xtb import XtbCalculation, validate_clusters, validate_parameters
from aiida_qrnn.core.units import E_BOHR_TO_E_ANGSTROM, HARTREE_TO_EV
from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.testing.codes import XTB
from aiida_qrnn.testing.structures import ethylene_glycol, hydronium, make_water_clusters


def direct_xtb(atoms: Atoms, folder: Path, *flags: str) -> str:
    """Run xtb by hand on ``atoms`` (charge from ``info``) and return its stdout."""
    folder.mkdir(parents=True)
    ase.io.write(folder / 'mol.xyz', atoms, format='xyz')
    command = [XTB, 'mol.xyz', '--grad', '--chrg', str(atoms.info.get('total_charge', 0)), '--uhf', '0', *flags]
    environment = {**os.environ, 'OMP_NUM_THREADS': '1'}
    return subprocess.run(command, cwd=folder, env=environment, capture_output=True, text=True, check=True).stdout


def total_energy_ev(stdout: str) -> float:
    return float(re.search(r'TOTAL ENERGY\s+(\S+) Eh', stdout).group(1)) * HARTREE_TO_EV


def dipole_e_angstrom(stdout: str) -> np.ndarray:
    """The ``full:`` row (a.u.) of the ``molecular dipole`` table."""
    row = re.search(r'molecular dipole:.*?full:\s+(\S+)\s+(\S+)\s+(\S+)', stdout, re.DOTALL)
    return np.array([float(x) for x in row.groups()]) * E_BOHR_TO_E_ANGSTROM


def test_labels_match_direct_xtb(xtb_code, tmp_path):
    """Water monomer and dimer, ethylene glycol and H3O+: labels equal a direct xtb run, forces its -dE/dx."""
    images = [*make_water_clusters(2), ethylene_glycol(), hydronium()]
    clusters = ClusterSetData.from_atoms(images)
    results, node = run_get_node(XtbCalculation, code=xtb_code, clusters=clusters)

    assert node.exit_status == 0, node.exit_message
    assert 'failed_clusters' not in results
    labelled = results['clusters']
    assert labelled.level_of_theory == 'gfn2-xtb'
    given, arrays = clusters.get_arrays().validate(), labelled.get_arrays().validate()
    for name in ('numbers', 'positions', 'offsets', 'molecule', 'total_charge', 'kind', 'source'):
        np.testing.assert_array_equal(getattr(arrays, name), getattr(given, name), err_msg=name)
    np.testing.assert_array_equal(arrays.total_charge, [0, 0, 0, 1])
    for values in arrays.labels.values():
        assert np.all(np.isfinite(values))
    charge_sums = np.add.reduceat(arrays.labels['charges'], arrays.offsets[:-1])
    np.testing.assert_allclose(charge_sums, arrays.total_charge, atol=1e-3)

    for index, atoms in enumerate(images):
        stdout = direct_xtb(atoms, tmp_path / str(index))
        assert arrays.labels['energy'][index] == pytest.approx(total_energy_ev(stdout), abs=1e-6)
        np.testing.assert_allclose(arrays.labels['dipole'][index], dipole_e_angstrom(stdout), atol=1e-3)

    # Forces are minus the gradient, in eV/Å: central differences of tightly converged energies (O of glycol).
    glycol, step = images[2], 5e-3
    rows = slice(arrays.offsets[2], arrays.offsets[3])
    for axis in range(3):
        energies = []
        for sign in (1, -1):
            displaced = glycol.copy()
            displaced.positions[0, axis] += sign * step
            energies.append(total_energy_ev(direct_xtb(displaced, tmp_path / f'fd{axis}{sign}', '--acc', '0.01')))
        force = -(energies[0] - energies[1]) / (2 * step)
        assert arrays.labels['forces'][rows][0, axis] == pytest.approx(force, abs=5e-3)


def test_failing_cluster_does_not_stop_the_others(xtb_code):
    """Water at charge -6 (16 electrons: sane, but more than GFN2's valence basis holds) makes xtb stop; the
    clusters after it are still labelled. (An H atom on top of the O is refused before xtb runs.)"""
    broken = make_water_clusters(1)[0]
    broken.info.update(source='broken', total_charge=-6)
    images = [make_water_clusters(1)[0], broken, ethylene_glycol()]
    results, node = run_get_node(XtbCalculation, code=xtb_code, clusters=ClusterSetData.from_atoms(images))

    assert node.exit_status == XtbCalculation.exit_codes.ERROR_SOME_CLUSTERS_FAILED.status
    assert node.exit_message.startswith('1 of 3 clusters failed (abnormal_termination: 1)')
    assert [entry['index'] for entry in results['failed_clusters'].get_list()] == [1]
    labelled = results['clusters'].get_arrays().validate()
    assert list(labelled.source) == [images[0].info['source'], 'ethylene glycol']
    assert labelled.labels['forces'].shape == (13, 3)
    logs = [log.message for log in orm.Log.collection.get_logs_for(node)]
    assert any('abnormal_termination' in message and 'Not enough basis functions' in message for message in logs)


def test_parameters_reach_xtb(xtb_code, tmp_path):
    """GFN1 with every optional flag: the label equals xtb run by hand with the same flags."""
    parameters = {'gfn': 1, 'accuracy': 0.1, 'electronic_temperature': 500.0, 'max_iterations': 100}
    water = make_water_clusters(1)[0]
    results, node = run_get_node(
        XtbCalculation, code=xtb_code, clusters=ClusterSetData.from_atoms([water]), parameters=orm.Dict(parameters)
    )

    assert node.exit_status == 0, node.exit_message
    assert results['clusters'].level_of_theory == 'gfn1-xtb'
    flags = ('--gfn', '1', '--acc', '0.1', '--etemp', '500.0', '--iterations', '100')
    stdout = direct_xtb(water, tmp_path / 'direct', *flags)
    assert results['clusters'].get_arrays().labels['energy'][0] == pytest.approx(total_energy_ev(stdout), abs=1e-6)


@pytest.mark.parametrize(
    ('parameters', 'key'),
    [
        ({'acuracy': 0.1}, 'acuracy'),
        ({'gfn': 0}, 'gfn'),
        ({'gfn': 2.0}, 'gfn'),
        ({'accuracy': 1e-6}, 'accuracy'),
        ({'electronic_temperature': -1.0}, 'electronic_temperature'),
        ({'max_iterations': 2.5}, 'max_iterations'),
        ({'max_iterations': True}, 'max_iterations'),
    ],
)
def test_validate_parameters_names_the_key(parameters, key):
    message = validate_parameters(orm.Dict(parameters), None)
    assert message is not None
    assert key in message


def test_invalid_parameters_refused_before_running(aiida_code_installed):
    code = aiida_code_installed(default_calc_job_plugin='qrnn.xtb', filepath_executable='/bin/true')
    clusters = ClusterSetData.from_atoms(make_water_clusters(1))
    with pytest.raises(ValueError, match='acuracy'):
        run_get_node(XtbCalculation, code=code, clusters=clusters, parameters=orm.Dict({'acuracy': 0.1}))


def test_validate_clusters_refuses_periodic():
    images = make_water_clusters(2)
    images[1].cell, images[1].pbc = np.eye(3) * 10.0, True
    assert 'cluster 1 is periodic' in validate_clusters(ClusterSetData.from_atoms(images), None)
    assert validate_clusters(ClusterSetData.from_atoms(images[:1]), None) is None


def test_validate_clusters_refuses_what_cannot_be_run_closed_shell():
    """xtb runs --uhf 0; a +1 water dimer has 19 electrons and was only warned about after the run."""
    images = make_water_clusters(2)
    images[1].info['total_charge'] = 1
    message = validate_clusters(ClusterSetData.from_atoms(images), None)
    assert message.startswith('clusters: cluster 1 (id ') and 'cannot have spin multiplicity 1' in message


def test_odd_electron_cluster_refused_at_submission(aiida_code_installed):
    code = aiida_code_installed(default_calc_job_plugin='qrnn.xtb', filepath_executable='/bin/true')
    images = make_water_clusters(1)
    images[0].info['total_charge'] = -1
    with pytest.raises(ValueError, match=r'clusters: cluster 0 .* 11 electrons \(total charge -1\)'):
        run_get_node(XtbCalculation, code=code, clusters=ClusterSetData.from_atoms(images))
