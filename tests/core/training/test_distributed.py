"""Data-parallel training on real processes (gloo on CPU): N ranks give the model of one process on the same global
batches, and a run continues from its checkpoint on another number of ranks."""

from __future__ import annotations

import pathlib
import socket
import time

import numpy as np
import pytest
import torch
import torch.multiprocessing

from aiida_qrnn.core.training import (
    InMemoryClusters,
    Trainer,
    TrainingConfig,
    TrainingDiverged,
    epoch_order,
    split_indices,
)
from aiida_qrnn.core.training.distributed import RankInfo, init_process_group, rank_info, rank_share
from aiida_qrnn.core.training.loss import MultitaskLoss
from aiida_qrnn.testing.models import teacher_labelled_clusters, tiny_model

N_CLUSTERS = 20
#: Batches of 6 over 16 training clusters: 3 steps per epoch, the last of 4 clusters.
SETTINGS = {'batch_size': 6, 'validation_batch_size': 3, 'learning_rate': 3e-3, 'weight_decay': 1e-3}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def _train(directory: pathlib.Path, settings: dict, rank: int = 0) -> dict[str, torch.Tensor]:
    """Train the tiny model (seed 1) on the teacher set; return the trained weights, the σ's and the gradients of
    the last step (Adam's step hardly depends on the scale of the gradients: these show it is right)."""
    torch.set_num_threads(1)
    source = InMemoryClusters(teacher_labelled_clusters(N_CLUSTERS))
    train, validation = split_indices(len(source), 0.2, seed=0)
    trainer = Trainer(tiny_model(1), source, train, validation, TrainingConfig(**settings), directory)
    trainer.fit()
    state = {name: value.detach().clone() for name, value in trainer.trained_model().state_dict().items()}
    state['log_variances'] = trainer.loss.log_variances.detach().clone()
    for name, parameter in [*trainer.model.named_parameters(), ('log_variances', trainer.loss.log_variances)]:
        if parameter.grad is not None:
            state[f'gradient.{name}'] = parameter.grad.detach().clone()
    state['epoch'] = torch.tensor(trainer.epoch)
    state['batch_in_epoch'] = torch.tensor(trainer.batch_in_epoch)
    if trainer.history:
        state['validation_score'] = torch.tensor(trainer.history[-1]['validation_score'])
    return state


def _rank_main(rank: int, world_size: int, port: int, directory: str, settings: dict) -> None:
    info = RankInfo(rank, world_size, rank, '127.0.0.1', port)
    init_process_group(info, torch.device('cpu'))
    try:
        state = _train(pathlib.Path(directory), settings, rank)
        torch.save(state, pathlib.Path(directory) / f'rank{rank}.pt')
    finally:
        torch.distributed.destroy_process_group()


def train_on_ranks(world_size: int, directory: pathlib.Path, settings: dict) -> list[dict[str, torch.Tensor]]:
    """Train in ``world_size`` real processes (one process: here); every rank's final state."""
    directory.mkdir(exist_ok=True)
    if world_size == 1:
        return [_train(directory, settings)]
    # Forked, not spawned: the ranks start in milliseconds instead of importing torch again.
    torch.multiprocessing.start_processes(_rank_main, args=(world_size, _free_port(), str(directory), settings),
                                          nprocs=world_size, join=True, start_method='fork')
    return [torch.load(directory / f'rank{rank}.pt', weights_only=True) for rank in range(world_size)]


def assert_same_state(actual: dict, expected: dict, tolerance: float = 1e-10) -> None:
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, rtol=tolerance, atol=tolerance, msg=name)


@pytest.mark.parametrize('batch_size', [6, 1])
def test_one_step_on_two_ranks_equals_one_step_in_one_process(tmp_path, batch_size):
    """One global batch split over two ranks (3 + 3 clusters, or 1 + none) has the gradients of one process and
    moves the weights and σ's as one process does; the step's change is far above the tolerance."""
    one_step = dict(SETTINGS, batch_size=batch_size, samples_per_epoch=batch_size, max_epochs=1)
    single = train_on_ranks(1, tmp_path / 'single', one_step)[0]
    ranks = train_on_ranks(2, tmp_path / 'ddp', one_step)
    assert_same_state(ranks[0], single)
    assert_same_state(ranks[1], ranks[0], tolerance=0.0)  # identical on every rank
    assert sum(name.startswith('gradient.') for name in single) > 10
    initial = tiny_model(1).state_dict()
    moved = max(float((single[name] - initial[name]).abs().max()) for name in initial if 'networks' in name)
    assert moved > 1e-4


def test_interrupted_run_continues_on_another_number_of_ranks(tmp_path):
    """Two epochs (3 steps each, the last with 4 clusters): 1 step on 2 ranks, then the rest in one process, and
    4 steps in one process, then the rest on 2 ranks; both end where an uninterrupted single-process run ends."""
    settings = dict(SETTINGS, max_epochs=2)
    reference = train_on_ranks(1, tmp_path / 'reference', settings)[0]

    first_ranks = tmp_path / 'two_then_one'
    stopped = train_on_ranks(2, first_ranks, dict(settings, max_time_s=0.0))
    assert (int(stopped[0]['epoch']), int(stopped[0]['batch_in_epoch'])) == (0, 1)
    assert_same_state(train_on_ranks(1, first_ranks, settings)[0], reference)

    first_single = tmp_path / 'one_then_two'
    for _ in range(4):
        train_on_ranks(1, first_single, dict(settings, max_time_s=0.0))
    continued = train_on_ranks(2, first_single, settings)
    assert_same_state(continued[0], reference)
    assert_same_state(continued[1], continued[0], tolerance=0.0)


