"""The ``aiida-qrnn`` command: set-up of profiles and codes, and the end-to-end demo."""

from __future__ import annotations

from pathlib import Path

import click
from aiida.cmdline.params import options

from aiida_qrnn.cli.report import report
from aiida_qrnn.cli.utils import translate_errors, with_profile
from aiida_qrnn.workchains.protocols import protocol_names


@click.group('aiida-qrnn', context_settings={'help_option_names': ['-h', '--help']})
@click.option('-p', '--profile', 'profile_name', default=None, metavar='NAME',
              help='AiiDA profile to use (default: the default profile; for `setup`, the profile to create).')
@options.VERBOSITY()
@click.version_option(package_name='aiida-qrnn')
@click.pass_context
def cli(ctx: click.Context, profile_name: str | None) -> None:
    """aiida-qrnn: charge-equilibrating neural-network potentials for polymers, with full provenance."""
    ctx.obj = {'profile_name': profile_name}


@cli.command('setup')
@click.option('--production', is_flag=True,
              help='PostgreSQL storage + RabbitMQ broker instead of the embedded SQLite + ZeroMQ profile.')
@click.option('--email', default='qrnn@localhost', show_default=True, help='E-mail of the default AiiDA user.')
@click.option('--postgres-host', default='127.0.0.1', show_default=True)
@click.option('--postgres-port', default=5432, show_default=True, type=int)
@click.option('--postgres-user', default='postgres', show_default=True)
@click.option('--postgres-password', default='', show_default=False)
@click.pass_context
@translate_errors
def setup(ctx: click.Context, production: bool, email: str, postgres_host: str, postgres_port: int,
          postgres_user: str, postgres_password: str) -> None:
    """Create the AiiDA profile, the localhost computer and the codes found on PATH. Safe to run again."""
    from aiida_qrnn.profiles import setup_profile

    report = setup_profile(
        ctx.obj['profile_name'], production=production, email=email, postgres_host=postgres_host,
        postgres_port=postgres_port, postgres_user=postgres_user, postgres_password=postgres_password,
    )
    click.echo(f'Profile {report.profile!r}: storage {report.storage_backend}, broker {report.broker_backend}')
    for item in report.created:
        click.secho(f'  created   {item}', fg='green')
    for item in report.existing:
        click.echo(f'  exists    {item}')
    for item in report.skipped:
        click.secho(f'  skipped   {item}', fg='yellow')
    for item in report.warnings:
        click.secho(f'Warning: {item}', fg='yellow', err=True)


