"""``aiida-qrnn-exec``: the package's executable that CalcJobs run on a computer (local or remote).

It reads a job folder, runs :mod:`aiida_qrnn.core`, writes outputs and returns a documented exit status:
0 success, 1 bad input (message on stderr). Later issues add ``train``, ``md`` and ``score``.
"""

from __future__ import annotations

import json
import pathlib
import sys

import click

EXIT_BAD_INPUT = 1


@click.group('aiida-qrnn-exec', context_settings={'help_option_names': ['-h', '--help']})
@click.version_option(package_name='aiida-qrnn')
def cli() -> None:
    """Run aiida-qrnn work inside a job folder (no AiiDA needed)."""


@cli.command('inspect')
@click.argument('path', type=click.Path(dir_okay=False, path_type=pathlib.Path))
@click.option(
    '--verify', is_flag=True,
    help='Also read every array and check it: values, checksums, content ids and the recorded summary.',
)
def inspect(path: pathlib.Path, verify: bool) -> None:
    """Print the summary of a cluster-set file as JSON; exit 1 (one line naming the file) if it is not a valid set."""
    from aiida_qrnn.core.dataset import ClusterSet, ClusterSetError

    try:
        with ClusterSet(path) as clusters:
            if verify:
                clusters.verify()
            summary = clusters.summary()
    except ClusterSetError as exception:
        click.echo(str(exception), err=True)
        sys.exit(EXIT_BAD_INPUT)
    click.echo(json.dumps(summary, indent=2))


from aiida_qrnn.cli.exec_labelling import d3bj, pyscf  # noqa: E402  (sub-commands of the labelling jobs)

cli.add_command(d3bj)
cli.add_command(pyscf)

from aiida_qrnn.cli.exec_sampling import classical_md  # noqa: E402  (sub-command of the classical-MD job)

cli.add_command(classical_md)

from aiida_qrnn.cli.exec_md import md  # noqa: E402  (sub-command of the MD job)

cli.add_command(md)

from aiida_qrnn.cli.exec_selection import score  # noqa: E402  (sub-command of the committee-scoring job)

cli.add_command(score)

from aiida_qrnn.cli.exec_training import train  # noqa: E402  (sub-command of the training job)

cli.add_command(train)
