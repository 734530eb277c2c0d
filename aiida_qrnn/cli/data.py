"""``verdi data qrnn``: inspect and export cluster sets and models."""

from __future__ import annotations

import pathlib

import click
from aiida.cmdline.commands.cmd_data import verdi_data
from aiida.cmdline.params import arguments, types
from aiida.cmdline.utils import decorators, echo

from aiida_qrnn.cli.utils import translate_errors


@verdi_data.group('qrnn')
def data_qrnn() -> None:
    """Cluster sets and models of aiida-qrnn."""


@data_qrnn.group('clusters')
def clusters() -> None:
    """Cluster sets (qrnn.clusters)."""


@clusters.command('show')
@arguments.DATA('node', nargs=1, type=types.DataParamType(sub_classes=('aiida.data:qrnn.clusters',)))
@click.option('-i', '--index', 'indices', multiple=True, type=int, help='Also print these clusters (repeatable).')
@decorators.with_dbenv()
@translate_errors
def clusters_show(node, indices: tuple[int, ...]) -> None:
    """Summary of a cluster set, and optionally single clusters."""
    summary = {key: node.base.attributes.get(key) for key in (
        'n_clusters', 'n_atoms', 'elements', 'kind_counts', 'level_of_theory', 'label_names', 'format_version',
    )}
    missing = [index for index in indices if not 0 <= index < node.n_clusters]
    if missing:
        raise click.BadParameter(
            f'cluster {missing[0]} does not exist: {type(node).__name__}<{node.pk}> has {node.n_clusters} clusters, '
            f'numbered 0 to {node.n_clusters - 1}.', param_hint="'-i' / '--index'",
        )
    echo.echo_dictionary({'pk': node.pk, 'uuid': node.uuid, **summary}, fmt='json+date')
    for index in indices:
        atoms = node.get_atoms(index)
        click.echo(f'\ncluster {index}: {atoms.get_chemical_formula()}  id={atoms.info["id"]}  '
                   f'kind={atoms.info["kind"]}  source={atoms.info["source"]!r}')
        if atoms.calc is not None:
            for name, value in atoms.calc.results.items():
                click.echo(f'  {name}: shape {getattr(value, "shape", ())}')


@clusters.command('export')
@arguments.DATA('node', nargs=1, type=types.DataParamType(sub_classes=('aiida.data:qrnn.clusters',)))
@click.argument('output', type=click.Path(dir_okay=False, path_type=pathlib.Path))
@click.option('-f', '--format', 'file_format', type=click.Choice(['extxyz', 'hdf5']), default=None,
              help='Output format (default: from the suffix: .h5/.hdf5 -> hdf5, anything else -> extxyz).')
@click.option('--force', is_flag=True, help='Overwrite an existing file.')
@decorators.with_dbenv()
@translate_errors
def clusters_export(node, output: pathlib.Path, file_format: str | None, force: bool) -> None:
    """Export a cluster set to extended XYZ (full precision) or to its HDF5 file."""
    if output.exists() and not force:
        echo.echo_critical(f'{output} exists; use --force to overwrite it.')
    if not output.parent.is_dir():
        raise click.BadParameter(f"the folder '{output.parent}' of {output} does not exist.", param_hint="'OUTPUT'")
    file_format = file_format or ('hdf5' if output.suffix in {'.h5', '.hdf5'} else 'extxyz')
    if file_format == 'hdf5':
        node.export_file(output)
    else:
        node.export_extxyz(output)
    echo.echo_success(f'wrote {node.n_clusters} clusters of {type(node).__name__}<{node.pk}> to {output}')


@data_qrnn.group('model')
def model() -> None:
    """Trained models (qrnn.model)."""


@model.command('show')
@arguments.DATA('node', nargs=1, type=types.DataParamType(sub_classes=('aiida.data:qrnn.model',)))
@decorators.with_dbenv()
def model_show(node) -> None:
    """Hyper-parameters, elements, size, hash and metrics of a model."""
    attributes = node.base.attributes
    echo.echo_dictionary({
        'pk': node.pk, 'uuid': node.uuid, 'elements': node.elements, 'model_hash': node.model_hash,
        'n_parameters': attributes.get('n_parameters'), 'config': node.config, 'metrics': node.metrics,
    }, fmt='json+date')


__all__ = ('data_qrnn',)
