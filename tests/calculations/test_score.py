"""ScoreCalculation on localhost with the real ``aiida-qrnn-exec score``, and the selection calcfunction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from aiida import orm
from aiida.engine import run_get_node

from aiida_qrnn.calculations.score import ScoreCalculation
from aiida_qrnn.calculations.selection import select_for_labelling
from aiida_qrnn.core.model.calculator import save_model
from aiida_qrnn.core.model.committee import Committee
from aiida_qrnn.core.model.qrnn import QRNN, QRNNConfig
from aiida_qrnn.core.selection import committee_scores
from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.data.model import ModelData
from aiida_qrnn.testing.structures import make_water_clusters


@pytest.fixture
def committee_models(tmp_path) -> list[QRNN]:
    config = QRNNConfig(elements=('H', 'O'), charge_hidden=(8,), energy_hidden=(8,))
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(QRNN(config).double())
    return models


def model_nodes(models, folder) -> dict[str, ModelData]:
    return {f'member_{index}': ModelData.from_file(save_model(model, folder / f'm{index}.safetensors'))
            for index, model in enumerate(models)}


def test_scores_match_the_committee_in_process(aiida_profile, score_code, committee_models, tmp_path):
    images = make_water_clusters(8, seed=31)
    candidates = ClusterSetData.from_atoms(images)
    results, node = run_get_node(
        ScoreCalculation, code=score_code, clusters=candidates, models=model_nodes(committee_models, tmp_path),
        parameters=orm.Dict({'dtype': 'float64', 'max_batch_atoms': 12}),
    )
    assert node.is_finished_ok, node.exit_message
    expected = committee_scores(Committee(committee_models), candidates.get_arrays(), dtype=torch.float64)
    for name, values in expected.items():
        np.testing.assert_allclose(results['scores'].get_array(name), values, rtol=1e-10, atol=1e-12)
    assert np.all(results['scores'].get_array('rho_f') > 0)


def test_one_model_is_not_a_committee(aiida_profile, score_code, committee_models, tmp_path):
    with pytest.raises(ValueError, match='a committee needs at least two models'):
        run_get_node(ScoreCalculation, code=score_code, clusters=ClusterSetData.from_atoms(make_water_clusters(2)),
                     models=dict(list(model_nodes(committee_models, tmp_path).items())[:1]))
    with pytest.raises(ValueError, match=r"unknown keys \['batch'\]"):
        run_get_node(ScoreCalculation, code=score_code, clusters=ClusterSetData.from_atoms(make_water_clusters(2)),
                     models=model_nodes(committee_models, tmp_path), parameters=orm.Dict({'batch': 3}))


def test_selection_is_reproducible_and_keeps_provenance(aiida_profile):
    images = make_water_clusters(30, seed=41)
    for index, atoms in enumerate(images):
        atoms.info['kind'] = 'conformational' if index % 2 else 'extracted'
    candidates = ClusterSetData.from_atoms(images).store()
    rho = np.random.default_rng(0).random(30)
    scores = orm.ArrayData()
    scores.set_array('rho_f', rho)
    scores.set_array('max_force_deviation', rho)
    scores.store()
    parameters = orm.Dict({'rule': 'top_k_random', 'k': 5, 'k_random': 4, 'seed': 3,
                           'random_kinds': ['conformational']})
    first, node = select_for_labelling.run_get_node(candidates, scores, parameters)
    second = select_for_labelling(candidates, scores, orm.Dict(parameters.get_dict()))
    assert first['indices'].get_list() == second['indices'].get_list()
    chosen = np.array(first['indices'].get_list())
    random = set(first['random_indices'].get_list())
    assert len(chosen) == 9 and len(random) == 4
    assert set(np.argsort(-rho)[:5]) == set(chosen) - random
    assert all(index % 2 == 1 for index in random)  # drawn from conformational clusters only
    selected = first['clusters'].get_arrays()
    assert list(selected.ids) == list(candidates.get_arrays().ids[chosen])
    assert set(selected.kind) == {'active-learning'}
    assert node.base.links.get_incoming().get_node_by_label('clusters').pk == candidates.pk

    trust = select_for_labelling(candidates, scores, orm.Dict({'rule': 'trust_levels', 'lower': 0.2, 'upper': 0.6}))
    assert trust['indices'].get_list() == [int(i) for i in np.flatnonzero((rho >= 0.2) & (rho < 0.6))]
    with pytest.raises(ValueError, match='needs'):
        select_for_labelling(candidates, scores, orm.Dict({'rule': 'trust_levels', 'lower': 0.2}))