def _polymer_protocol(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Refuse a polymer protocol that does not exist while the command line is read, naming the ones that do."""
    from aiida_qrnn.workchains.protocols import load_protocol

    try:
        load_protocol('polymer', value)
    except ValueError as exception:
        raise click.BadParameter(str(exception), ctx=ctx, param=param) from None
    return value


@cli.command('demo')
@click.option('--protocol', default='demo', show_default=True, callback=_polymer_protocol,
              help=f"Protocol of protocols/polymer.yaml: {', '.join(protocol_names('polymer'))}.")
@click.option('--batch-size', default=None, type=click.IntRange(1), help='Clusters per xtb job [default: protocol].')
@click.option('--report-dir', default=None, type=click.Path(file_okay=False, path_type=Path),
              help='Folder of the report [default: report-<pk>].')
@with_profile
@translate_errors
def demo(protocol: str, batch_size: int | None, report_dir: Path | None) -> None:
    """End to end: sample oligomer clusters, label with GFN2-xTB, active learning, properties, and the report."""
    from aiida_qrnn.demo import DemoError, run_demo

    try:
        run_demo(protocol=protocol, batch_size=batch_size, report_dir=report_dir, echo=click.echo)
    except DemoError as exception:
        raise click.ClickException(str(exception)) from None


@cli.group('computer')
def computer() -> None:
    """Remote computers (SLURM clusters over SSH)."""


def _parse_executables(values: tuple[str, ...]) -> dict[str, str]:
    executables = {}
    for value in values:
        label, separator, path = value.partition('=')
        if not separator or not label or not path:
            raise click.BadParameter(f'{value!r} is not LABEL=PATH', param_hint='--code')
        executables[label] = path
    return executables


@computer.command('add-slurm')
@click.argument('label')
@click.option('--host', required=True, help='SSH host or ~/.ssh/config alias (user, port and key come from there).')
@click.option('--workdir', required=True, help='Scratch folder on the cluster, e.g. /scratch/{username}/aiida.')
@click.option('--partition', default=None, help='SLURM partition (queue) for every job.')
@click.option('--account', default=None, help='SLURM account to charge.')
@click.option('--gpus', default=0, show_default=True, type=click.IntRange(0), help='GPUs per node (#SBATCH --gres).')
@click.option('--mpiprocs-per-machine', default=1, show_default=True, type=click.IntRange(1))
@click.option('--prepend-text', default='', help='Shell lines run before every job (modules, conda, ...).')
@click.option('--code', 'codes', multiple=True, metavar='LABEL=PATH',
              help='Remote path of xtb, psi4 or aiida-qrnn-exec (repeatable); others are looked up over SSH.')
@click.option('--no-detect', is_flag=True, help='Do not look up missing executables on the remote.')
@with_profile
@translate_errors
def add_slurm(label: str, host: str, workdir: str, partition: str | None, account: str | None, gpus: int,
              mpiprocs_per_machine: int, prepend_text: str, codes: tuple[str, ...], no_detect: bool) -> None:
    """Add a SLURM cluster reached over SSH (core.ssh_async) and its codes. Safe to run again."""
    from aiida_qrnn.computers import add_slurm_computer

    try:
        _, done = add_slurm_computer(
            label, host, workdir, partition=partition, account=account, gpus=gpus,
            mpiprocs_per_machine=mpiprocs_per_machine, prepend_text=prepend_text,
            executables=_parse_executables(codes), detect_executables=not no_detect,
        )
    except (ValueError, RuntimeError, OSError) as exception:
        raise click.ClickException(str(exception)) from None
    for item in done:
        click.echo(f'  {item}')


@cli.command('sample')
@click.option('--protocol', default='tiny', show_default=True,
              help=f"Protocol of protocols/sampling.yaml: {', '.join(protocol_names('sampling'))}.")
@click.option('--code', 'code_label', default='aiida-qrnn-exec@localhost', show_default=True,
              help='The aiida-qrnn-exec code that runs the classical MD.')
@click.option('--submit', 'to_daemon', is_flag=True, help='Submit to the daemon instead of running in this process.')
@with_profile
@translate_errors
def sample(protocol: str, code_label: str, to_daemon: bool) -> None:
    """Build oligomer cells, run the OPLS-AA baseline and cut clusters: one ClusterSetData with provenance."""
    from aiida.engine import run_get_node, submit
    from aiida.orm import load_code

    from aiida_qrnn.workchains.sampling import SamplingWorkChain

    try:
        builder = SamplingWorkChain.get_builder_from_protocol(load_code(code_label), protocol=protocol)
    except ValueError as exception:
        raise click.BadParameter(str(exception), param_hint='--protocol') from None
    if to_daemon:
        node = submit(builder)
        click.echo(f'Submitted SamplingWorkChain<{node.pk}>; follow it with `verdi process status {node.pk}`.')
        return
    results, node = run_get_node(builder)
    if not node.is_finished_ok:
        raise click.ClickException(f'SamplingWorkChain<{node.pk}> failed: [{node.exit_status}] {node.exit_message}')
    clusters = results['clusters']
    click.echo(f'SamplingWorkChain<{node.pk}> made ClusterSetData<{clusters.pk}>: {clusters.n_clusters} clusters, '
               f'{clusters.n_atoms} atoms, kinds {clusters.base.attributes.get("kind_counts")}')


@cli.command('lineage')
@click.argument('identifier')
@click.option('--tree/--no-tree', default=True, show_default=True, help='Also print how the node was made.')
@click.option('--depth', default=12, show_default=True, type=click.IntRange(1), help='Depth of the tree.')
@with_profile
def lineage(identifier: str, tree: bool, depth: int) -> None:
    """Which labels, models and work chains produced a node (a model, a cluster set, a property)."""
    from aiida.common.exceptions import MultipleObjectsError, NotExistent
    from aiida.orm import load_node

    from aiida_qrnn.provenance import describe, lineage, provenance_lines

    try:
        node = load_node(identifier)
    except (NotExistent, MultipleObjectsError, ValueError) as exception:
        raise click.BadParameter(str(exception), param_hint='IDENTIFIER') from None
    click.echo(f'{type(node).__name__}<{node.pk}> {describe(node)}')
    for heading, lines in lineage(node).items():
        click.echo(f'{heading}:')
        for line in lines or ['(none)']:
            click.echo(f'  {line}')
    if tree:
        click.echo('made by:')
        for line in provenance_lines(node, max_depth=depth):
            click.echo(f'  {line}')


@cli.group('model')
def model() -> None:
    """Trained models (ModelData)."""


@model.command('show')
@click.argument('identifier')
@with_profile
def model_show(identifier: str) -> None:
    """A model's size, elements, validation metrics, and the labelled data and parent models it was trained from."""
    from aiida.common.exceptions import MultipleObjectsError, NotExistent
    from aiida.orm import load_node

    from aiida_qrnn.data.model import ModelData
    from aiida_qrnn.provenance import lineage

    try:
        node = load_node(identifier)
    except (NotExistent, MultipleObjectsError, ValueError) as exception:
        raise click.BadParameter(str(exception), param_hint='IDENTIFIER') from None
    if not isinstance(node, ModelData):
        message = f'node {node.pk} is a {type(node).__name__}, not a ModelData.'
        raise click.BadParameter(message, param_hint='IDENTIFIER')
    click.echo(f'ModelData<{node.pk}>  elements {", ".join(node.elements)}  '
               f'{node.base.attributes.get("n_parameters")} parameters  hash {node.model_hash[:16]}')
    click.echo('validation metrics:')
    for name, value in sorted(node.metrics.items()):
        click.echo(f'  {name:>28}: {value:.6g}' if isinstance(value, float) else f'  {name:>28}: {value}')
    ancestry = lineage(node)
    click.echo('trained on:')
    for line in ancestry['labels'] or ['(no labelled cluster set in its provenance)']:
        click.echo(f'  {line}')
    click.echo('parent models:')
    for line in ancestry['models'] or ['(none)']:
        click.echo(f'  {line}')


cli.add_command(report)
