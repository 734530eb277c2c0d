"""``XtbParser`` and ``parse_raw.xtb`` on stored outputs of real xtb 6.5.1 runs (see ``fixtures/xtb/README.md``)."""

from __future__ import annotations

from pathlib import Path

import ase.io
import numpy as np
import pytest
from aiida import orm

from aiida_qrnn.calculations.xtb import XtbCalculation
from aiida_qrnn.core.dataset import ClusterArrays
from aiida_qrnn.core.units import E_BOHR_TO_E_ANGSTROM, HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM, HARTREE_TO_EV
from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.parsers.parse_raw.xtb import (
    FailureReason,
    XtbOutputError,
    parse_cluster,
    parse_gradient,
    parse_xtbout_json,
)
from aiida_qrnn.parsers.records import unphysical_labels
from aiida_qrnn.parsers.xtb import XtbParser

FIXTURES = Path(__file__).parent / 'fixtures' / 'xtb'
#: The --chrg each fixture cluster was run with (README.md).
TOTAL_CHARGES = {
    'success': [0, -1], 'failures': [0, -6, 0, 0, 0], 'all_failed': [-6], 'unphysical': [0, 0, 1],
}
RETRIEVE_PATTERNS = [f'c*{suffix}' for suffix in XtbCalculation.OUTPUT_SUFFIXES.values()]


def read_files(case: str, index: int) -> dict[str, str | None]:
    """The outputs of one fixture cluster as ``parse_cluster`` takes them."""
    files = {}
    for key, suffix in XtbCalculation.OUTPUT_SUFFIXES.items():
        path = FIXTURES / case / f'{XtbCalculation.prefix(index)}{suffix}'
        files[key] = path.read_text() if path.is_file() else None
    return files


@pytest.fixture
def generate_calc_job_node(generate_calc_job_node):
    """The shared factory with xtb's input set: the case's clusters with the charges of :data:`TOTAL_CHARGES` and
    ``parameters``; ``retrieve=False`` retrieves nothing."""

    def factory(case: str, *, parameters: dict | None = None, retrieve: bool = True) -> orm.CalcJobNode:
        images = []
        for path, charge in zip(sorted((FIXTURES / case).glob('c*.xyz')), TOTAL_CHARGES[case], strict=True):
            atoms = ase.io.read(path, format='xyz')
            atoms.info['total_charge'] = charge
            images.append(atoms)
        inputs = {'clusters': ClusterSetData.from_atoms(images)}
        if parameters is not None:
            inputs['parameters'] = orm.Dict(parameters)
        return generate_calc_job_node('xtb', case, inputs=inputs, retrieve=RETRIEVE_PATTERNS if retrieve else [])

    return factory


def test_parser_success(generate_calc_job_node):
    node = generate_calc_job_node('success')
    results, calcfunction = XtbParser.parse_from_node(node, store_provenance=False)

    assert calcfunction.exit_status == 0, calcfunction.exit_message
    assert 'failed_clusters' not in results
    clusters = results['clusters']
    assert clusters.level_of_theory == 'gfn2-xtb'
    assert sorted(clusters.label_names) == ['charges', 'dipole', 'energy', 'forces']
    arrays = clusters.get_arrays()
    assert list(arrays.total_charge) == TOTAL_CHARGES['success']
    # Numbers copied from success/c000000.gradient and c000000.xtbout.json.
    assert arrays.labels['energy'][0] == pytest.approx(-5.07037076185 * HARTREE_TO_EV, abs=1e-12)
    np.testing.assert_allclose(
        arrays.labels['forces'][1], -np.array([-7.6572247225646e-18, -4.4262812903951e-03, -1.4701110580603e-03])
        * HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM, rtol=1e-12,
    )
    np.testing.assert_allclose(arrays.labels['dipole'][0], np.array([0.0, 0.0, -0.89351470]) * E_BOHR_TO_E_ANGSTROM)
    sums = np.add.reduceat(arrays.labels['charges'], arrays.offsets[:-1])
    np.testing.assert_allclose(sums, TOTAL_CHARGES['success'], atol=1e-6)


def test_parser_partial_failure(generate_calc_job_node):
    node = generate_calc_job_node('failures', parameters={'gfn': 2})
    results, calcfunction = XtbParser.parse_from_node(node, store_provenance=False)

    assert calcfunction.exit_status == XtbCalculation.exit_codes.ERROR_SOME_CLUSTERS_FAILED.status
    assert '4 of 5 clusters failed' in calcfunction.exit_message
    assert [entry['index'] for entry in results['failed_clusters'].get_list()] == [1, 2, 3, 4]
    clusters = results['clusters']
    assert clusters.n_clusters == 1
    assert clusters.get_arrays().labels['energy'][0] == pytest.approx(-5.07037076185 * HARTREE_TO_EV, abs=1e-12)


def test_parser_all_failed(generate_calc_job_node):
    node = generate_calc_job_node('all_failed')
    results, calcfunction = XtbParser.parse_from_node(node, store_provenance=False)

    assert calcfunction.exit_status == XtbCalculation.exit_codes.ERROR_ALL_CLUSTERS_FAILED.status
    assert 'abnormal_termination: 1' in calcfunction.exit_message
    assert [entry['index'] for entry in results['failed_clusters'].get_list()] == [0]
    assert 'clusters' not in results


def test_parser_nothing_retrieved(generate_calc_job_node):
    node = generate_calc_job_node('success', retrieve=False)
    results, calcfunction = XtbParser.parse_from_node(node, store_provenance=False)

    assert calcfunction.exit_status == XtbCalculation.exit_codes.ERROR_NO_OUTPUT.status
    assert not results


