"""ModelData: any state_dict + config round-trips exactly, loads without executing code, and is hashed."""

from __future__ import annotations

import pytest
import torch
from aiida import orm

from aiida_qrnn.data.model import ModelData, ModelDataError


def small_network() -> torch.nn.Module:
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.CELU(0.1), torch.nn.Linear(8, 1))
    network.register_buffer('self_energies', torch.tensor([-0.5, -37.8, -75.0], dtype=torch.float64))
    return network


CONFIG = {'aev': {'radial_cutoff': 5.1, 'angular_cutoff': 3.5}, 'hidden': [8], 'activation': 'celu'}


def test_state_dict_and_config_round_trip(aiida_profile):
    network = small_network()
    node = ModelData(network.state_dict(), config=CONFIG, elements=['H', 'C', 'O'], metrics={'energy_mae': 0.01})
    node.store()
    loaded = orm.load_node(node.pk)
    state = loaded.get_state_dict()
    assert set(state) == set(network.state_dict())
    for name, tensor in network.state_dict().items():
        assert state[name].dtype == tensor.dtype
        assert torch.equal(state[name], tensor)
    assert loaded.config == CONFIG
    assert loaded.elements == ['H', 'C', 'O']
    assert loaded.metrics == {'energy_mae': 0.01}
    assert loaded.base.attributes.get('n_parameters') == sum(t.numel() for t in network.state_dict().values())
    fresh = small_network()
    with torch.no_grad():
        for parameter in fresh.parameters():
            parameter.zero_()
    fresh.load_state_dict(state)
    x = torch.randn(3, 4)
    assert torch.equal(fresh(x), network(x))
    assert loaded.verify()


def test_hash_identifies_content():
    network = small_network()
    first = ModelData(network.state_dict(), config=CONFIG, elements=['H', 'C', 'O'])
    same = ModelData(small_network().state_dict(), config=dict(CONFIG), elements=['H', 'C', 'O'])
    assert first.model_hash == same.model_hash
    other_config = ModelData(network.state_dict(), config={**CONFIG, 'hidden': [16]}, elements=['H', 'C', 'O'])
    state = network.state_dict()
    state['0.bias'] = state['0.bias'] + 1e-7
    other_weights = ModelData(state, config=CONFIG, elements=['H', 'C', 'O'])
    assert len({first.model_hash, other_config.model_hash, other_weights.model_hash}) == 3


def test_export_and_import_a_self_describing_file(aiida_profile, tmp_path):
    node = ModelData(small_network().state_dict(), config=CONFIG, elements=['H', 'C', 'O']).store()
    path = node.export(tmp_path / 'model.safetensors')
    again = ModelData.from_file(path)
    assert again.model_hash == node.model_hash
    assert again.config == CONFIG


def test_shared_and_non_contiguous_tensors_are_stored():
    weight = torch.randn(4, 6)
    state = {'a': weight, 'tied': weight, 'transposed': weight.t(), 'half': torch.ones(3, dtype=torch.bfloat16)}
    node = ModelData(state, config={}, elements=['H'])
    loaded = node.get_state_dict()
    assert torch.equal(loaded['transposed'], weight.t())
    assert loaded['half'].dtype == torch.bfloat16


@pytest.mark.parametrize(
    ('kwargs', 'message'),
    [
        ({'state_dict': {}}, 'state_dict is empty'),
        ({'state_dict': {'w': [1.0, 2.0]}}, "entry 'w' is a list, not a tensor"),
        ({'config': {'bad': object()}}, 'config must be JSON-serialisable'),
        ({'config': {'x': float('nan')}}, 'config must be JSON-serialisable'),
        ({'elements': ['H', 'Xx']}, 'unknown'),
        ({'elements': ['H', 'H']}, 'distinct'),
    ],
)
def test_bad_model_input_is_refused(kwargs, message):
    arguments = {'state_dict': {'w': torch.ones(2)}, 'config': {}, 'elements': ['H']} | kwargs
    with pytest.raises(ModelDataError, match=message):
        ModelData(**arguments)


def test_pickle_file_is_not_accepted_as_model(tmp_path):
    path = tmp_path / 'model.pt'
    torch.save({'w': torch.ones(2)}, path)
    with pytest.raises(ModelDataError, match='not a readable safetensors file'):
        ModelData.from_file(path)
