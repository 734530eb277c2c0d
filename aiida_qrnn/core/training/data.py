"""Batches of clusters of different sizes for training: flat arrays plus ``system_index``, no padding.

Two sources give the same batches: :class:`InMemoryClusters` (a :class:`~aiida_qrnn.core.dataset.ClusterArrays`
held in memory, for sets that fit) and :class:`FileClusters` (random access into a cluster-set file, reading only the
rows of the clusters in a batch). The order of an epoch depends only on ``(seed, epoch)``, so an interrupted run that
resumes at batch k of epoch e sees exactly the batches it would have seen (:func:`epoch_order`).
"""

from __future__ import annotations

import dataclasses
import os
import typing as t

import numpy as np
import torch

from aiida_qrnn.core.dataset import LABELS, ClusterArrays, ClusterSet, ClusterSetError

__all__ = ('ClusterBatch', 'ClusterSource', 'FileClusters', 'InMemoryClusters', 'batch_slices', 'epoch_order',
           'split_indices')


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

    @property
    def n_systems(self) -> int:
        return int(self.cells.shape[0])

    @property
    def n_atoms(self) -> int:
        return int(self.positions.shape[0])

    def to(self, device: torch.device | str, dtype: torch.dtype) -> ClusterBatch:
        """Floating tensors in ``dtype`` on ``device``; integer and bool tensors keep their type."""
        moved = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is not None:
                value = value.to(device=device, dtype=dtype if value.is_floating_point() else value.dtype)
            moved[field.name] = value
        return ClusterBatch(**moved)


class ClusterSource(t.Protocol):
    """What the trainer reads clusters from."""

    label_names: list[str]

    def __len__(self) -> int: ...

    def sizes(self) -> np.ndarray: ...

    def batch(self, indices: np.ndarray) -> ClusterBatch: ...


def _collate(parts: list[dict[str, np.ndarray]], label_names: list[str]) -> ClusterBatch:
    """Concatenate per-cluster arrays into a flat batch (float64 tensors; the trainer casts)."""
    sizes = np.array([len(part['numbers']) for part in parts])
    fields = {
        'positions': torch.from_numpy(np.concatenate([part['positions'] for part in parts])),
        'numbers': torch.from_numpy(np.concatenate([part['numbers'] for part in parts]).astype(np.int64)),
        'system_index': torch.from_numpy(np.repeat(np.arange(len(parts)), sizes)),
        'cells': torch.from_numpy(np.stack([part['cell'] for part in parts])),
        'pbc': torch.from_numpy(np.stack([part['pbc'] for part in parts])),
        'total_charge': torch.from_numpy(np.array([part['total_charge'] for part in parts], dtype=np.float64)),
    }
    for name in label_names:
        combine = np.concatenate if LABELS[name][0] == 'atom' else np.stack
        fields[name] = torch.from_numpy(np.asarray(combine([part[name] for part in parts]), dtype=np.float64))
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

    def cluster(self, index: int) -> dict[str, np.ndarray]:
        start, stop = self.offsets[index], self.offsets[index + 1]
        arrays = self.arrays
        part = {'numbers': arrays.numbers[start:stop], 'positions': arrays.positions[start:stop],
                'cell': arrays.cell[index], 'pbc': arrays.pbc[index], 'total_charge': arrays.total_charge[index]}
        for name in self.label_names:
            values = arrays.labels[name]
            part[name] = values[start:stop] if LABELS[name][0] == 'atom' else values[index]
        return part

    def batch(self, indices: np.ndarray) -> ClusterBatch:
        return _collate([self.cluster(int(index)) for index in indices], self.label_names)


class FileClusters:
    """Random access into a cluster-set file: a batch reads the rows of its clusters only (large sets)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.clusters = ClusterSet(path)
        self.name = self.clusters.name
        _refuse_periodic(self.clusters.read_column('clusters/pbc'), self.name)
        self.label_names = sorted(self.clusters.label_names)
        self.offsets = self.clusters.offsets

    def __len__(self) -> int:
        return len(self.clusters)

    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)

    def batch(self, indices: np.ndarray) -> ClusterBatch:
        parts = []
        for index in indices:
            atoms = self.clusters[int(index)]
            part = {'numbers': atoms.numbers, 'positions': atoms.positions, 'cell': atoms.cell.array,
                    'pbc': atoms.pbc, 'total_charge': atoms.info['total_charge']}
            part.update({name: atoms.calc.results[name] for name in self.label_names})
            parts.append(part)
        return _collate(parts, self.label_names)

    def close(self) -> None:
        self.clusters.close()


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
