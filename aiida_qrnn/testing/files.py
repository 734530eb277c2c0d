"""Cluster-set files changed after writing, as a crafted or buggy writer or a failing disk would leave them: the
integrity tests check that every reader refuses them with one clear line."""

from __future__ import annotations

import io
import json
import typing as t
from pathlib import Path

import h5py
import numpy as np

from aiida_qrnn.core.dataset import HEADER_CHECKSUM_KEY, _header_checksum, array_checksum, write_file_digest


class CountingReader(io.FileIO):
    """A file that counts the bytes read through it: how much of a cluster set a reader touches."""

    bytes_read = 0

    def readinto(self, buffer) -> int | None:
        count = super().readinto(buffer)
        self.bytes_read += count or 0
        return count


def reseal(path: Path) -> None:
    """Recompute a changed file's dataset checksums and file digest, as a crafted or buggy writer would, so that
    only the content checks (values, ids, summary) stand between the file and a reader."""
    with h5py.File(path, 'a') as handle:
        attrs = handle.attrs
        checksums = {HEADER_CHECKSUM_KEY: _header_checksum(
            int(attrs['format_version']), attrs['units'], attrs['level_of_theory'], attrs['label_names'])}
        for group in ('atoms', 'clusters'):
            for name, dataset in handle[group].items():
                checksums[f'{group}/{name}'] = array_checksum(
                    dataset.asstr()[...] if h5py.check_string_dtype(dataset.dtype) else dataset[...])
        checksums['offsets'] = array_checksum(handle['offsets'][...])
        attrs['checksums'] = json.dumps(checksums)
    write_file_digest(path)


def change_dataset(path: Path, name: str, change: t.Callable[[np.ndarray], None], *, sealed: bool) -> None:
    """Apply ``change`` in place to dataset ``name``; ``sealed`` recomputes every checksum afterwards, otherwise only
    the file digest is recomputed (so that only the per-dataset checksum can catch the change)."""
    with h5py.File(path, 'a') as handle:
        values = handle[name][...]
        change(values)
        handle[name][...] = values
    if sealed:
        reseal(path)
    else:
        write_file_digest(path)


def flip_bit_in_dataset(path: Path, name: str, *, byte: int, mask: int) -> None:
    """XOR byte ``byte`` of dataset ``name``'s raw values with ``mask``, leaving every checksum but the file digest
    stale: a label changed on disk without the writer knowing."""

    def flip(values: np.ndarray) -> None:
        values.reshape(-1).view(np.uint8)[byte] ^= mask

    change_dataset(path, name, flip, sealed=False)


def randomly_damaged_copies(path: Path, folder: Path, *, n_copies: int, flips_per_copy: int, seed: int,
                            prefix: str = 'damaged') -> t.Iterator[Path]:
    """``n_copies`` copies of ``path`` in ``folder`` (``<prefix><n>.h5``), each with ``flips_per_copy`` random
    single-bit flips anywhere in the file (header, B-trees or data), as a failing disk or transfer leaves them."""
    data = path.read_bytes()
    rng = np.random.default_rng(seed)
    for copy in range(n_copies):
        damaged = bytearray(data)
        for position in rng.integers(0, len(data), size=flips_per_copy):
            damaged[position] ^= 1 << int(rng.integers(8))
        target = folder / f'{prefix}{copy}.h5'
        target.write_bytes(bytes(damaged))
        yield target
