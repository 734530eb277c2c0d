"""The fast single-device trainer (issue 19 item 1) against a straightforward reference computed here.

The reference assembles each batch cluster by cluster (a Python loop, as the trainer did before), lets the model
search the pairs, and takes plain optimizer steps with the losses read after every step; the trainer gathers
pre-indexed rows, takes the pairs from its cache, prepares batches in a background thread and keeps the loss sums on
the device.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aiida_qrnn.core.dataset import LABELS, write_cluster_set
from aiida_qrnn.core.model.neighbors import neighbor_pairs
from aiida_qrnn.core.training import (
    BatchPrefetcher,
    ClusterBatch,
    FileClusters,
    InMemoryClusters,
    PairCache,
    Trainer,
    TrainingConfig,
    TrainingDiverged,
    epoch_order,
    predict,
    split_indices,
)
from aiida_qrnn.core.training.data import batch_slices
from aiida_qrnn.core.training.trainer import _evaluate, _ReducedPrecision
from aiida_qrnn.testing.models import teacher_labelled_clusters, tiny_model

SMALL = {'batch_size': 4, 'validation_batch_size': 8, 'weight_decay': 1e-4, 'learning_rate': 3e-3}


@pytest.fixture(scope='module')
def arrays():
    return teacher_labelled_clusters(14)


def reference_batch(arrays, indices) -> ClusterBatch:
    """One cluster at a time, concatenated (no pairs: the model searches them)."""
    offsets = arrays.offsets
    parts = [slice(offsets[index], offsets[index + 1]) for index in indices]
    fields = {
        'positions': torch.from_numpy(np.concatenate([arrays.positions[part] for part in parts])),
        'numbers': torch.from_numpy(np.concatenate([arrays.numbers[part] for part in parts]).astype(np.int64)),
        'system_index': torch.from_numpy(np.concatenate([np.full(part.stop - part.start, k)
                                                         for k, part in enumerate(parts)]).astype(np.int64)),
        'cells': torch.from_numpy(np.stack([arrays.cell[index] for index in indices])),
        'pbc': torch.from_numpy(np.stack([arrays.pbc[index] for index in indices])),
        'total_charge': torch.tensor([float(arrays.total_charge[index]) for index in indices], dtype=torch.float64),
    }
    for name, values in arrays.labels.items():
        if LABELS[name][0] == 'atom':
            fields[name] = torch.from_numpy(np.concatenate([values[part] for part in parts]).astype(np.float64))
        else:
            fields[name] = torch.from_numpy(np.stack([values[index] for index in indices]).astype(np.float64))
    return ClusterBatch(**fields)


def test_gathered_batches_and_cached_pairs_equal_the_per_cluster_path(arrays, tmp_path):
    """Batches (memory and file, repeated and unsorted clusters) and pairs equal the reference; so do the loss and
    its gradients."""
    indices = np.array([5, 0, 13, 5, 2, 7])
    expected = reference_batch(arrays, indices)
    path = write_cluster_set(tmp_path / 'set.h5', arrays, level_of_theory='teacher')
    for source in (InMemoryClusters(arrays), FileClusters(path)):
        batch = source.batch(indices)
        for name in ('positions', 'numbers', 'system_index', 'cells', 'pbc', 'total_charge', 'energy', 'forces',
                     'charges', 'dipole'):
            assert torch.equal(getattr(batch, name), getattr(expected, name)), name
    sizes = np.diff(arrays.offsets)[indices]
    searched, _ = neighbor_pairs(expected.positions, expected.system_index, expected.cells, expected.pbc, math.inf)
    assert torch.equal(PairCache(math.inf).pairs(indices, sizes), searched)
    for cutoff in (2.5, 4.0):  # finite cutoffs: each cluster searched once, then taken from the cache
        cache = PairCache(cutoff)
        found = [cache.pairs(indices, sizes, InMemoryClusters(arrays).batch(indices)) for _ in range(2)]
        searched, _ = neighbor_pairs(expected.positions, expected.system_index, expected.cells, expected.pbc, cutoff)
        assert torch.equal(found[0], searched) and torch.equal(found[1], searched)

    train = np.arange(len(arrays.offsets) - 1)
    trainer = Trainer(tiny_model(3), InMemoryClusters(arrays), train, train[:2], TrainingConfig(**SMALL), tmp_path)
    losses, gradients = [], []
    for batch in (trainer._prepare(indices)[0], expected):  # fast path, then the reference
        assert (batch.pairs is not None) == (batch is not expected)
        trainer.optimizer.zero_grad(set_to_none=True)
        output = _evaluate(trainer.model, batch, forces=True, create_graph=True)
        total, _ = trainer.loss(output, batch)
        total.backward()
        losses.append(total.detach())
        gradients.append([p.grad.clone() for p in trainer.model.parameters() if p.grad is not None])
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-12, atol=0)
    assert len(gradients[0]) == len(gradients[1]) > 10
    for fast, reference in zip(*gradients, strict=True):
        torch.testing.assert_close(fast, reference, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize('from_file', [False, True])
def test_an_epoch_matches_plain_steps_with_losses_read_every_step(arrays, tmp_path, from_file):
    """fit() (prefetch thread reading memory or the file, cached pairs, sums on the device) gives the weights and
    the training losses of plain steps on per-cluster batches whose losses are read after each step."""
    train, validation = split_indices(len(arrays.offsets) - 1, 0.2, seed=0)
    config = TrainingConfig(max_epochs=1, **SMALL)
    if from_file:
        source = FileClusters(write_cluster_set(tmp_path / 'set.h5', arrays, level_of_theory='teacher'))
    else:
        source = InMemoryClusters(arrays)
    fast = Trainer(tiny_model(4), source, train, validation, config, tmp_path / 'fast')
    fast.fit()
    plain = Trainer(tiny_model(4), InMemoryClusters(arrays), train, validation, config, tmp_path / 'plain')
    order = epoch_order(train, config.seed, 0)
    totals, task_sums = [], np.zeros(len(config.tasks))
    for part in batch_slices(len(order), config.batch_size):
        batch = reference_batch(arrays, order[part])
        plain.model.train()
        plain.optimizer.zero_grad(set_to_none=True)
        output = _evaluate(plain.model, batch, forces=True, create_graph=True)
        total, losses = plain.loss(output, batch)
        total.backward()
        torch.nn.utils.clip_grad_norm_([p for g in plain.optimizer.param_groups for p in g['params']],
                                       config.gradient_clip)
        plain.optimizer.step()
        totals.append(float(total.detach()))
        task_sums += losses.detach().numpy()
    row = fast.history[0]
    assert row['train_loss'] == pytest.approx(np.mean(totals), rel=1e-12)
    for task, value in zip(config.tasks, task_sums / len(totals), strict=True):
        assert row[f'train_{task}_mse'] == pytest.approx(value, rel=1e-12)
    last = torch.load(tmp_path / 'fast' / 'checkpoint.pt', weights_only=True)
    for name, value in plain.model.state_dict().items():
        torch.testing.assert_close(last['model'][name], value, rtol=1e-10, atol=1e-13)


def test_a_non_finite_loss_stops_the_run_naming_the_batch(arrays, tmp_path):
    """Read once per epoch, a non-finite loss still stops training, names its batch and leaves no checkpoint."""
    bad = teacher_labelled_clusters(14)
    train = np.arange(12)
    order = epoch_order(train, 0, 0)
    bad.labels['forces'][bad.offsets[order[5]]] = np.inf  # in the second batch of 4
    trainer = Trainer(tiny_model(1), InMemoryClusters(bad), train, np.array([12, 13]),
                      TrainingConfig(max_epochs=2, **SMALL), tmp_path)
    with pytest.raises(TrainingDiverged, match='epoch 0, batch 1'):
        trainer.fit()
    assert not (tmp_path / 'checkpoint.pt').exists()


def test_prefetcher_gives_items_in_order_raises_and_closes():
    lists = [np.array([k]) for k in range(6)]
    with BatchPrefetcher(lambda indices: int(indices[0]) * 10, lists) as items:
        assert list(items) == [0, 10, 20, 30, 40, 50]

    def failing(indices):
        if indices[0] == 3:
            raise ValueError('cluster 3 is unreadable')
        return int(indices[0])

    seen = []
    with pytest.raises(ValueError, match='cluster 3'), BatchPrefetcher(failing, lists) as items:
        seen.extend(items)
    assert seen == [0, 1, 2]
    prefetcher = BatchPrefetcher(lambda indices: indices, lists, depth=1)
    assert next(iter(prefetcher))[0] == 0
    prefetcher.close()  # a walltime stop: the thread ends with batches left
    assert not prefetcher._thread.is_alive()


def test_reduced_precision_is_cuda_only_and_float32_only(arrays, tmp_path):
    with pytest.raises(ValueError, match="precision='tf32' lowers float32 matrix products; it needs dtype='float32'"):
        TrainingConfig(precision='tf32')
    with pytest.raises(ValueError, match='precision must be one of'):
        TrainingConfig(precision='fp16', dtype='float32')
    train = np.arange(12)
    with pytest.raises(ValueError, match="precision='bf16' needs a CUDA device; this run is on 'cpu'"):
        Trainer(tiny_model(1), InMemoryClusters(arrays), train, np.array([12]),
                TrainingConfig(precision='bf16', dtype='float32', **SMALL), tmp_path)


def test_bf16_networks_keep_float32_outputs_and_stay_close(arrays):
    """The bf16 hooks (exercised with CPU autocast; the setting itself is CUDA-only) run the element networks in
    bf16 and give float32 energies and forces within bf16 accuracy of float32; outside a step nothing changes."""
    model = tiny_model(2).float()
    batch = InMemoryClusters(arrays).batch(np.arange(6)).to('cpu', torch.float32)
    full = _evaluate(model, batch, forces=True, create_graph=False)
    precision = _ReducedPrecision(model, 'bf16', 'cpu')
    with precision():
        reduced = _evaluate(model, batch, forces=True, create_graph=False)
    after = _evaluate(model, batch, forces=True, create_graph=False)
    assert reduced['energy'].dtype == reduced['forces'].dtype == torch.float32
    assert not torch.equal(reduced['forces'], full['forces'])  # the networks did run in bf16
    scale = full['forces'].abs().max()
    assert (reduced['forces'] - full['forces']).abs().max() < 0.05 * scale
    assert torch.equal(after['forces'], full['forces'])


def test_a_bf16_training_step_stays_close_to_float32(arrays, tmp_path):
    """A training step with the bf16 hooks (CPU autocast) back-propagates through the forces: its loss is within
    bf16 accuracy of the float32 step's and every network weight moves."""
    train = np.arange(12)
    config = TrainingConfig(dtype='float32', **SMALL)
    steps = {}
    for name in ('float32', 'bf16'):
        trainer = Trainer(tiny_model(1), InMemoryClusters(arrays), train, np.array([12, 13]), config, tmp_path / name)
        if name == 'bf16':
            trainer._precision = _ReducedPrecision(trainer.model, 'bf16', 'cpu')
        before = {key: value.clone() for key, value in trainer.model.state_dict().items()}
        trainer._train_step(train[:4])
        trainer._read_running_sums()
        moved = [key for key, value in trainer.model.state_dict().items() if not torch.equal(before[key], value)]
        steps[name] = trainer.running['loss'], moved
    assert steps['bf16'][0] == pytest.approx(steps['float32'][0], rel=0.05)
    assert steps['bf16'][0] != steps['float32'][0]
    assert steps['bf16'][1] == steps['float32'][1] and any('networks' in key for key in steps['bf16'][1])


def test_predict_with_cached_pairs_equals_the_searched_reference(arrays):
    model = tiny_model(5)
    indices = np.array([3, 9, 1, 12, 0, 7, 4])
    found = predict(model, InMemoryClusters(arrays), indices, batch_size=3)
    for part in (indices[:3], indices[3:6], indices[6:]):
        batch = reference_batch(arrays, part)
        output = _evaluate(model, batch, forces=True, create_graph=False)
        rows = np.flatnonzero(np.isin(np.repeat(indices, np.diff(arrays.offsets)[indices]), part))
        systems = np.flatnonzero(np.isin(indices, part))
        for name in ('energy', 'dipole'):
            np.testing.assert_allclose(found[name][0][systems], output[name].detach().numpy(), rtol=1e-12)
        for name in ('forces', 'charges'):
            np.testing.assert_allclose(found[name][0][rows], output[name].detach().numpy(), rtol=1e-12, atol=1e-14)
    assert found['n_atoms'].tolist() == np.diff(arrays.offsets)[indices].tolist()
