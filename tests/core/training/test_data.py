"""Batches: flat without padding, the same from memory and from the file, deterministic epoch order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aiida_qrnn.core.dataset import ClusterSetError, write_cluster_set
from aiida_qrnn.core.training import FileClusters, InMemoryClusters, epoch_order, split_indices
from aiida_qrnn.testing.models import teacher_labelled_clusters


def test_file_and_memory_give_the_same_flat_batch(tmp_path):
    arrays = teacher_labelled_clusters(6)
    path = write_cluster_set(tmp_path / 'set.h5', arrays, level_of_theory='teacher')
    indices = np.array([4, 0, 3])
    memory = InMemoryClusters(arrays).batch(indices)
    from_file = FileClusters(path).batch(indices)
    sizes = np.diff(arrays.offsets)[indices]
    assert memory.n_atoms == sizes.sum() and memory.n_systems == 3  # no padding
    assert torch.equal(memory.system_index, torch.from_numpy(np.repeat(np.arange(3), sizes)))
    for name in ('positions', 'numbers', 'energy', 'forces', 'charges', 'dipole', 'total_charge'):
        assert torch.equal(getattr(memory, name), getattr(from_file, name)), name
    np.testing.assert_array_equal(memory.energy.numpy(), arrays.labels['energy'][indices])


def test_epoch_order_is_a_function_of_seed_and_epoch():
    train, validation = split_indices(50, 0.1, seed=3)
    assert len(validation) == 5 and not set(train) & set(validation)
    first = epoch_order(train, seed=1, epoch=0)
    assert sorted(first) == sorted(train)
    assert np.array_equal(first, epoch_order(train, seed=1, epoch=0))
    assert not np.array_equal(first, epoch_order(train, seed=1, epoch=1))
    long = epoch_order(train, seed=1, epoch=0, samples_per_epoch=100)
    assert len(long) == 100 and set(long) == set(train)


def test_periodic_clusters_are_refused():
    arrays = teacher_labelled_clusters(3)
    arrays.pbc[1] = True
    arrays.cell[1] = np.eye(3) * 10.0
    with pytest.raises(ClusterSetError, match='cluster 1: periodic'):
        InMemoryClusters(arrays, origin='set.h5')
