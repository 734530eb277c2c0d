"""Protocols: names are exact, overrides follow one rule and name unknown keys, every builder is a regression file.

No process runs here: the tests build builders only.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiida import orm
from plumpy.ports import PortNamespace

from aiida_qrnn.workchains import protocols
from aiida_qrnn.workchains.active_learning import ActiveLearningWorkChain
from aiida_qrnn.workchains.label import LabelWorkChain
from aiida_qrnn.workchains.md import MdBaseWorkChain
from aiida_qrnn.workchains.polymer import PolymerForceFieldWorkChain
from aiida_qrnn.workchains.properties import PropertiesWorkChain
from aiida_qrnn.workchains.protocols import load_protocol
from aiida_qrnn.workchains.protocols.utils import child_inputs, recursive_merge
from aiida_qrnn.workchains.sampling import SamplingWorkChain
from aiida_qrnn.workchains.scans import PairScanWorkChain, TorsionScanWorkChain
from aiida_qrnn.workchains.score import ScoreWorkChain
from aiida_qrnn.workchains.train import TrainWorkChain

#: Every work chain with the protocol mixin, and how its builder is called with codes only.
WORK_CHAINS = {
    LabelWorkChain: lambda codes, name: LabelWorkChain.get_builder_from_protocol(codes['label'], name),
    TrainWorkChain: lambda codes, name: TrainWorkChain.get_builder_from_protocol(codes['exec'], name),
    ActiveLearningWorkChain: lambda codes, name: ActiveLearningWorkChain.get_builder_from_protocol(
        codes['exec'], codes['label'], name),
    MdBaseWorkChain: lambda codes, name: MdBaseWorkChain.get_builder_from_protocol(codes['exec'], name),
    ScoreWorkChain: lambda codes, name: ScoreWorkChain.get_builder_from_protocol(codes['exec'], name),
    SamplingWorkChain: lambda codes, name: SamplingWorkChain.get_builder_from_protocol(codes['exec'], name),
    PairScanWorkChain: lambda codes, name: PairScanWorkChain.get_builder_from_protocol(codes['label'], name),
    TorsionScanWorkChain: lambda codes, name: TorsionScanWorkChain.get_builder_from_protocol(codes['label'], name),
    PropertiesWorkChain: lambda codes, name: PropertiesWorkChain.get_builder_from_protocol(codes['exec'], name),
    PolymerForceFieldWorkChain: lambda codes, name: PolymerForceFieldWorkChain.get_builder_from_protocol(
        codes['exec'], codes['label'], name),
}
CASES = [(work_chain, name) for work_chain in WORK_CHAINS for name in work_chain.get_available_protocols()]


@pytest.fixture
def codes(aiida_code_installed) -> dict[str, orm.InstalledCode]:
    """Codes with fixed labels, so that the serialised builders do not depend on the profile."""
    return {'exec': aiida_code_installed(label='aiida-qrnn-exec', default_calc_job_plugin='qrnn.train'),
            'label': aiida_code_installed(label='xtb', default_calc_job_plugin='qrnn.xtb')}


def serialize(value: Any) -> Any:
    """Builder inputs as plain values (nodes by content, codes by label) for ``data_regression``."""
    if isinstance(value, Mapping):
        return {key: serialize(item) for key, item in sorted(value.items())}
    if isinstance(value, orm.AbstractCode):
        return f'code {value.label}'
    if isinstance(value, orm.Dict):
        return value.get_dict()
    if isinstance(value, orm.List):
        return value.get_list()
    if isinstance(value, orm.BaseType):
        return value.value
    return value


@pytest.mark.parametrize(('work_chain', 'name'), CASES, ids=[f'{wc.__name__}-{name}' for wc, name in CASES])
def test_builder_of_every_protocol(codes, data_regression, work_chain, name):
    builder = WORK_CHAINS[work_chain](codes, name)
    data_regression.check(serialize(builder._inputs(prune=True)), basename=f'{work_chain.__name__}_{name}')


@pytest.mark.parametrize('work_chain', list(WORK_CHAINS))
def test_protocol_files_name_only_inputs_and_moderate_is_the_default(work_chain):
    """Every key of every protocol is an input of the work chain, and every moderate value that has a port default
    equals it (``moderate`` is what the work chain does without a protocol)."""
    document = yaml.safe_load(work_chain.get_protocol_filepath().read_text())
    work_chain.check_input_keys(document.get('default_inputs') or {}, 'default_inputs')
    for name, values in document['protocols'].items():
        assert values['description'].strip()
        work_chain.check_input_keys({k: v for k, v in values.items() if k not in ('description', 'children')},
                                    f'protocol {name}')
    if 'moderate' in document['protocols']:
        _compare_defaults(work_chain.spec().inputs, work_chain.get_protocol_inputs('moderate'), '')


def _compare_defaults(namespace: PortNamespace, values: Mapping[str, Any], path: str) -> None:
    for key, value in values.items():
        port = namespace[key]
        if isinstance(port, PortNamespace):
            if len(port) and isinstance(value, Mapping):
                _compare_defaults(port, value, f'{path}{key}.')
        elif port.has_default():
            default = serialize(port.default() if callable(port.default) else port.default)
            assert default == value, f'{path}{key}: moderate {value!r}, port default {default!r}'


def test_unknown_override_keys_are_named_with_their_path(codes):
    with pytest.raises(ValueError, match=r"overrides: 'batchsize' is not an input of LabelWorkChain; the inputs are "
                                         r"\[.*'batch_size'"):
        LabelWorkChain.get_builder_from_protocol(codes['label'], overrides={'batchsize': 5})
    with pytest.raises(ValueError, match=r"'label\.engin' is not an input of ActiveLearningWorkChain; the inputs of "
                                         r"label are \[.*'engine'"):
        ActiveLearningWorkChain.get_builder_from_protocol(codes['exec'], codes['label'],
                                                          overrides={'label': {'engin': 'psi4'}})
    with pytest.raises(ValueError, match=r"'md\.parameter' is not an input of SamplingWorkChain"):
        SamplingWorkChain.get_builder_from_protocol(codes['exec'], 'tiny', {'md': {'parameter': {}}})
    with pytest.raises(ValueError, match="unknown train protocol 'tiny'; available: "):
        TrainWorkChain.get_builder_from_protocol(codes['exec'], 'tiny')


def test_overrides_merge_recursively_and_the_port_validators_still_apply(codes):
    builder = TrainWorkChain.get_builder_from_protocol(
        codes['exec'], 'fast', overrides={'train': {'parameters': {'training': {'max_epochs': 3}}}, 'max_restarts': 1})
    assert builder.train.parameters.get_dict() == {
        'training': {'max_epochs': 3, 'batch_size': 128, 'samples_per_epoch': 50000, 'learned_weights': False,
                     'loss_weights': {'forces': 10.0}, 'energy_loss': 'per_atom'}}
    assert builder.max_restarts.value == 1
    builder = SamplingWorkChain.get_builder_from_protocol(
        codes['exec'], 'tiny', {'clusters': {'max_molecules_by_units': {'2': 2}}})
    assert builder.clusters['max_molecules_by_units'] == {'1': 3, '2': 2}
    with pytest.raises(ValueError, match='cells: unknown key'):
        SamplingWorkChain.get_builder_from_protocol(codes['exec'], 'tiny', {'cells': {'n_unit': [2]}})
    assert recursive_merge({'a': {'b': 1, 'c': [1]}}, {'a': {'c': [2]}, 'd': 0}) == {'a': {'b': 1, 'c': [2]}, 'd': 0}


@pytest.mark.parametrize('name', ['moderate', 'fast', 'demo', 'paper'])
def test_active_learning_is_composed_of_its_childrens_protocols(codes, name):
    builder = ActiveLearningWorkChain.get_builder_from_protocol(
        codes['exec'], codes['label'], name, overrides={'label': {'batch_size': 7}})
    label = LabelWorkChain.get_builder_from_protocol(codes['label'], name, overrides={'batch_size': 7})
    assert serialize(child_inputs(builder.label)) == serialize(child_inputs(label))
    train = TrainWorkChain.get_builder_from_protocol(codes['exec'], name)
    assert builder.training.get_dict() == train.train.parameters.get_dict()


@pytest.mark.parametrize('name', ['demo', 'fast', 'paper', 'xtb-study'])
def test_polymer_is_composed_of_its_childrens_builders(codes, name):
    """Each child namespace of the polymer builder is that child's builder of the protocol ``children`` names (the
    same name by default), with the caller's overrides under the namespace passed to the child."""
    children = load_protocol('polymer', name).get('children') or {}
    overrides = {'sampling': {'clusters': {'clusters_per_frame': 2}}, 'label': {'batch_size': 7},
                 'active_learning': {'max_rounds': 3}, 'properties': {'cells': {'replicas': 1}}}
    builder = PolymerForceFieldWorkChain.get_builder_from_protocol(codes['exec'], codes['label'], name,
                                                                   overrides=overrides)

    def child(key: str) -> dict[str, Any]:
        section = children.get(key) or {}
        return {'protocol': section.get('protocol', name),
                'overrides': recursive_merge(section.get('overrides') or {}, overrides[key])}

    expected = {
        'sampling': SamplingWorkChain.get_builder_from_protocol(codes['exec'], **child('sampling')),
        'label': LabelWorkChain.get_builder_from_protocol(codes['label'], **child('label')),
        'active_learning': ActiveLearningWorkChain.get_builder_from_protocol(codes['exec'], codes['label'],
                                                                             **child('active_learning')),
        'properties': PropertiesWorkChain.get_builder_from_protocol(codes['exec'], **child('properties')),
    }
    excluded = {'sampling': (), 'label': ('clusters',), 'properties': ('code', 'model', 'structures', 'options'),
                'active_learning': ('clusters', 'code', 'label', 'candidates', 'model', 'options')}
    polymer_own = {'active_learning': ('properties', 'property_stop')}  # the round properties and their stop rule
    for key, child_builder in expected.items():
        assert serialize(child_inputs(builder[key], polymer_own.get(key, ()))) == \
            serialize(child_inputs(child_builder, excluded[key])), key
    assert builder.sampling.clusters['clusters_per_frame'] == 2 and builder.label.batch_size.value == 7
    assert builder.active_learning.max_rounds.value == 3 and builder.properties.cells['replicas'] == 1


