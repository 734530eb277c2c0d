"""The long-range benchmark's --quick mode end to end (real GFN2-xTB labels with total charges, both models trained
for two epochs). What it checks is physics that holds after any amount of training: xTB's ion pairs follow
Coulomb's law far apart with integer fragment charges, a local model (ANI) is exactly flat once the fragments are
beyond its cutoff, and the QRNN, fed the total charge, is not."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from aiida_qrnn.testing.benchmarks import loaded_benchmark

pytest.importorskip('torchani')
pytest.importorskip('tblite')
pytest.importorskip('rdkit')

COULOMB_CONSTANT = 14.399645  # eV Å / e²


@pytest.fixture(scope='module')
def bench():
    with loaded_benchmark('bench_long_range') as module:
        yield module


@pytest.fixture(scope='module')
def quick(bench, tmp_path_factory):
    folder = tmp_path_factory.mktemp('long_range')
    output = folder / 'long_range.json'
    report = bench.main(['--quick', '--data-dir', str(folder / 'data'), '--output', str(output)])
    return report, folder


def at(values: dict, name: str, separation: float) -> float:
    return values['energy'][name][values['separation'].index(separation)]


def test_quick_mode_writes_report_plot_and_charged_training_data(bench, quick):
    report, folder = quick
    assert json.loads((folder / 'long_range.json').read_text())['summary'] == report['summary']
    assert (folder / 'long_range.png').stat().st_size > 10_000
    assert set(report['scans']) == set(bench.SCANS) and set(report['runs']) == {'qrnn-small:w10', 'ani:w10'}
    assert {'-1', '0', '1'} <= set(report['total_charges'])  # charged clusters, their total charge stored
    again, info = bench.training_set(bench.QUICK, 0, folder / 'data')
    assert info == {'cached': True} and again.n_clusters == report['n_clusters']
    assert any(again.total_charge != 0)
    for name, scans in report['summary'].items():
        for scan, errors in scans.items():
            assert all(math.isfinite(value) and value >= 0 for value in errors.values()), (name, scan)
    assert report['machine']['cores'] >= 1 and report['machine']['torch']


@pytest.mark.parametrize('scan', ['cation_pair', 'anion_pair'])
def test_xtb_ion_pairs_reach_the_coulomb_law_with_integer_charges(quick, scan):
    values = quick[0]['scans'][scan]
    q1, q2 = (1, 1) if scan == 'cation_pair' else (-1, -1)
    assert values['total_charge'] == q1 + q2
    beyond = np.array(values['closest_gap']) > 5.1
    assert beyond.sum() >= 3
    assert np.allclose(np.array(values['xtb_fragment_a_charge'])[beyond], q1, atol=0.02)
    coulomb = COULOMB_CONSTANT * q1 * q2 * (1 / 12 - 1 / 15)  # 0.24 eV
    assert at(values, 'xtb', 12.0) - at(values, 'xtb', 15.0) == pytest.approx(coulomb, rel=0.1)


@pytest.mark.parametrize('scan', ['cation_pair', 'anion_pair'])
def test_local_model_is_flat_beyond_its_cutoff_and_the_qrnn_is_not(quick, scan):
    values = quick[0]['scans'][scan]
    beyond = np.array(values['closest_gap']) > 5.1
    ani = np.array(values['energy']['ani:w10'])[beyond]
    assert np.ptp(ani) < 1e-8  # ANI cannot see the other ion
    # the QRNN's Coulomb term of its equilibrated charges: like charges repel, a long way out
    assert at(values, 'qrnn-small:w10', 12.0) - at(values, 'qrnn-small:w10', 15.0) > 0.05
