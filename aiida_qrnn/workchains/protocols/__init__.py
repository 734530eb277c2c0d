"""Protocols of the work chains: one YAML file per work chain (``<kind>.yaml``) with a ``default_protocol`` and
named ``protocols``, in the manner of aiida-quantumespresso."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ('load_protocol', 'protocol_names')


def _document(kind: str) -> dict[str, Any]:
    return yaml.safe_load((Path(__file__).parent / f'{kind}.yaml').read_text())


def protocol_names(kind: str) -> list[str]:
    """The protocols of work chain ``kind`` in the order its YAML file lists them (for help texts and errors)."""
    return list(_document(kind)['protocols'])


def load_protocol(kind: str, name: str | None = None) -> dict[str, Any]:
    """The settings of protocol ``name`` (the file's default when ``None``) of work chain ``kind`` (the YAML stem).

    Names are exact: an empty or misspelt name is refused with the list of protocols, never read as the default.
    """
    document = _document(kind)
    if name is None:
        name = document['default_protocol']
    if not isinstance(name, str) or name not in document['protocols']:
        raise ValueError(f"unknown {kind} protocol {name!r}; available: {sorted(document['protocols'])}.")
    return document['protocols'][name]