def test_polymer_paper_round_properties_and_unknown_child_keys(codes):
    builder = PolymerForceFieldWorkChain.get_builder_from_protocol(
        codes['exec'], codes['label'], 'paper', overrides={'active_learning': {'properties': {'npt': {'n_steps': 9}}}})
    rounds = builder.active_learning.properties
    assert rounds.cells['n_units'] == list(range(1, 11)) and rounds.cells['replicas'] == 3
    assert rounds.npt['n_steps'] == 9 and builder.properties.npt['n_steps'] == 2_000_000
    assert builder.active_learning.property_stop.get_dict() == {'property': 'density', 'relative_change': 0.01}
    with pytest.raises(ValueError, match=r"'active_learning\.max_round' is not an input of PolymerForceFieldWorkChain"):
        PolymerForceFieldWorkChain.get_builder_from_protocol(codes['exec'], codes['label'], 'demo',
                                                            overrides={'active_learning': {'max_round': 3}})


@pytest.mark.parametrize('kind', ['polymer', 'properties', 'sampling'])
def test_no_name_is_the_default_and_an_empty_name_is_refused(kind):
    assert load_protocol(kind) == load_protocol(kind, load_protocol_default(kind))
    with pytest.raises(ValueError, match=rf"unknown {kind} protocol ''; available: \["):
        load_protocol(kind, '')


def test_the_polymer_protocols_the_readme_names_exist():
    """The README named a `tiny` polymer protocol that never existed."""
    for name in ('demo', 'fast', 'paper'):
        load_protocol('polymer', name)
    with pytest.raises(ValueError, match=r"unknown polymer protocol 'tiny'; available: \['demo', 'fast', 'paper'"):
        load_protocol('polymer', 'tiny')


def load_protocol_default(kind: str) -> str:
    return yaml.safe_load((Path(protocols.__file__).parent / f'{kind}.yaml').read_text())['default_protocol']