def test_rank_share_splits_a_batch_in_order():
    batch = np.arange(7)
    shares = [rank_share(batch, rank, 3) for rank in range(3)]
    assert [share.tolist() for share in shares] == [[0, 1, 2], [3, 4], [5, 6]]
    assert rank_share(np.arange(1), 1, 2).tolist() == []


def test_partial_losses_add_up_to_the_batch_loss():
    """The rank objective's averaged gradient is the whole batch's: checked on the σ's gradient by hand."""
    source = InMemoryClusters(teacher_labelled_clusters(6))
    model = tiny_model(2)
    loss = MultitaskLoss(('energy', 'forces', 'charges'))
    loss.log_variances.data = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
    from aiida_qrnn.core.model.qrnn import evaluate

    def output(batch):
        return evaluate(model, batch.positions, batch.numbers, batch.system_index, batch.cells, batch.pbc,
                        batch.total_charge, create_graph=True)

    whole = source.batch(np.arange(6))
    total, losses = loss(output(whole), whole)
    counts = loss.task_counts(whole.n_systems, whole.n_atoms)
    parts = [source.batch(np.arange(0, 4)), source.batch(np.arange(4, 6))]
    partials = [loss.partial_losses(output(part), part, counts) for part in parts]
    torch.testing.assert_close(partials[0] + partials[1], losses, rtol=1e-12, atol=0.0)
    (gradient,) = torch.autograd.grad(total, loss.log_variances, retain_graph=True)
    averaged = sum(torch.autograd.grad(loss.rank_objective(partial, 2), loss.log_variances, retain_graph=True)[0]
                   for partial in partials) / 2
    torch.testing.assert_close(averaged, gradient, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(('environment', 'expected'), [
    ({}, RankInfo()),
    ({'RANK': '1', 'WORLD_SIZE': '4', 'LOCAL_RANK': '1', 'MASTER_ADDR': 'n1', 'MASTER_PORT': '1234'},
     RankInfo(1, 4, 1, 'n1', 1234)),
    ({'SLURM_PROCID': '3', 'SLURM_NTASKS': '4', 'SLURM_LOCALID': '1', 'SLURM_STEP_NODELIST': 'gpu[07-08],cpu1',
      'SLURM_STEP_ID': '0', 'SLURM_JOB_ID': '123456'}, RankInfo(3, 4, 1, 'gpu07', 20000 + 3456)),
    ({'SLURM_PROCID': '0', 'SLURM_NTASKS': '1', 'SLURM_STEP_ID': '0'}, RankInfo()),  # one task: a single process
    ({'SLURM_PROCID': '0', 'SLURM_NTASKS': '2', 'SLURM_JOB_NODELIST': 'vm'}, RankInfo()),  # the batch script
])
def test_rank_info_from_torchrun_or_slurm(environment, expected):
    assert rank_info(environment) == expected


def _diverging_rank_main(rank: int, world_size: int, port: int, directory: str) -> None:
    """Train on a set with an infinite force label in the first batch; record what stopped this rank."""
    init_process_group(RankInfo(rank, world_size, rank, '127.0.0.1', port), torch.device('cpu'))
    try:
        torch.set_num_threads(1)
        arrays = teacher_labelled_clusters(N_CLUSTERS)
        train, validation = split_indices(N_CLUSTERS, 0.2, seed=0)
        first = epoch_order(train, 0, 0)[0]
        arrays.labels['forces'][arrays.offsets[first]] = np.inf
        trainer = Trainer(tiny_model(1), InMemoryClusters(arrays), train, validation,
                          TrainingConfig(**dict(SETTINGS, max_epochs=2)), pathlib.Path(directory))
        try:
            trainer.fit()
            outcome = 'finished'
        except TrainingDiverged as exception:
            outcome = str(exception)
        (pathlib.Path(directory) / f'rank{rank}.txt').write_text(outcome)
    finally:
        torch.distributed.destroy_process_group()


def test_a_non_finite_loss_stops_every_rank(tmp_path):
    """The loss sums stay on the device and are read once per epoch; the ranks still stop together (no rank left
    waiting for the others), naming the batch, and no checkpoint is written."""
    context = torch.multiprocessing.start_processes(_diverging_rank_main, args=(2, _free_port(), str(tmp_path)),
                                                    nprocs=2, join=False, start_method='fork')
    deadline = time.monotonic() + 300
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail('a rank did not stop within 300 s after the non-finite loss')
    for rank in range(2):
        assert (tmp_path / f'rank{rank}.txt').read_text() == 'the training loss is not finite at epoch 0, batch 0.'
    assert not (tmp_path / 'checkpoint.pt').exists()
