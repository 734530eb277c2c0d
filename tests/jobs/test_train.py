"""``aiida-qrnn-exec train`` in-process (click's runner): bad input gets exit status 1 and a message naming it; a
transfer run extends the parent by the data's new elements."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import torch
from ase.build import molecule
from click.testing import CliRunner

from aiida_qrnn.cli.exec import cli
from aiida_qrnn.core.dataset import ClusterArrays, write_cluster_set
from aiida_qrnn.core.model.calculator import load_model, save_model
from aiida_qrnn.testing.models import TINY_CONFIG, label_with_teacher, teacher_labelled_clusters, tiny_model


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


def _ammonia_water_clusters(n_clusters: int) -> ClusterArrays:
    """Ammonia-water pairs labelled by a random H, C, N, O teacher (energy, forces, charges, dipole)."""
    rng = np.random.default_rng(3)
    images = []
    for index in range(n_clusters):
        ammonia, water = molecule('NH3'), molecule('H2O')
        water.positions += np.array([3.0, 0.0, 0.0]) + rng.normal(scale=0.3, size=3)
        cluster = ammonia + water
        cluster.positions += rng.normal(scale=0.05, size=cluster.positions.shape)
        cluster.arrays['molecule'] = np.repeat(np.arange(2, dtype=np.int32), [4, 3])
        cluster.info.update(kind='conformational', source=f'ammonia-water {index}')
        images.append(cluster)
    teacher = tiny_model(5, dataclasses.replace(TINY_CONFIG, elements=('H', 'C', 'N', 'O')))
    return label_with_teacher(ClusterArrays.from_atoms(images), teacher)


def test_transfer_to_data_with_a_new_element_extends_the_parent(tmp_path):
    """An H, C, O parent meets nitrogen: the job adds N (parent elements first), fits its self-energy, trains."""
    (tmp_path / 'datasets').mkdir()
    write_cluster_set(tmp_path / 'datasets' / 'a.h5', _ammonia_water_clusters(6), level_of_theory='teacher')
    parent = tiny_model(1, dataclasses.replace(TINY_CONFIG, elements=('H', 'C', 'O')))
    parent.self_energies.copy_(torch.tensor([-13.6, -1029.0, -2041.0], dtype=torch.float64))
    save_model(parent, tmp_path / 'parent_model.safetensors')
    (tmp_path / 'train_input.json').write_text(json.dumps(
        {'datasets': ['datasets/a.h5'], 'training': {'max_epochs': 1, 'batch_size': 2, 'seed': 0}}))
    result = CliRunner().invoke(cli, ['train', str(tmp_path)])
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / 'results.json').read_text())
    assert results['epochs'] == 1 and results['transfer_learning']
    model = load_model(tmp_path / 'model.safetensors')
    assert tuple(model.config.elements) == ('H', 'C', 'O', 'N')
    nitrogen = results['self_energies_eV']['N']
    assert np.isfinite(nitrogen) and nitrogen != 0.0
