"""The protocol mixin of the work chains: inputs from a YAML file per work chain, with overrides checked and merged.

A protocol file (``protocols/<kind>.yaml``) holds ``default_inputs``, a ``default_protocol`` and named ``protocols``,
each with a ``description``. Both are nested mappings shaped like the work chain's input namespace, with plain
values (a mapping for a ``Dict`` port, a number for an ``Int``/``Float`` port ...). The inputs of protocol ``name``
are ``default_inputs`` merged with ``protocols[name]``, then with the caller's ``overrides``:

* one rule everywhere: mappings merge key by key at every depth, any other value (number, string, list, node)
  replaces what was there;
* every override key down to the ports must be an input of the work chain (namespaces included); inside a ``Dict``
  port the keys are the port's own business and its validator checks them when the builder is filled.

After the design of aiida-quantumespresso's ``workflows/protocols/utils.py``; see ``docs/protocols.md``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import yaml
from aiida import orm
from aiida.engine import ProcessBuilder
from aiida.engine.processes.builder import ProcessBuilderNamespace
from plumpy.ports import PortNamespace

from aiida_qrnn.workchains.protocols import load_protocol

__all__ = ('ProtocolMixin', 'child_inputs', 'nest_builder', 'recursive_merge')

#: Node types a plain YAML value is turned into, tried in this order against a port's ``valid_type``.
PLAIN_VALUE_TYPES = (orm.Dict, orm.List, orm.Bool, orm.Float, orm.Int, orm.Str)


def recursive_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``update``: mappings merge key by key at every depth, other values replace; no aliasing."""
    merged = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = recursive_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value) if not isinstance(value, orm.Node) else value
    return merged


def child_inputs(builder: ProcessBuilderNamespace, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The inputs set on ``builder`` (empty namespaces pruned), less the top-level ports ``exclude``."""
    inputs = builder._inputs(prune=True)
    for key in exclude:
        inputs.pop(key, None)
    return inputs


def nest_builder(namespace: ProcessBuilderNamespace, child: ProcessBuilder, exclude: Iterable[str] = ()) -> None:
    """Set the inputs of a child's builder on the ``namespace`` of the parent's builder that exposes that child.

    Port by port, so that a parent's builder is composed of its children's builders before the inputs the parent
    supplies at run time (``exclude``) exist::

        nest_builder(builder.label, LabelWorkChain.get_builder_from_protocol(code, 'demo'), exclude=('clusters',))

    (Assigning the child's inputs as one mapping would validate the namespace as complete, which it is not yet.)
    """
    _fill(namespace, namespace._port_namespace, child_inputs(child, exclude), '')


class ProtocolMixin:
    """``get_protocol_inputs`` and a builder filled from them, for a work chain with ``_protocol_kind`` set."""

    #: Stem of the protocol file in this folder, e.g. ``'label'`` for ``protocols/label.yaml``.
    _protocol_kind: ClassVar[str]

    @classmethod
    def get_protocol_filepath(cls) -> Path:
        return Path(__file__).parent / f'{cls._protocol_kind}.yaml'

    @classmethod
    def _protocol_document(cls) -> dict[str, Any]:
        return yaml.safe_load(cls.get_protocol_filepath().read_text())

    @classmethod
    def get_default_protocol(cls) -> str:
        return cls._protocol_document()['default_protocol']

    @classmethod
    def get_available_protocols(cls) -> dict[str, dict[str, str]]:
        """``{name: {'description': ...}}`` of every protocol in the file."""
        return {name: {'description': values['description']}
                for name, values in cls._protocol_document()['protocols'].items()}

    @classmethod
    def get_protocol_inputs(cls, protocol: str | None = None,
                            overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``default_inputs`` merged with protocol ``protocol`` (the default when ``None``), then with ``overrides``.

        Raises ``ValueError`` for an unknown protocol (listing the available ones) or an override key that is not an
        input of the work chain (naming it with its dotted path).
        """
        inputs = recursive_merge(cls._protocol_document().get('default_inputs') or {},
                                 load_protocol(cls._protocol_kind, protocol))
        inputs.pop('description', None)
        if overrides:
            cls.check_input_keys(overrides, 'overrides')
            inputs = recursive_merge(inputs, overrides)
        return inputs

    @classmethod
    def check_input_keys(cls, values: Mapping[str, Any], what: str = 'overrides') -> None:
        """Raise ``ValueError`` naming the first key of ``values`` that is not an input of this work chain."""
        _check_keys(cls.spec().inputs, values, what, cls.__name__, '')

    @classmethod
    def _split_overrides(cls, overrides: Mapping[str, Any] | None, *children: str) -> tuple[dict, dict[str, dict]]:
        """``overrides`` checked against the ports, without the sections ``children``, and those sections (each
        for the builder of the child whose inputs that namespace exposes)."""
        own = dict(overrides or {})
        cls.check_input_keys(own, 'overrides')
        return own, {child: own.pop(child, None) or {} for child in children}

    @classmethod
    def _builder_from_protocol(cls, protocol: str | None, overrides: Mapping[str, Any] | None,
                               nodes: Mapping[str, Any]) -> ProcessBuilder:
        """A builder of the protocol's inputs, with ``nodes`` (nested like the inputs; ``None`` values skipped) set."""
        inputs = recursive_merge(cls.get_protocol_inputs(protocol, overrides), _without_none(nodes))
        builder = cls.get_builder()
        _fill(builder, cls.spec().inputs, inputs, '')
        return builder


def _without_none(values: Mapping[str, Any]) -> dict[str, Any]:
    cleaned = {}
    for key, value in values.items():
        if isinstance(value, Mapping) and not isinstance(value, ProcessBuilderNamespace):
            value = _without_none(value)
        if value is not None:
            cleaned[key] = value
    return cleaned


def _declares_ports(port) -> bool:
    """A namespace with ports of its own (exposed namespaces are dynamic too); not one of free keys (``candidates``)."""
    return isinstance(port, PortNamespace) and len(port) > 0


def _check_keys(namespace: PortNamespace, values: Mapping[str, Any], what: str, owner: str, path: str) -> None:
    for key, value in values.items():
        dotted = f'{path}{key}'
        if key not in namespace:
            if not _declares_ports(namespace):
                continue
            raise ValueError(f'{what}: {dotted!r} is not an input of {owner}; the inputs'
                             f'{" of " + path.rstrip(".") if path else ""} are {sorted(namespace)}.')
        port = namespace[key]
        if isinstance(port, PortNamespace) and isinstance(value, Mapping):
            _check_keys(port, value, what, owner, f'{dotted}.')


def _fill(builder: ProcessBuilderNamespace, namespace: PortNamespace, values: Mapping[str, Any], path: str) -> None:
    """Set ``values`` on ``builder``, plain values turned into the node type of their port."""
    for key, value in values.items():
        port = namespace.get(key)
        if _declares_ports(port) and isinstance(value, Mapping):
            _fill(builder[key], port, value, f'{path}{key}.')
        else:
            builder[key] = _as_input(value, port, f'{path}{key}')


def _as_input(value: Any, port, dotted: str) -> Any:
    if port is None or port.non_db or isinstance(value, orm.Node) or isinstance(port, PortNamespace):
        return value
    valid_types = port.valid_type if isinstance(port.valid_type, tuple) else (port.valid_type,)
    for node_type in PLAIN_VALUE_TYPES:
        if node_type in valid_types:
            return node_type(value)
    raise ValueError(f'protocol input {dotted!r}: give a {" or ".join(t.__name__ for t in valid_types)} node, '
                     f'not the plain value {value!r}.')
