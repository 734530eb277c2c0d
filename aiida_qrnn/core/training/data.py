"""Batches of clusters of different sizes for training: flat arrays plus ``system_index``, no padding.

Two sources give the same batches: :class:`InMemoryClusters` (a :class:`~aiida_qrnn.core.dataset.ClusterArrays`
held in memory, for sets that fit) and :class:`FileClusters` (random access into a cluster-set file, reading only the
rows of the clusters in a batch). Both assemble a batch without a Python loop over its clusters: one gather of
pre-indexed atom rows per array. The order of an epoch depends only on ``(seed, epoch)``, so an interrupted run that
resumes at batch k of epoch e sees exactly the batches it would have seen (:func:`epoch_order`).

Geometry is fixed during training, so the pair list of a cluster never changes: :class:`PairCache` finds it once
per cluster (all pairs of an open cluster for the model's infinite cutoff, from one table per cluster size) and
gives a batch its flat ``pairs`` without a neighbour search. :class:`BatchPrefetcher` assembles the next batches in a
background thread (pinned memory and asynchronous copies on CUDA) while the current one trains.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import queue
import threading
import typing as t

import numpy as np
import torch

from aiida_qrnn.core.dataset import LABELS, ClusterArrays, ClusterSet, ClusterSetError

__all__ = ('BatchPrefetcher', 'ClusterBatch', 'ClusterSource', 'FileClusters', 'InMemoryClusters', 'PairCache',
           'batch_slices', 'epoch_order', 'split_indices')


@dataclasses.dataclass
class ClusterBatch:
    """A flat batch of ``n_systems`` open clusters; labels absent from the set are ``None``."""

    positions: torch.Tensor  # (atoms, 3) Å
    numbers: torch.Tensor  # (atoms,) int64
    system_index: torch.Tensor  # (atoms,) int64, sorted
    cells: torch.Tensor  # (systems, 3, 3) Å
    pbc: torch.Tensor  # (systems, 3) bool
    total_charge: torch.Tensor  # (systems,) e
    energy: torch.Tensor | None = None  # (systems,) eV
    forces: torch.Tensor | None = None  # (atoms, 3) eV/Å
    charges: torch.Tensor | None = None  # (atoms,) e
    dipole: torch.Tensor | None = None  # (systems, 3) e·Å
    pairs: torch.Tensor | None = None  # (2, pairs) int64 half list (PairCache); None: searched at evaluation

    @property
    def n_systems(self) -> int:
        return int(self.cells.shape[0])

    @property
    def n_atoms(self) -> int:
        return int(self.positions.shape[0])

    def to(self, device: torch.device | str, dtype: torch.dtype, *, non_blocking: bool = False) -> ClusterBatch:
        """Floating tensors in ``dtype`` on ``device``; integer and bool tensors keep their type.

        ``non_blocking`` copies asynchronously; it only overlaps with computation from pinned memory (:meth:`pin`).
        """
        moved = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is not None:
                value = value.to(device=device, dtype=dtype if value.is_floating_point() else value.dtype,
                                 non_blocking=non_blocking)
            moved[field.name] = value
        return ClusterBatch(**moved)

    def pin(self) -> ClusterBatch:
        """The batch in page-locked host memory (for asynchronous copies to a GPU)."""
        return ClusterBatch(**{field.name: None if (value := getattr(self, field.name)) is None else value.pin_memory()
                               for field in dataclasses.fields(self)})


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device``; to a GPU from pinned memory without blocking (a copy from pageable memory would
    wait for the work queued on the device)."""
    if device.type == 'cuda':
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


class ClusterSource(t.Protocol):
    """What the trainer reads clusters from."""

    label_names: list[str]

    def __len__(self) -> int: ...

    def sizes(self) -> np.ndarray: ...

    def batch(self, indices: np.ndarray) -> ClusterBatch: ...


