"""``aiida-qrnn report PK``: the paper's figures and a results table from a workflow's provenance graph."""

from __future__ import annotations

from pathlib import Path

import click

from aiida_qrnn.cli.utils import translate_errors, with_profile


@click.command('report')
@click.argument('pk', type=int)
@click.option('-o', '--output-dir', type=click.Path(file_okay=False, path_type=Path), default=None,
              help='Folder for report.md, the CSV tables and the figures [default: report-<PK>].')
@click.option('--max-parity-clusters', default=500, show_default=True, type=click.IntRange(1),
              help='Validation clusters evaluated per parity plot (evenly spaced over the validation set).')
@with_profile
@translate_errors
def report(pk: int, output_dir: Path | None, max_parity_clusters: int) -> None:
    """Figures (parity, ε vs ρ^f, properties vs chain length, distributions, scans) and tables of workflow PK,
    read from the nodes it and the processes it called produced."""
    from aiida_qrnn.report import ReportError, load_workflow, write_report

    try:
        node = load_workflow(pk)
    except ReportError as exception:
        raise click.BadParameter(str(exception), param_hint='PK') from None
    path = write_report(node, output_dir or Path(f'report-{pk}'), echo=click.echo,
                        max_parity_clusters=max_parity_clusters)
    click.echo(f'Report written to {path} (figures, properties.csv and training.csv in {path.parent}).')
