"""``aiida-qrnn`` options are checked while the command line is read: one line naming the option, no traceback."""

from __future__ import annotations

from click.testing import CliRunner

from aiida_qrnn.cli.main import cli
from aiida_qrnn.workchains.protocols import protocol_names


def test_demo_refuses_a_polymer_protocol_that_does_not_exist():
    """The README named a `tiny` polymer protocol; `aiida-qrnn demo --protocol tiny` ended in a traceback."""
    for name in ('tiny', ''):
        result = CliRunner().invoke(cli, ['demo', '--protocol', name])
        assert result.exit_code == 2, result.output
        assert f"Invalid value for '--protocol': unknown polymer protocol {name!r}; available: " \
               f"{sorted(protocol_names('polymer'))}." in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)


def test_help_lists_every_protocol_of_the_yaml_files():
    """The help of `demo` named demo, fast and paper only, after xtb-study had been added to polymer.yaml."""
    for command, kind in (('demo', 'polymer'), ('sample', 'sampling')):
        result = CliRunner().invoke(cli, [command, '--help'], terminal_width=400)
        assert result.exit_code == 0, result.output
        assert f"{kind}.yaml: {', '.join(protocol_names(kind))}." in ' '.join(result.output.split())
    assert 'xtb-study' in protocol_names('polymer')