def atom_rows(offsets: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the concatenated per-atom arrays that hold the clusters ``indices``, in batch order, and the clusters'
    sizes: (atoms of the batch,) int64, (clusters,) int64. Vectorised: no loop over clusters."""
    starts = offsets[indices]  # (clusters,)
    sizes = offsets[indices + 1] - starts  # (clusters,)
    batch_starts = np.cumsum(sizes) - sizes  # (clusters,) first row of each cluster in the batch
    return np.arange(int(sizes.sum()), dtype=np.int64) + np.repeat(starts - batch_starts, sizes), sizes


def _assemble(per_atom: dict[str, np.ndarray], per_cluster: dict[str, np.ndarray], sizes: np.ndarray,
              label_names: list[str]) -> ClusterBatch:
    """A flat batch from gathered rows (float64 tensors; the trainer casts)."""
    fields = {
        'positions': torch.from_numpy(np.ascontiguousarray(per_atom['positions'], dtype=np.float64)),
        'numbers': torch.from_numpy(per_atom['numbers'].astype(np.int64)),
        'system_index': torch.from_numpy(np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)),
        'cells': torch.from_numpy(np.ascontiguousarray(per_cluster['cell'], dtype=np.float64)),
        'pbc': torch.from_numpy(np.ascontiguousarray(per_cluster['pbc'], dtype=bool)),
        'total_charge': torch.from_numpy(np.asarray(per_cluster['total_charge'], dtype=np.float64)),
    }
    for name in label_names:
        values = per_atom[name] if LABELS[name][0] == 'atom' else per_cluster[name]
        fields[name] = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64))
    return ClusterBatch(**fields)


def _refuse_periodic(pbc: np.ndarray, origin: str) -> None:
    periodic = np.flatnonzero(np.asarray(pbc).any(axis=1))
    if len(periodic):
        raise ClusterSetError(f"'{origin}', cluster {int(periodic[0])}: periodic; training uses open clusters only.")


class InMemoryClusters:
    """Clusters held in memory; ``batch`` slices the concatenated arrays."""

    def __init__(self, arrays: ClusterArrays, origin: str = 'input') -> None:
        _refuse_periodic(arrays.pbc, origin)
        self.arrays = arrays
        self.label_names = sorted(arrays.labels)
        self.offsets = np.asarray(arrays.offsets, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)

    def batch(self, indices: np.ndarray) -> ClusterBatch:
        """The clusters ``indices`` (in this order) as one flat batch: one gather per array."""
        indices = np.asarray(indices, dtype=np.int64)
        rows, sizes = atom_rows(self.offsets, indices)
        arrays = self.arrays
        per_atom = {'numbers': arrays.numbers[rows], 'positions': arrays.positions[rows]}
        per_cluster = {'cell': arrays.cell[indices], 'pbc': arrays.pbc[indices],
                       'total_charge': arrays.total_charge[indices]}
        for name in self.label_names:
            target = per_atom if LABELS[name][0] == 'atom' else per_cluster
            target[name] = arrays.labels[name][rows if target is per_atom else indices]
        return _assemble(per_atom, per_cluster, sizes, self.label_names)


class FileClusters:
    """Random access into a cluster-set file: a batch reads the rows of its clusters only (large sets).

    The per-cluster columns (cell, pbc, total charge, energy, dipole: ~150 bytes a cluster) are read once when the
    file is opened; a batch reads the per-atom rows of its clusters, one read per run of consecutive clusters.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.clusters = ClusterSet(path)
        self.name = self.clusters.name
        self._per_cluster = {name: self.clusters.read_column(f'clusters/{name}')
                             for name in ('cell', 'pbc', 'total_charge')}
        _refuse_periodic(self._per_cluster['pbc'], self.name)
        self.label_names = sorted(self.clusters.label_names)
        self._per_atom_names = ['numbers', 'positions'] + [name for name in self.label_names
                                                          if LABELS[name][0] == 'atom']
        for name in self.label_names:
            if LABELS[name][0] != 'atom':
                self._per_cluster[name] = self.clusters.read_column(f'clusters/{name}')
        self.offsets = self.clusters.offsets

    def __len__(self) -> int:
        return len(self.clusters)

    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)

    def batch(self, indices: np.ndarray) -> ClusterBatch:
        """The clusters ``indices`` (in this order): their atom rows read in sorted runs, then put in batch order."""
        indices = np.asarray(indices, dtype=np.int64)
        rows, sizes = atom_rows(self.offsets, indices)
        order = np.argsort(rows, kind='stable')  # (atoms,) batch rows sorted by file row
        sorted_rows = rows[order]
        breaks = np.flatnonzero(np.diff(sorted_rows) != 1) + 1  # starts of runs of consecutive file rows
        run_starts = sorted_rows[np.concatenate([[0], breaks])] if len(rows) else sorted_rows
        run_stops = sorted_rows[np.concatenate([breaks - 1, [len(rows) - 1]])] + 1 if len(rows) else sorted_rows
        per_atom = {}
        for name in self._per_atom_names:
            runs = self.clusters.read_rows(f'atoms/{name}', run_starts, run_stops)  # rows in sorted order
            values = np.empty_like(runs)
            values[order] = runs
            per_atom[name] = values
        per_cluster = {name: values[indices] for name, values in self._per_cluster.items()}
        return _assemble(per_atom, per_cluster, sizes, self.label_names)

    def close(self) -> None:
        self.clusters.close()


