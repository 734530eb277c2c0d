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

Data-parallel training on N processes (GPUs or CPU cores): ``--processes N`` starts N ranks of this command with
``--launcher torchrun`` (one node, ``torchrun --standalone``) or ``--launcher srun`` (inside a SLURM allocation of
N tasks, any number of nodes), or run it yourself under ``torchrun``/``srun``: each process finds its rank in their
environment (:mod:`aiida_qrnn.core.training.distributed`). Rank 0 writes every file; the launching process exits
with the status rank 0 wrote. ``checkpoint.pt`` continues on any number of processes.

Exit status (also ``status`` in ``results.json``; bad input in ``error.json``):

==== ======================================================================
0    finished: ``max_epochs`` done or early stopping
1    bad input: unreadable files, unknown or invalid settings, elements the model lacks
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

EXIT_BAD_INPUT = 1
EXIT_WALLTIME = 2
EXIT_DIVERGED = 3
INPUT_FILE = 'train_input.json'
PARENT_MODEL_FILE = 'parent_model.safetensors'
MODEL_FILE = 'model.safetensors'
RESULTS_FILE = 'results.json'
ERROR_FILE = 'error.json'
SPLIT_FILE = 'split.npz'
PLOT_FILES = {'learning_curves': 'learning_curves.png', 'parity': 'parity.png'}
LAUNCHERS = ('torchrun', 'srun')


def read_datasets(paths: list[pathlib.Path]):
    """Concatenate cluster-set files in order (all must carry the same labels) into one ``ClusterArrays``."""
    import numpy as np

    from aiida_qrnn.core.dataset import ClusterArrays, ClusterSet, ClusterSetError

    if not paths:
        raise ClusterSetError('train_input.json: "datasets" lists no cluster-set files.')
    parts = []
    for path in paths:
        with ClusterSet(path) as clusters:
            parts.append((path, clusters.read_arrays()))
    label_names = sorted(parts[0][1].labels)
    for path, arrays in parts:
        if sorted(arrays.labels) != label_names:
            raise ClusterSetError(f"'{path}': labels {sorted(arrays.labels)} differ from those of '{parts[0][0]}' "
                                  f'({label_names}); training sets must carry the same labels.')
    return ClusterArrays(
        numbers=np.concatenate([a.numbers for _, a in parts]),
        positions=np.concatenate([a.positions for _, a in parts]),
        offsets=np.concatenate([[0], np.cumsum(np.concatenate([np.diff(a.offsets) for _, a in parts]))]),
        molecule=np.concatenate([a.molecule for _, a in parts]),
        total_charge=np.concatenate([a.total_charge for _, a in parts]),
        cell=np.concatenate([a.cell for _, a in parts]), pbc=np.concatenate([a.pbc for _, a in parts]),
        kind=[k for _, a in parts for k in a.kind], source=[s for _, a in parts for s in a.source],
        labels={name: np.concatenate([a.labels[name] for _, a in parts]) for name in label_names},
    ).validate(paths[0] if len(paths) == 1 else 'datasets')


