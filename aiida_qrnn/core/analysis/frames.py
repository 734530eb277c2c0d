"""One frame iterator for every trajectory analysis (:mod:`.base`).

A :class:`FrameReader` keeps in memory what does not change along a run (atomic numbers, masses, periodicity,
molecule ids) and the small per-frame arrays (steps, times, cells), and reads positions and velocities in chunks of
``chunk_frames`` frames: an analysis of a long run never holds the whole trajectory, only what it accumulates.

Sources: the H5MD files both MD engines write (read through :func:`aiida_qrnn.core.md.trajectory.read_trajectory`)
and arrays already in memory (:meth:`FrameReader.from_arrays`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from ..md.trajectory import TrajectoryArrays, read_trajectory

__all__ = ('DEFAULT_CHUNK_FRAMES', 'Frame', 'FrameReader')

#: Frames read at once: 256 frames of a 10 000-atom cell are 60 MB of positions and velocities.
DEFAULT_CHUNK_FRAMES = 256
_HDF5_SIGNATURE = b'\x89HDF\r\n\x1a\n'


@dataclass(frozen=True)
class Frame:
    """One frame: ``index`` in the trajectory, positions unwrapped (Å), velocities in Å/fs or None."""

    index: int
    step: int
    time_fs: float
    positions: np.ndarray  # (n_atoms, 3) Å
    cell: np.ndarray  # (3, 3) Å
    velocities: np.ndarray | None  # (n_atoms, 3) Å/fs


class FrameReader:
    """Frames of one trajectory, read in chunks; ``name`` (the file) is what error messages cite."""

    def __init__(self, load: Callable[[slice], TrajectoryArrays], *, steps: np.ndarray, times_fs: np.ndarray,
                 cells: np.ndarray, name: str, chunk_frames: int = DEFAULT_CHUNK_FRAMES) -> None:
        """``load(frames)`` returns the frames of a slice (step >= 1) as arrays; ``steps``, ``times_fs`` and
        ``cells`` are those of every frame."""
        if not isinstance(chunk_frames, int) or chunk_frames < 1:
            raise ValueError(f'chunk_frames must be a positive integer, got {chunk_frames!r}.')
        self.name = name
        self.steps = np.asarray(steps)  # (n_frames,)
        self.times_fs = np.asarray(times_fs, dtype=np.float64)  # (n_frames,)
        self.cells = np.asarray(cells, dtype=np.float64)  # (n_frames, 3, 3) Å
        self.n_frames = len(self.steps)
        self.chunk_frames = chunk_frames
        self._load = load
        header = load(slice(0, self.n_frames)) if self.n_frames <= chunk_frames else None
        topology = header if header is not None else load(slice(0, 1))
        self.numbers: np.ndarray = topology.numbers  # (n_atoms,)
        self.masses: np.ndarray = np.asarray(topology.masses, dtype=np.float64)  # (n_atoms,) amu
        self.pbc: np.ndarray = np.asarray(topology.pbc, dtype=bool)  # (3,)
        self.molecule: np.ndarray | None = topology.molecule  # (n_atoms,) or None
        self.has_velocities = topology.velocities is not None
        self._cached = header  # a trajectory of one chunk is read once

    @classmethod
    def open(cls, path: Path | str, *, chunk_frames: int = DEFAULT_CHUNK_FRAMES) -> FrameReader:
        """The frames of an H5MD file written by either MD engine."""
        path = Path(path)
        try:
            with path.open('rb') as handle:
                is_hdf5 = handle.read(8) == _HDF5_SIGNATURE
        except OSError as exception:
            raise ValueError(f'{path}: cannot read the trajectory: {exception}') from exception
        if not is_hdf5:
            raise ValueError(f'{path} is not an H5MD trajectory (no HDF5 signature); both MD engines write H5MD.')
        steps, times, cells = _h5md_frame_table(path)
        return cls(lambda frames: read_trajectory(path, frames=frames), steps=steps, times_fs=times, cells=cells,
                   name=str(path), chunk_frames=chunk_frames)

    @classmethod
    def from_arrays(cls, arrays: TrajectoryArrays, *, name: str = 'trajectory',
                    chunk_frames: int = DEFAULT_CHUNK_FRAMES) -> FrameReader:
        """Frames already in memory (a test's, or a whole trajectory read before)."""
        return cls(lambda frames: _slice(arrays, frames), steps=arrays.steps, times_fs=arrays.times_fs,
                   cells=arrays.cells, name=name, chunk_frames=chunk_frames)

    @property
    def n_atoms(self) -> int:
        return len(self.numbers)

    def frame_indices(self, start: int | None = None, stop: int | None = None, step: int | None = None) -> range:
        """The frames ``start:stop:step`` selects (Python slice rules; ``step`` >= 1)."""
        if step is not None and (not isinstance(step, int | np.integer) or step < 1):
            raise ValueError(f'step must be a positive integer, got {step!r}.')
        return range(self.n_frames)[slice(start, stop, step)]

    def iterate(self, indices: range) -> Iterator[Frame]:
        """The frames of ``indices`` (from :meth:`frame_indices`), in order, read ``chunk_frames`` at a time."""
        for first in range(0, len(indices), self.chunk_frames):
            block = indices[first:first + self.chunk_frames]
            arrays = self._chunk(slice(block.start, block.stop, block.step))
            for offset, index in enumerate(block):
                velocities = arrays.velocities[offset] if arrays.velocities is not None else None
                yield Frame(index=index, step=int(arrays.steps[offset]), time_fs=float(arrays.times_fs[offset]),
                            positions=arrays.positions[offset], cell=arrays.cells[offset], velocities=velocities)

    def __iter__(self) -> Iterator[Frame]:
        return self.iterate(self.frame_indices())

    def __len__(self) -> int:
        return self.n_frames

    def atoms(self, index: int) -> Atoms:
        """Frame ``index`` as ASE atoms (velocities, ``arrays['molecule']``, ``info`` step and time_fs)."""
        index = self.frame_indices()[index]
        return self._chunk(slice(index, index + 1)).to_atoms(0)

    def _chunk(self, frames: slice) -> TrajectoryArrays:
        return self._load(frames) if self._cached is None else _slice(self._cached, frames)


def _slice(arrays: TrajectoryArrays, frames: slice) -> TrajectoryArrays:
    """The frames ``frames`` of arrays in memory."""
    velocities = arrays.velocities[frames] if arrays.velocities is not None else None
    return TrajectoryArrays(numbers=arrays.numbers, masses=arrays.masses, steps=arrays.steps[frames],
                            times_fs=arrays.times_fs[frames], positions=arrays.positions[frames],
                            cells=arrays.cells[frames], pbc=arrays.pbc, velocities=velocities,
                            molecule=arrays.molecule)


def _h5md_frame_table(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps ``(n_frames,)``, times ``(n_frames,)`` fs and cells ``(n_frames, 3, 3)`` of an H5MD file, without its
    positions (the layout of :mod:`aiida_qrnn.core.md.trajectory`)."""
    import h5py

    try:
        with h5py.File(path, 'r') as handle:
            position = handle['particles/all/position']
            return (position['step'][()], np.asarray(position['time'][()], dtype=np.float64),
                    np.asarray(handle['particles/all/box/edges/value'][()], dtype=np.float64))
    except (OSError, KeyError) as exception:
        raise ValueError(f'{path} is not an H5MD trajectory written by aiida-qrnn: {exception}') from exception
