"""``aiida-qrnn-exec train`` in-process (click's runner): bad input gets exit status 1 and a message naming it."""

from __future__ import annotations

import json

from click.testing import CliRunner

from aiida_qrnn.cli.exec import cli
from aiida_qrnn.core.dataset import write_cluster_set
from aiida_qrnn.testing.models import TINY_CONFIG, teacher_labelled_clusters


def _job(tmp_path, model: dict, training: dict) -> None:
    (tmp_path / 'datasets').mkdir()
    write_cluster_set(tmp_path / 'datasets' / 'a.h5', teacher_labelled_clusters(6), level_of_theory='teacher')
    (tmp_path / 'train_input.json').write_text(json.dumps(
        {'datasets': ['datasets/a.h5'], 'model': model, 'training': training}))


def test_elements_the_model_lacks_are_refused(tmp_path):
    _job(tmp_path, {**TINY_CONFIG.to_dict(), 'elements': ['H', 'C']}, {'max_epochs': 1})
    result = CliRunner().invoke(cli, ['train', str(tmp_path)])
    assert result.exit_code == 1
    assert "['O']" in json.loads((tmp_path / 'error.json').read_text())['message']


def test_unknown_setting_and_missing_file_are_refused(tmp_path):
    _job(tmp_path, TINY_CONFIG.to_dict(), {'max_epoch': 1})
    result = CliRunner().invoke(cli, ['train', str(tmp_path)])
    assert result.exit_code == 1 and 'max_epoch' in (tmp_path / 'error.json').read_text()
    (tmp_path / 'train_input.json').write_text(json.dumps({'datasets': ['datasets/missing.h5']}))
    result = CliRunner().invoke(cli, ['train', str(tmp_path)])
    assert result.exit_code == 1 and 'missing.h5' in (tmp_path / 'error.json').read_text()
