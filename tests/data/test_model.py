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
    path, _ = small_qrnn_file(tmp_path / 'written.safetensors')
    node = ModelData.from_file(path).store()
    again = ModelData.from_file(node.export(tmp_path / 'model.safetensors'))
    assert again.model_hash == node.model_hash
    assert again.config == node.config


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


# -- storing verifies --------------------------------------------------------------------------------------------
def test_verify_holds_for_a_stored_node_with_floats_aiida_rounds(aiida_profile):
    """Before: AiiDA stores floats with 14 significant digits, so verify() was False for every stored QRNN model
    (its default AEV shifts hold values such as 2.4124999999999996)."""
    from aiida_qrnn.core.model.qrnn import QRNNConfig

    config = {**QRNNConfig().to_dict(), 'extra': [0.1 + 0.2, 1 / 3, 2.4124999999999996]}
    node = ModelData(small_network().state_dict(), config=config, elements=['H', 'C', 'O']).store()
    loaded = orm.load_node(node.pk)
    assert loaded.config['extra'][0] == 0.3  # what AiiDA stored
    assert loaded.verify()
    state = loaded.get_state_dict()
    state['0.bias'][0] += 1e-3
    tampered = ModelData(state, config=loaded.config, elements=loaded.elements)
    assert tampered.model_hash != loaded.model_hash


def small_qrnn_file(path, **config_changes):
    from aiida_qrnn.core.model.calculator import save_model
    from aiida_qrnn.core.model.qrnn import QRNN, QRNNConfig

    torch.manual_seed(1)
    model = QRNN(QRNNConfig(charge_hidden=(8,), energy_hidden=(8,), **config_changes))
    return save_model(model, path), model


def rewrite(path, change_state=None, change_config=None, change_elements=None):
    """Rewrite a model file with changed weights, config or elements (a crafted or broken file)."""
    import json

    from safetensors.torch import save_file

    from aiida_qrnn.core.model.calculator import read_model_file
    from aiida_qrnn.core.model.file_format import MODEL_FORMAT, MODEL_FORMAT_VERSION

    state, config, elements = read_model_file(path)
    for change, value in ((change_state, state), (change_config, config), (change_elements, elements)):
        if change is not None:
            change(value)
    save_file(state, str(path), metadata={'format': MODEL_FORMAT, 'format_version': str(MODEL_FORMAT_VERSION),
                                          'config': json.dumps(config), 'elements': json.dumps(elements)})
    return path


def test_a_real_model_file_is_stored_and_verifies(aiida_profile, tmp_path):
    path, model = small_qrnn_file(tmp_path / 'model.safetensors')
    node = ModelData.from_file(path).store()
    assert orm.load_node(node.pk).verify()
    assert set(node.get_state_dict()) == set(model.state_dict())


@pytest.mark.parametrize(
    ('change_state', 'change_config', 'change_elements', 'message'),
    [
        (lambda s: s.__setitem__('energy_networks.networks.0.0.weight', torch.ones(3, 3)), None, None,
         r"tensor 'energy_networks.networks.0.0.weight' has shape \(3, 3\), the config needs"),
        (None, None, lambda e: e.reverse(), r"elements \['O', 'C', 'H'\] differ from the config elements"),
        (None, lambda c: c.__setitem__('min_hardness', -1.0), None, 'min_hardness must be positive'),
        (lambda s: s['charge_networks.networks.1.0.bias'].__setitem__(0, float('nan')), None, None,
         r"tensor 'charge_networks.networks.1.0.bias' holds NaN"),
        (lambda s: s.pop('self_energies'), None, None, r"weights do not fit the config \(missing \['self_energies'\]"),
        (None, lambda c: c.__setitem__('hidden', [8]), None, r"unknown QRNN config key\(s\) \['hidden'\]"),
    ],
)
def test_a_model_file_that_cannot_be_built_is_refused(aiida_profile, tmp_path, change_state, change_config,
                                                      change_elements, message):
    """Before: all of these were stored; NaN weights loaded and gave energy NaN with no error."""
    path, _ = small_qrnn_file(tmp_path / 'model.safetensors')
    rewrite(path, change_state, change_config, change_elements)
    with pytest.raises(ModelDataError, match=message):
        ModelData.from_file(path)


def test_absurd_layers_are_refused_before_anything_is_allocated(tmp_path, monkeypatch):
    """Before: a 6000x6000 hidden-layer config allocated ~1 GB before 'weights do not fit'."""
    from aiida_qrnn.core.model import calculator, qrnn

    path, _ = small_qrnn_file(tmp_path / 'model.safetensors')
    rewrite(path, change_config=lambda config: config.__setitem__('energy_hidden', [6000, 6000]))

    def no_model(*args, **kwargs):
        raise AssertionError('a model was built')

    monkeypatch.setattr(qrnn, 'QRNN', no_model)
    with pytest.raises(ModelDataError, match=r'hidden layers \[8, 6000, 6000\] are wider than 4096'):
        ModelData.from_file(path)
    monkeypatch.undo()
    rewrite(path, change_config=lambda config: config.__setitem__('energy_hidden', [2000]))
    monkeypatch.setattr(calculator, 'load_model', no_model)  # laid out on the meta device only
    with pytest.raises(ModelDataError, match=r"tensor 'energy_networks.networks.0.0.weight' has shape \(8, \d+\), "
                                             r'the config needs \(2000, \d+\)'):
        ModelData.from_file(path)


def test_a_model_that_evaluates_to_nan_is_refused(tmp_path):
    path, _ = small_qrnn_file(tmp_path / 'model.safetensors')
    rewrite(path, change_state=lambda state: state['self_energies'].fill_(1e308))  # finite, but E overflows
    with pytest.raises(ModelDataError, match='evaluating a small cluster gave non-finite energy'):
        ModelData.from_file(path)
