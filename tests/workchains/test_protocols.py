"""Protocol names are exact: the default only when no name is given, every other name must exist."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aiida_qrnn.workchains import protocols
from aiida_qrnn.workchains.protocols import load_protocol


@pytest.mark.parametrize('kind', ['polymer', 'properties', 'sampling'])
def test_no_name_is_the_default_and_an_empty_name_is_refused(kind):
    assert load_protocol(kind) == load_protocol(kind, load_protocol_default(kind))
    with pytest.raises(ValueError, match=rf"unknown {kind} protocol ''; available: \["):
        load_protocol(kind, '')


def test_the_polymer_protocols_the_readme_names_exist():
    """The README named a `tiny` polymer protocol that never existed."""
    for name in ('demo', 'fast', 'paper'):
        load_protocol('polymer', name)
    with pytest.raises(ValueError, match="unknown polymer protocol 'tiny'; available: \\['demo', 'fast', 'paper'\\]"):
        load_protocol('polymer', 'tiny')


def load_protocol_default(kind: str) -> str:
    return yaml.safe_load((Path(protocols.__file__).parent / f'{kind}.yaml').read_text())['default_protocol']
