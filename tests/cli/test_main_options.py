"""``aiida-qrnn`` options are checked while the command line is read: one line naming the option, no traceback."""

from __future__ import annotations

from click.testing import CliRunner

from aiida_qrnn.cli.main import cli


def test_demo_refuses_a_polymer_protocol_that_does_not_exist():
    """The README named a `tiny` polymer protocol; `aiida-qrnn demo --protocol tiny` ended in a traceback."""
    for name in ('tiny', ''):
        result = CliRunner().invoke(cli, ['demo', '--protocol', name])
        assert result.exit_code == 2, result.output
        assert f"Invalid value for '--protocol': unknown polymer protocol {name!r}; available: " \
               "['demo', 'fast', 'paper', 'xtb-study']." in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