class PairCache:
    """Half pair lists of clusters, found once per cluster (training geometry is fixed) and gathered per batch.

    ``cutoff`` is the model's pair cutoff for open clusters (``QRNN.open_cluster_cutoff``). With ``inf`` (the
    default model: Coulomb over all pairs) the list of a cluster of n atoms is all its pairs, taken from one table per
    cluster size in the order of :func:`~aiida_qrnn.core.model.neighbors.neighbor_pairs`, so a batch gets exactly
    the pairs the search would give, without a search and without a loop over clusters. A finite cutoff searches
    each cluster once, on its first batch, and keeps its list (int32, local atom indices).
    """

    def __init__(self, cutoff: float) -> None:
        self.cutoff = float(cutoff)
        self._table = torch.zeros((2, 0), dtype=torch.long)  # (2, Σ n(n-1)/2) the sizes' tables, concatenated
        self._table_start: dict[int, int] = {}  # cluster size -> first column of its table
        self._device_tables: dict[torch.device, torch.Tensor] = {}  # copies of the table on devices
        self._clusters: dict[int, np.ndarray] = {}  # cluster index -> (2, pairs) int32 (finite cutoff)

    def _extend_table(self, sizes: t.Iterable[int]) -> None:
        """Add the all-pairs tables (i < j, row-major as ``torch.triu_indices``) of sizes not seen before."""
        new = sorted({int(size) for size in sizes} - set(self._table_start))
        if not new:
            return
        parts = [self._table]
        start = self._table.shape[1]
        for size in new:
            self._table_start[size] = start
            parts.append(torch.triu_indices(size, size, 1))  # (2, n(n-1)/2)
            start += size * (size - 1) // 2
        self._table = torch.cat(parts, dim=1)
        self._device_tables.clear()

    def pairs(self, indices: np.ndarray, sizes: np.ndarray, batch: ClusterBatch | None = None,
              device: torch.device | str = 'cpu') -> torch.Tensor:
        """(2, pairs) int64 half list on ``device`` of the batch of clusters ``indices`` (in this order) of ``sizes``
        atoms; ``batch`` (on the host) is needed only for a finite cutoff, whose clusters are searched once.

        With the infinite cutoff the list is gathered on ``device`` from the cached table: no transfer of the list
        and no synchronisation with the device.
        """
        sizes = np.asarray(sizes, dtype=np.int64)  # (clusters,)
        batch_starts = np.cumsum(sizes) - sizes  # (clusters,)
        device = torch.device(device)
        if math.isinf(self.cutoff):
            distinct, inverse = np.unique(sizes, return_inverse=True)
            self._extend_table(distinct.tolist())
            table = self._device_tables.get(device)
            if table is None:
                table = self._device_tables[device] = self._table.to(device)
            table_starts = np.array([self._table_start[int(size)] for size in distinct], dtype=np.int64)[inverse]
            counts = sizes * (sizes - 1) // 2  # (clusters,) pairs of each cluster
            pair_starts = np.cumsum(counts) - counts
            total = int(counts.sum())
            per_cluster = to_device(torch.from_numpy(np.stack([table_starts - pair_starts, batch_starts])),
                                    device)  # (2, clusters)
            repeated = torch.repeat_interleave(per_cluster, to_device(torch.from_numpy(counts), device), dim=1,
                                               output_size=total)  # (2, pairs)
            columns = torch.arange(total, device=device) + repeated[0]  # (pairs,)
            return table.index_select(1, columns) + repeated[1]  # (2, pairs)
        if batch is None:
            raise ValueError(f'PairCache with the finite cutoff {self.cutoff} Å needs the batch to search it.')
        parts = []
        for position, index in enumerate(np.asarray(indices).tolist()):
            local = self._clusters.get(index)
            if local is None:
                local = self._search(batch, int(batch_starts[position]), int(sizes[position]))
                self._clusters[index] = local
            parts.append(local.astype(np.int64) + batch_starts[position])
        found = np.concatenate(parts, axis=1) if parts else np.zeros((2, 0), dtype=np.int64)
        return to_device(torch.from_numpy(found), device)

    def _search(self, batch: ClusterBatch, start: int, size: int) -> np.ndarray:
        """Neighbour search of one open cluster of ``batch``: (2, pairs) int32 local indices."""
        from aiida_qrnn.core.model.neighbors import neighbor_pairs

        positions = batch.positions[start:start + size]
        pairs, _ = neighbor_pairs(positions, torch.zeros(size, dtype=torch.long),
                                  torch.zeros((1, 3, 3), dtype=positions.dtype), torch.zeros((1, 3), dtype=torch.bool),
                                  self.cutoff)
        return pairs.numpy().astype(np.int32)


