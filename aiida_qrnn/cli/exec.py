"""``aiida-qrnn-exec``: the package's executable that CalcJobs run on a computer (local or remote).

It only registers the job commands of :mod:`aiida_qrnn.jobs`; each command reads its job folder, runs
:mod:`aiida_qrnn.core`, writes outputs and returns the exit status its job declares (0 success, 1 bad input with the
message on stderr). A command's module is imported only when the command runs, so that ``inspect`` does not pay for
torch.
"""

from __future__ import annotations

import importlib

import click

#: Sub-command -> ``module:attribute`` of its click command.
COMMANDS = {
    'analyse': 'aiida_qrnn.jobs.analysis:analyse',
    'inspect': 'aiida_qrnn.jobs.inspect:inspect',
    'd3bj': 'aiida_qrnn.jobs.label:d3bj',
    'pyscf': 'aiida_qrnn.jobs.label:pyscf',
    'classical-md': 'aiida_qrnn.jobs.classical_md:classical_md',
    'md': 'aiida_qrnn.jobs.md:md',
    'score': 'aiida_qrnn.jobs.score:score',
    'train': 'aiida_qrnn.jobs.train:train',
}


class JobCommands(click.Group):
    """A group whose commands are imported on first use, from ``COMMANDS``."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attribute = COMMANDS[name].split(':')
        return getattr(importlib.import_module(module), attribute)


@click.group('aiida-qrnn-exec', cls=JobCommands, context_settings={'help_option_names': ['-h', '--help']})
@click.version_option(package_name='aiida-qrnn')
def cli() -> None:
    """Run aiida-qrnn work inside a job folder (no AiiDA needed)."""