def launch_command(folder: pathlib.Path, device: str, processes: int, launcher: str) -> list[str]:
    """The command that starts ``processes`` ranks of this job (``python -m`` this module under the launcher)."""
    job = ['-m', __name__, str(folder), '--device', device]
    if launcher == 'torchrun':
        return [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc-per-node={processes}', *job]
    return ['srun', f'--ntasks={processes}', '--kill-on-bad-exit=1', sys.executable, *job]


def _launch(folder: pathlib.Path, device: str, processes: int, launcher: str) -> t.NoReturn:
    """Run the ranks, then exit with the status rank 0 wrote (the launcher's own status if it wrote none)."""
    command = launch_command(folder, device, processes, launcher)
    for name in (RESULTS_FILE, ERROR_FILE):  # what a rank 0 writes now decides the exit status
        (folder / name).unlink(missing_ok=True)
    click.echo(f'starting {processes} ranks: {" ".join(command)}')
    try:
        finished = subprocess.run(command, check=False)
    except FileNotFoundError:
        _fail(folder, f'--launcher {launcher}: {command[0]!r} is not on PATH.')
    for name in (RESULTS_FILE, ERROR_FILE):
        if (folder / name).is_file():
            sys.exit(int(json.loads((folder / name).read_text())['status']))
    sys.exit(finished.returncode or EXIT_BAD_INPUT)


@click.command('train')
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
        _fail(folder, f'rank {ranks.rank} of {ranks.world_size} could not join {ranks.master_addr}:'
                      f'{ranks.master_port}: {exception}', ranks.is_main)
    main = ranks.is_main

    from aiida_qrnn.core.dataset import ClusterSetError
    from aiida_qrnn.core.model.calculator import save_model
    from aiida_qrnn.core.model.qrnn import QRNN, QRNNConfig
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

    try:
        request = json.loads((folder / INPUT_FILE).read_text())
        unknown = sorted(set(request) - {'datasets', 'model', 'training'})
        if unknown:
            raise ValueError(f'{INPUT_FILE}: unknown key(s) {unknown}; known: datasets, model, training.')
        config = TrainingConfig.from_dict(request.get('training', {}))
        arrays = read_datasets([folder / name for name in request.get('datasets', [])])
        source = InMemoryClusters(arrays, origin='datasets')
        transfer = (folder / PARENT_MODEL_FILE).is_file()
        torch.manual_seed(config.seed)
        model = parent_model(folder / PARENT_MODEL_FILE) if transfer else QRNN(
            QRNNConfig.from_dict(request.get('model', {})))
        present = set(np.unique(arrays.numbers).tolist())
        missing = sorted(present - set((model.species_of_number >= 0).nonzero().squeeze(1).tolist()))
        if missing:
            from ase.data import chemical_symbols

            raise ValueError(f'the datasets contain {[chemical_symbols[z] for z in missing]}, which the model '
                             f'(elements {list(model.config.elements)}) does not know.')
        split_seed = config.seed if config.split_seed is None else config.split_seed
        train_indices, validation_indices = split_indices(len(source), config.validation_fraction, split_seed)
        trainer = Trainer(model, source, train_indices, validation_indices, config, folder, device=device,
                          transfer=transfer)
    except (OSError, ValueError, TypeError, KeyError, ClusterSetError) as exception:
        _fail(folder, f'{exception}', main)
    if main:
        np.savez(folder / SPLIT_FILE, train=train_indices, validation=validation_indices)
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
        plot_learning_curves(trainer.history, folder / PLOT_FILES['learning_curves'])
    if result.status == TrainingStatus.STOPPED_WALLTIME:
        _write_results(folder, {'status': EXIT_WALLTIME, 'name': result.status.name, **summary,
                                'message': f'stopped at max_time_s={config.max_time_s} in epoch {trainer.epoch}, '
                                           f'batch {trainer.batch_in_epoch}; checkpoint.pt continues the run.'})
        click.echo('walltime: stopped after writing checkpoint.pt')
        _exit(EXIT_WALLTIME)
    final = trainer.trained_model()
    save_model(final, folder / MODEL_FILE)
    predictions = predict(final, source, validation_indices, batch_size=config.validation_batch_size, device=device)
    plot_parity(predictions, folder / PLOT_FILES['parity'])
    metrics = error_metrics(predictions)
    _write_results(folder, {'status': 0, 'name': result.status.name, **summary, 'validation': metrics,
                            'self_energies_eV': dict(zip(final.config.elements,
                                                         final.self_energies.double().tolist(), strict=True))})
    click.echo(json.dumps(metrics))
    _exit(0)


def _exit(status: int) -> t.NoReturn:
    """Exit with ``status``; in a data-parallel run only once rank 0 has written its files (a launcher stops every
    rank as soon as one exits with a non-zero status)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    sys.exit(status)


def _write_results(folder: pathlib.Path, results: dict) -> None:
    (folder / RESULTS_FILE).write_text(json.dumps(results, indent=2))


def _fail(folder: pathlib.Path, message: str, main: bool = True) -> t.NoReturn:
    """Exit 1 with ``message``; rank 0 (or the single process) writes it to ``error.json``."""
    message = message.replace('\n', ' ')
    if main:
        (folder / ERROR_FILE).write_text(json.dumps({'status': EXIT_BAD_INPUT, 'message': message}))
    click.echo(message, err=True)
    _exit(EXIT_BAD_INPUT)


if __name__ == '__main__':  # the ranks of a data-parallel run (launch_command)
    train()