class BatchPrefetcher:
    """Items ``prepare(indices)`` for each of ``index_lists``, made ``depth`` ahead by a background thread.

    ``prepare`` assembles a batch on the host and moves it to its device (from pinned memory, asynchronously, on
    CUDA), so the next batches are read, gathered and copied while the current one trains. Iterating gives the
    items in order; an exception raised by ``prepare`` is raised where its item would have come. :meth:`close`
    stops the thread (a walltime stop leaves batches unused).
    """

    def __init__(self, prepare: t.Callable[[np.ndarray], t.Any], index_lists: t.Sequence[np.ndarray],
                 depth: int = 2) -> None:
        self._count = len(index_lists)
        self._queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(prepare, list(index_lists)), daemon=True,
                                        name='batch-prefetch')
        self._thread.start()

    def _run(self, prepare: t.Callable[[np.ndarray], t.Any], index_lists: list[np.ndarray]) -> None:
        for indices in index_lists:
            try:
                item = (prepare(indices), None)
            except BaseException as exception:  # handed to the consumer
                item = (None, exception)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.05)
                    break
                except queue.Full:
                    continue
            if self._stop.is_set() or item[1] is not None:
                return

    def __iter__(self) -> t.Iterator[t.Any]:
        for _ in range(self._count):
            item, exception = self._queue.get()
            if exception is not None:
                self.close()
                raise exception
            yield item

    def close(self) -> None:
        """Stop the thread and drop what it prepared."""
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)
        self._thread.join()

    def __enter__(self) -> BatchPrefetcher:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def split_indices(n_clusters: int, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random (train, validation) split of ``range(n_clusters)``, both sorted; at least one cluster in each."""
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f'validation_fraction must lie in (0, 1), got {validation_fraction}.')
    if n_clusters < 2:
        raise ValueError(f'a train/validation split needs at least 2 clusters, got {n_clusters}.')
    n_validation = min(max(round(validation_fraction * n_clusters), 1), n_clusters - 1)
    order = np.random.default_rng(seed).permutation(n_clusters)
    return np.sort(order[n_validation:]), np.sort(order[:n_validation])


def epoch_order(train_indices: np.ndarray, seed: int, epoch: int, samples_per_epoch: int | None = None) -> np.ndarray:
    """The clusters of ``epoch`` in training order: fresh permutations (seeded by seed and epoch) until the epoch
    has ``samples_per_epoch`` samples (default: one pass over the training set)."""
    rng = np.random.default_rng([seed, epoch])
    n_samples = len(train_indices) if samples_per_epoch is None else int(samples_per_epoch)
    n_passes = -(-n_samples // len(train_indices))
    order = np.concatenate([rng.permutation(train_indices) for _ in range(n_passes)])
    return order[:n_samples]


def batch_slices(n_samples: int, batch_size: int) -> list[slice]:
    """Consecutive slices of at most ``batch_size`` samples covering ``range(n_samples)``."""
    return [slice(start, min(start + batch_size, n_samples)) for start in range(0, n_samples, batch_size)]
