"""``aiida-qrnn-exec train JOB_FOLDER``: the job that :class:`~aiida_qrnn.calculations.train.TrainCalculation` runs.

The folder holds ``train_input.json``::

    {"datasets": ["datasets/a.h5", ...],      # cluster-set files, concatenated in this order
     "model": {...},                           # QRNNConfig (ignored with a parent model)
     "training": {...}}                        # TrainingConfig

and optionally ``parent_model.safetensors`` (transfer learning) and ``checkpoint.pt`` (continue an interrupted
run; the same inputs are required). It writes ``model.safetensors`` (the best weights, the ``ModelData`` file
format), ``metrics.csv`` (one row per epoch), ``results.json`` (status, epochs, best epoch, MAE/RMSE of the written
model on the validation clusters), ``split.npz`` (train/validation indices into the concatenated datasets),
``learning_curves.png``, ``parity.png`` and ``checkpoint.pt``.

Transfer learning to data with elements the parent lacks (a polymer with a new element): the parent is extended
with fresh networks for them (:func:`aiida_qrnn.core.model.species.extend_elements`), their self-energies fitted to
the data with the parent's held fixed, before training starts.

Data-parallel training on N processes (GPUs or CPU cores): ``--processes N`` starts N ranks of this command with
``--launcher torchrun`` (one node, ``torchrun --standalone``) or ``--launcher srun`` (inside a SLURM allocation of
N tasks, any number of nodes), or run it yourself under ``torchrun``/``srun``: each process finds its rank in their
environment (:mod:`aiida_qrnn.core.training.distributed`). Rank 0 writes every file; the launching process exits
with the status rank 0 wrote. ``checkpoint.pt`` continues on any number of processes.

Exit status (also ``status`` in ``results.json``; bad input in ``error.json``):

==== ======================================================================
0    finished: ``max_epochs`` done or early stopping
1    bad input: unreadable files, unknown or invalid settings, elements a new model lacks
2    stopped at ``max_time_s`` after writing ``checkpoint.pt`` (continue with the same folder contents)
3    diverged: the training loss became NaN or infinite
==== ======================================================================
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import typing as t

import click

from aiida_qrnn.core.training.trainer import CHECKPOINT_FILE, METRICS_FILE
from aiida_qrnn.jobs.folder import ERROR_FILE, EXIT_BAD_INPUT, Job, fail, write_json

__all__ = ('EXIT_DIVERGED', 'EXIT_WALLTIME', 'JOB', 'LAUNCHERS', 'launch_command', 'train')

EXIT_WALLTIME = 2
EXIT_DIVERGED = 3
JOB = Job(
    command='train',
    inputs={'request': 'train_input.json', 'parent_model': 'parent_model.safetensors', 'datasets': 'datasets',
            'checkpoint': CHECKPOINT_FILE},
    outputs={'model': 'model.safetensors', 'metrics': METRICS_FILE, 'results': 'results.json',
             'split': 'split.npz', 'learning_curves': 'learning_curves.png', 'parity': 'parity.png',
             'checkpoint': CHECKPOINT_FILE},
    exit_statuses={EXIT_WALLTIME: 'STOPPED_WALLTIME', EXIT_DIVERGED: 'DIVERGED'},
)
#: The plots among the outputs, by the name of their ``plots`` output.
PLOTS = ('learning_curves', 'parity')
LAUNCHERS = ('torchrun', 'srun')


def launch_command(folder: pathlib.Path, device: str, processes: int, launcher: str) -> list[str]:
    """The command that starts ``processes`` ranks of this job (``python -m`` this module under the launcher)."""
    job = ['-m', __name__, str(folder), '--device', device]
    if launcher == 'torchrun':
        return [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc-per-node={processes}', *job]
    return ['srun', f'--ntasks={processes}', '--kill-on-bad-exit=1', sys.executable, *job]


def _launch(folder: pathlib.Path, device: str, processes: int, launcher: str) -> t.NoReturn:
    """Run the ranks, then exit with the status rank 0 wrote (the launcher's own status if it wrote none)."""
    command = launch_command(folder, device, processes, launcher)
    written = (JOB.outputs['results'], ERROR_FILE)
    for name in written:  # what a rank 0 writes now decides the exit status
        (folder / name).unlink(missing_ok=True)
    click.echo(f'starting {processes} ranks: {" ".join(command)}')
    try:
        finished = subprocess.run(command, check=False)
    except FileNotFoundError:
        fail(f'--launcher {launcher}: {command[0]!r} is not on PATH.', folder=folder)
    for name in written:
        if (folder / name).is_file():
            sys.exit(int(json.loads((folder / name).read_text())['status']))
    sys.exit(finished.returncode or EXIT_BAD_INPUT)


@click.command(JOB.command)
@click.argument('job_folder', type=click.Path(file_okay=False, exists=True, path_type=pathlib.Path), default='.')
@click.option('--device', default='cpu', show_default=True, help='Torch device (cuda for a GPU; cuda:LOCAL_RANK '
              'on each rank of a data-parallel run).')
@click.option('--processes', type=click.IntRange(min=1), default=1, show_default=True,
              help='Data-parallel ranks to start (GPUs or CPU cores); ignored inside a rank.')
@click.option('--launcher', type=click.Choice(LAUNCHERS), default='torchrun', show_default=True,
              help='How --processes > 1 starts the ranks: torchrun (one node) or srun (a SLURM allocation).')
def train(job_folder: pathlib.Path, device: str, processes: int, launcher: str) -> None:
    """Train (or continue training) a QRNN on the cluster sets listed in JOB_FOLDER/train_input.json."""
    import numpy as np
    import torch
    from ase.data import atomic_numbers, chemical_symbols

    from aiida_qrnn.core.training import distributed

    folder = job_folder
    ranks = distributed.rank_info()
    if processes > 1 and ranks.world_size == 1:
        _launch(folder, device, processes, launcher)
    if device.startswith('cuda') and ranks.world_size > 1:
        device = f'cuda:{ranks.local_rank}'
        torch.cuda.set_device(device)
    try:
        distributed.init_process_group(ranks, torch.device(device))
    except (RuntimeError, ValueError) as exception:
        _refuse(folder, f'rank {ranks.rank} of {ranks.world_size} could not join {ranks.master_addr}:'
                        f'{ranks.master_port}: {exception}', ranks.is_main)
    main = ranks.is_main

    from aiida_qrnn.core.dataset import ClusterSetError, read_cluster_sets
    from aiida_qrnn.core.model.calculator import save_model
    from aiida_qrnn.core.model.qrnn import QRNN, QRNNConfig
    from aiida_qrnn.core.model.species import extend_elements, fit_new_self_energies
    from aiida_qrnn.core.training import (
        InMemoryClusters,
        Trainer,
        TrainingConfig,
        TrainingDiverged,
        TrainingStatus,
        parent_model,
        predict,
        split_indices,
    )
    from aiida_qrnn.core.training.plots import plot_learning_curves, plot_parity
    from aiida_qrnn.core.training.trainer import error_metrics

    input_file, parent_file = JOB.inputs['request'], folder / JOB.inputs['parent_model']
    try:
        request = json.loads((folder / input_file).read_text())
        unknown = sorted(set(request) - {'datasets', 'model', 'training'})
        if unknown:
            raise ValueError(f'{input_file}: unknown key(s) {unknown}; known: datasets, model, training.')
        config = TrainingConfig.from_dict(request.get('training', {}))
        if not request.get('datasets'):
            raise ValueError(f'{input_file}: "datasets" lists no cluster-set files.')
        arrays = read_cluster_sets([folder / name for name in request['datasets']])
        source = InMemoryClusters(arrays, origin='datasets')
        transfer = parent_file.is_file()
        torch.manual_seed(config.seed)
        model = parent_model(parent_file) if transfer else QRNN(QRNNConfig.from_dict(request.get('model', {})))
        present = [chemical_symbols[number] for number in np.unique(arrays.numbers).tolist()]
        missing = sorted(set(present) - set(model.config.elements), key=atomic_numbers.__getitem__)
        if missing and not transfer:
            raise ValueError(f'the datasets contain {missing}, which the model (elements '
                             f'{list(model.config.elements)}) does not know.')
        if missing:  # a parent meets new elements: fresh networks for them, their self-energies fitted
            model = extend_elements(model, present)
            fit_new_self_energies(model, arrays.numbers, arrays.offsets, arrays.labels['energy'], missing)
        split_seed = config.seed if config.split_seed is None else config.split_seed
        train_indices, validation_indices = split_indices(len(source), config.validation_fraction, split_seed)
        trainer = Trainer(model, source, train_indices, validation_indices, config, folder, device=device,
                          transfer=transfer)
    except (OSError, ValueError, TypeError, KeyError, ClusterSetError) as exception:
        _refuse(folder, f'{exception}', main)
    if main:
        np.savez(folder / JOB.outputs['split'], train=train_indices, validation=validation_indices)
    try:
        result = trainer.fit()
    except TrainingDiverged as exception:
        if main:
            _write_results(folder, {'status': EXIT_DIVERGED, 'name': 'DIVERGED', 'message': str(exception),
                                    'epochs': trainer.epoch})
        click.echo(str(exception), err=True)
        _exit(EXIT_DIVERGED)
    if not main:  # rank 0 writes the outputs; the others are done
        _exit(EXIT_WALLTIME if result.status == TrainingStatus.STOPPED_WALLTIME else 0)
    summary = {'epochs': result.epochs, 'best_epoch': result.best_epoch, 'n_train': len(train_indices),
               'n_validation': len(validation_indices), 'n_parameters': sum(p.numel() for p in model.parameters()),
               'transfer_learning': transfer, 'device': device, 'processes': ranks.world_size,
               'training': config.to_dict()}
    if trainer.history:
        plot_learning_curves(trainer.history, folder / JOB.outputs['learning_curves'])
    if result.status == TrainingStatus.STOPPED_WALLTIME:
        _write_results(folder, {'status': EXIT_WALLTIME, 'name': result.status.name, **summary,
                                'message': f'stopped at max_time_s={config.max_time_s} in epoch {trainer.epoch}, '
                                           f'batch {trainer.batch_in_epoch}; checkpoint.pt continues the run.'})
        click.echo('walltime: stopped after writing checkpoint.pt')
        _exit(EXIT_WALLTIME)
    final = trainer.trained_model()
    save_model(final, folder / JOB.outputs['model'])
    predictions = predict(final, source, validation_indices, batch_size=config.validation_batch_size, device=device)
    plot_parity(predictions, folder / JOB.outputs['parity'])
    metrics = error_metrics(predictions)
    _write_results(folder, {'status': 0, 'name': result.status.name, **summary, 'validation': metrics,
                            'self_energies_eV': dict(zip(final.config.elements,
                                                         final.self_energies.double().tolist(), strict=True))})
    click.echo(json.dumps(metrics))
    _exit(0)


def _end_process_group() -> None:
    """In a data-parallel run, wait for every rank (rank 0 has written its files), then leave the group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _exit(status: int) -> t.NoReturn:
    """Exit with ``status`` once rank 0 has written its files (a launcher stops every rank as soon as one exits with
    a non-zero status)."""
    _end_process_group()
    sys.exit(status)


def _refuse(folder: pathlib.Path, message: str, main: bool = True) -> t.NoReturn:
    """:func:`~aiida_qrnn.jobs.folder.fail` on every rank: rank 0 (or the single process) writes ``error.json``, and
    no rank exits before it has."""
    try:
        fail(message, folder=folder if main else None)
    finally:
        _end_process_group()


def _write_results(folder: pathlib.Path, results: dict) -> None:
    write_json(folder / JOB.outputs['results'], results, indent=2)


if __name__ == '__main__':  # the ranks of a data-parallel run (launch_command)
    train()
