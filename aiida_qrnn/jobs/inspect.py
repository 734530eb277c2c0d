"""``aiida-qrnn-exec inspect``: check a cluster-set file where it lies, without AiiDA."""

from __future__ import annotations

import json
import pathlib

import click

from aiida_qrnn.jobs.folder import fail

__all__ = ('inspect',)


@click.command('inspect')
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
        fail(str(exception), folder=None)
    click.echo(json.dumps(summary, indent=2))