@pytest.mark.parametrize(
    ('index', 'reason', 'words'),
    [
        (1, FailureReason.ABNORMAL_TERMINATION, 'Not enough basis functions'),
        (2, FailureReason.SCF_NOT_CONVERGED, 'did not converge'),
        (3, FailureReason.UNREADABLE_OUTPUT, 'truncated'),
        (4, FailureReason.MISSING_OUTPUT, 'did not run'),
    ],
)
def test_parse_cluster_failure_reasons(index, reason, words):
    data, logs = parse_cluster(n_atoms=3, **read_files('failures', index))
    assert data == {}
    assert len(logs.errors) == 1
    assert logs.errors[0][0] == reason
    assert words in logs.errors[0][1]


def test_parse_cluster_odd_electron_closed_shell_is_refused():
    """xtb opens the shell of an odd electron count despite --uhf 0: that is not the state asked for."""
    data, logs = parse_cluster(n_atoms=1, **read_files('unphysical', 1))
    assert data == {}
    assert logs.errors[0][0] == FailureReason.UNPHYSICAL
    assert '1 unpaired electron(s)' in logs.errors[0][1]


def test_parser_refuses_closed_shell_labels_of_odd_electron_counts(generate_calc_job_node):
    """Before, the H atom and water+ run closed-shell were labelled with only a warning and entered reuse."""
    node = generate_calc_job_node('unphysical')
    results, calcfunction = XtbParser.parse_from_node(node, store_provenance=False)

    assert calcfunction.exit_status == XtbCalculation.exit_codes.ERROR_SOME_CLUSTERS_FAILED.status
    assert '2 of 3 clusters failed (unphysical: 2)' in calcfunction.exit_message
    failed = results['failed_clusters'].get_list()
    assert [entry['index'] for entry in failed] == [1, 2]
    assert all('1 unpaired electron(s)' in entry['message'] for entry in failed)
    labelled = results['clusters'].get_arrays()
    assert labelled.n_clusters == 1
    assert labelled.labels['energy'][0] == pytest.approx(-5.07037076185 * HARTREE_TO_EV, abs=1e-12)


def test_labels_of_real_xtb_runs_of_impossible_structures_are_refused():
    """xtb finishes normally on C-C 0.1 Å apart (+2190 eV) and on ethylene glycol at charge +40 (-6 electrons,
    +2537 eV); both were labelled before. The parser's check sends them to failed_clusters."""
    images = [ase.io.read(path, format='xyz') for path in sorted((FIXTURES / 'impossible').glob('c*.xyz'))]
    arrays = ClusterArrays(
        numbers=np.concatenate([atoms.numbers for atoms in images]),
        positions=np.concatenate([atoms.positions for atoms in images]),
        offsets=np.cumsum([0] + [len(atoms) for atoms in images]), total_charge=np.array([0, 40]),
        kind=['conformational', 'conformational'],
    )
    problems = []
    for index, atoms in enumerate(images):
        data, logs = parse_cluster(n_atoms=len(atoms), **read_files('impossible', index))
        assert not logs.errors  # xtb itself sees nothing wrong
        problems.append(unphysical_labels(arrays, index, data['energy']))
    assert 'C0 and C1 are 0.1 Å apart' in problems[0] and 'above -1.0 eV per atom' in problems[0]
    assert 'total charge +40 leaves -6 electrons' in problems[1] and 'energy 2537.01 eV' in problems[1]


def test_parse_cluster_atom_count_mismatch():
    _, logs = parse_cluster(n_atoms=4, **read_files('success', 0))
    assert logs.errors[0][0] == FailureReason.ATOM_COUNT_MISMATCH
    assert '4 atoms' in logs.errors[0][1]


def test_parse_cluster_missing_json_and_non_finite():
    files = read_files('success', 0)
    _, logs = parse_cluster(n_atoms=3, **{**files, 'xtbout_json': None})
    assert logs.errors[0][0] == FailureReason.MISSING_OUTPUT
    nan_gradient = files['gradient'].replace('2.9402221161206E-03', 'NaN')
    _, logs = parse_cluster(n_atoms=3, **{**files, 'gradient': nan_gradient})
    assert logs.errors[0] == (FailureReason.NON_FINITE, 'xtb returned NaN or infinite forces.')


def test_parse_gradient_fortran_numbers_and_last_cycle():
    block = (
        '$grad\n  cycle =      {cycle}    SCF energy =    {energy}   |dE/dxyz| =**********\n'
        '    0.0 0.0 0.0      H \n    0.0 0.0 1.4      H \n'
        '   1.0D-02   0.0D+00  -2.5-100\n  -1.0D-02   0.0E+00   2.5-100\n$end\n'
    )
    content = block.format(cycle=1, energy='-1.0') + block.format(cycle=2, energy='-1.16599D+00')
    parsed = parse_gradient(content)
    assert parsed['energy_hartree'] == -1.16599
    np.testing.assert_array_equal(parsed['gradient_hartree_per_bohr'], [[1e-2, 0.0, -2.5e-100], [-1e-2, 0.0, 2.5e-100]])


@pytest.mark.parametrize(
    'content',
    ['$grad\n$end\n', '$grad\n  cycle = 1  SCF energy = ******\n 0 0 0 H\n0 0 1\n$end\n'],
    ids=['no-cycle', 'overflowed-energy'],
)
def test_parse_gradient_unreadable(content):
    with pytest.raises(XtbOutputError) as info:
        parse_gradient(content)
    assert info.value.reason == FailureReason.UNREADABLE_OUTPUT


def test_parse_xtbout_json_truncated():
    content = (FIXTURES / 'success' / 'c000000.xtbout.json').read_text()
    assert parse_xtbout_json(content)['unpaired_electrons'] == 0
    with pytest.raises(XtbOutputError, match=r'xtbout\.json is unreadable'):
        parse_xtbout_json(content[: len(content) // 2])
