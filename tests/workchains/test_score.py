"""ScoreWorkChain: shards scored by real ScoreCalculations give the scores of one job, in input order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from aiida import orm
from aiida.engine import run_get_node

from aiida_qrnn.core.model.calculator import save_model
from aiida_qrnn.core.model.qrnn import QRNN, QRNNConfig
from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.data.model import ModelData
from aiida_qrnn.testing.structures import make_water_clusters
from aiida_qrnn.workchains.score import ScoreWorkChain


def committee(folder: Path) -> dict[str, ModelData]:
    config = QRNNConfig(elements=('H', 'O'), charge_hidden=(8,), energy_hidden=(8,))
    members = {}
    for seed in range(2):
        torch.manual_seed(seed)
        members[f'member_{seed}'] = ModelData.from_file(save_model(QRNN(config).double(), folder / f'{seed}.st'))
    return members


def test_shards_give_the_scores_of_one_job(aiida_profile, score_code, tmp_path):
    candidates = ClusterSetData.from_atoms(make_water_clusters(7, seed=5))
    score = {'code': score_code, 'models': committee(tmp_path), 'parameters': orm.Dict({'dtype': 'float64'})}

    whole, whole_node = run_get_node(ScoreWorkChain, clusters=candidates, score=score)
    sharded, sharded_node = run_get_node(ScoreWorkChain, clusters=candidates, score=score, shard_size=orm.Int(3))

    assert whole_node.is_finished_ok and sharded_node.is_finished_ok
    jobs = [node for node in sharded_node.called if node.process_type == 'aiida.calculations:qrnn.score']
    assert sorted(len(node.inputs.clusters.get_arrays().ids) for node in jobs) == [1, 3, 3]
    assert len([node for node in whole_node.called if node.process_type == 'aiida.calculations:qrnn.score']) == 1
    for name in ('rho_f', 'max_force_deviation', 'energy_std', 'energy'):
        np.testing.assert_allclose(sharded['scores'].get_array(name), whole['scores'].get_array(name), rtol=1e-12)
    assert len(sharded['scores'].get_array('rho_f')) == 7
