"""Fuzzing the model file reader and gate (Hypothesis): a damaged file or a changed config either gives exactly the
model that was written or ``ModelDataError``/``ModelFileError`` — never a raw exception, a hang, a huge allocation
or a model that evaluates to NaN. Bounded and derandomised for CI."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiida_qrnn.core.model.calculator import load_model, read_model_file, save_model
from aiida_qrnn.core.model.file_format import ModelFileError, check_model, read_model
from aiida_qrnn.core.model.qrnn import QRNN, QRNNConfig
from aiida_qrnn.data.model import ModelData, ModelDataError

FUZZ = settings(
    max_examples=30, deadline=10_000, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope='module')
def model_file(aiida_profile, tmp_path_factory):
    """A small QRNN exported by ``ModelData`` (its metadata records the model_hash)."""
    torch.manual_seed(3)
    model = QRNN(QRNNConfig(charge_hidden=(6,), energy_hidden=(6,)))
    folder = tmp_path_factory.mktemp('model')
    written = save_model(model, folder / 'written.safetensors')
    state_dict, config, elements = read_model_file(written)
    return ModelData(state_dict, config, elements).export(folder / 'model.safetensors')


@FUZZ
@given(positions=st.lists(st.integers(0, 2**31), min_size=1, max_size=8),
       bits=st.lists(st.integers(0, 7), min_size=8, max_size=8), cut=st.none() | st.integers(0, 2**31))
def test_a_damaged_model_file_loads_exactly_or_is_refused(aiida_profile, model_file, tmp_path, positions, bits, cut):
    path, data = model_file, model_file.read_bytes()
    damaged = bytearray(data)
    for position, bit in zip(positions, bits, strict=False):
        damaged[position % len(damaged)] ^= 1 << bit
    if cut is not None:
        damaged = damaged[: cut % len(damaged)]
    broken = tmp_path / 'broken.safetensors'
    broken.write_bytes(bytes(damaged))
    try:
        node = ModelData.from_file(broken)
    except ModelDataError as error:
        assert 'broken.safetensors' in str(error)
        return
    # the flips hit bytes that do not count (e.g. JSON spacing)
    assert node.model_hash == read_model(path).recorded_hash


def json_values():
    return st.recursive(
        st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False) | st.text(max_size=5),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=12,
    )


CONFIG_KEYS = ['elements', 'aev', 'charge_hidden', 'energy_hidden', 'celu_alpha', 'min_hardness', 'coulomb',
               'dispersion', 'open_cluster_cutoff']
AEV_KEYS = ['radial_cutoff', 'angular_cutoff', 'radial_eta', 'radial_shifts', 'angular_eta', 'angular_zeta',
            'angular_shifts', 'angle_sections']


@FUZZ
@given(key=st.sampled_from(CONFIG_KEYS + [f'aev.{key}' for key in AEV_KEYS]), value=json_values())
def test_a_changed_config_is_refused_or_gives_a_model_that_evaluates(model_file, key, value):
    path = model_file
    state_dict, config, elements = read_model_file(path)
    config = json.loads(json.dumps(config))
    if key.startswith('aev.'):
        config['aev'][key[4:]] = value
    else:
        config[key] = value
    try:
        check_model(state_dict, config, elements, "'fuzzed'")
    except ModelFileError as error:
        assert str(error).startswith("'fuzzed'")
        return
    load_model(type('Source', (), {'config': config, 'elements': elements,
                                    'get_state_dict': lambda self: state_dict})())
