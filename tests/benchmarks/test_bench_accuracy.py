"""The accuracy benchmark's --quick mode runs end to end (real GFN2-xTB labels, OpenMM frames, both models trained),
so it cannot rot; no accuracy is asserted, only that it produces finite errors for every model and set."""

from __future__ import annotations

import json
import math

import pytest

from aiida_qrnn.testing.benchmarks import loaded_benchmark

pytest.importorskip('torchani')
pytest.importorskip('tblite')
pytest.importorskip('openmm')


@pytest.fixture(scope='module')
def bench_accuracy():
    with loaded_benchmark('bench_accuracy') as module:
        yield module


def test_quick_mode_trains_both_models_merges_and_caches_its_data(bench_accuracy, tmp_path, monkeypatch):
    monkeypatch.setenv('TORCHANI_NO_WARN_EXTENSIONS', '1')
    output = tmp_path / 'accuracy.json'
    report = bench_accuracy.main(['--quick', '--data-dir', str(tmp_path / 'data'), '--output', str(output)])
    assert json.loads(output.read_text())['summary'] == report['summary']
    held_out = {f'md_{units}eg_{molecules}mol' for units in (3, 6, 10) for molecules in (1, 2)}
    assert set(report['n_clusters']) == {'train', 'validation', *held_out}
    assert all(count > 0 for count in report['n_clusters'].values())
    assert set(report['summary']) == {'qrnn-small:w10', 'ani:w10'}
    for variant, sets in report['summary'].items():
        assert set(sets) == {'validation', 'extensivity', *held_out}, variant
        for key in ('validation', *held_out):
            for metric in ('forces_mae', 'energy_per_atom_mae_meV'):
                assert math.isfinite(sets[key][metric]) and sets[key][metric] > 0, (variant, key, metric)
            # a mean signed error is bounded by the mean absolute one
            assert abs(sets[key]['energy_per_atom_mean_signed_meV']) <= sets[key]['energy_per_atom_mae_meV'] + 1e-9
    assert report['machine']['cores'] >= 1 and report['compare'] == ['qrnn-small:w10', 'ani:w10']
    assert not any(info['cached'] for info in report['data'].values())
    merged = bench_accuracy.main(['--merge', str(output), '--output', str(tmp_path / 'merged.json')])
    assert merged['summary'] == report['summary'] and merged['compare'] == report['compare']
    again = bench_accuracy.main(['--quick', '--data-only', '--data-dir', str(tmp_path / 'data')])
    assert set(again['data']) == set(report['data']) and all(info['cached'] for info in again['data'].values())


def test_variant_names_are_parsed_and_bad_ones_named(bench_accuracy):
    paper = bench_accuracy.Variant.parse('qrnn:sigma')
    assert paper.force_weight is None and not paper.energy_per_atom and paper.charges and paper.dtype == 'float64'
    fixed = bench_accuracy.Variant.parse('qrnn-small:w10:noq:f32')
    assert fixed.force_weight == 10.0 and fixed.energy_per_atom and not fixed.charges and fixed.dtype == 'float32'
    assert not bench_accuracy.Variant.parse('ani:w0.01:total').energy_per_atom
    assert bench_accuracy.Variant.parse('qrnn:w10:local').left_out == ('coulomb', 'dispersion')
    assert bench_accuracy.Variant.parse('qrnn:w10:nodisp').left_out == ('dispersion',)
    with pytest.raises(ValueError, match="'ani:w10:local'"):
        bench_accuracy.Variant.parse('ani:w10:local')
    with pytest.raises(ValueError, match="'ani:sigma'"):
        bench_accuracy.Variant.parse('ani:sigma')
    with pytest.raises(ValueError, match=r"unknown options \['fast'\]"):
        bench_accuracy.Variant.parse('qrnn:w1:fast')
