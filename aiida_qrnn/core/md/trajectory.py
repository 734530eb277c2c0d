"""Trajectories in H5MD (https://www.nongnu.org/h5md/h5md.html, version 1.1), read by MDAnalysis and by
:func:`read_trajectory` here (ASE has no H5MD reader).

Positions are written **unwrapped**: when an atom jumps by a cell vector between two frames (its
displacement, in fractional coordinates of the current cell, rounds to a non-zero integer), the jump is
subtracted from then on. This is the "TOR" scheme of von Bülow, Bullerjahn and Hummer, J. Chem. Phys. 153,
021101 (2020), correct also when the cell changes in NPT. ASE's integrators never wrap, so for them the
written positions are exactly the integrator's; it matters when a calculator or a caller wraps atoms.
The scheme assumes no atom moves more than half a cell width between two frames (0.5 ps frames in a
liquid move atoms a few Å).

Layout: ``/particles/all/{position,velocity,box/edges}/{step,time,value}`` with ``unit`` attributes
(``Angstrom``, ``fs``, ``Angstrom fs-1``), ``/particles/all/species`` (atomic numbers), ``/particles/all/mass``
(amu) and, when the structure has molecule ids, ``/parameters/molecule``. A writer may also record per-frame
scalars (``OBSERVABLE_UNITS``: potential energy, temperature, density) as ``/observables/<name>/{step,time,value}``
and the name of the stage it records (``/parameters`` attribute ``stage``, e.g. ``npt``); both engines, the QRNN
one and the classical OpenMM one, write their frames through :class:`TrajectoryWriter`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from ase import Atoms, units

H5MD_VERSION = (1, 1)
#: Per-frame scalars a writer can record under ``/observables``, named with their unit as elsewhere in the package.
OBSERVABLE_UNITS = {'potential_energy_eV': 'eV', 'temperature_K': 'K', 'density_g_cm3': 'g cm-3'}
_VELOCITY_TO_ANGSTROM_PER_FS = units.fs  # ASE velocity unit Å/(ASE time) -> Å/fs


def image_shift(previous_wrapped: np.ndarray, current: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Cartesian shift ``(n_atoms, 3)`` by which the wrapping moved atoms between two frames.

    It is L round(d / L) in the current cell's fractional coordinates, d = w_{k+1} - w_k; the TOR scheme's
    unwrapped positions are u_{k+1} = w_{k+1} + offset_{k+1} with offset_{k+1} = offset_k - shift.
    """
    displacement = current - previous_wrapped  # (n_atoms, 3)
    jumps = np.round(np.linalg.solve(cell.T, displacement.T).T)  # (n_atoms, 3) whole cell vectors
    return jumps @ cell


def unwrap_trajectory(positions: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Unwrap a wrapped trajectory ``(n_frames, n_atoms, 3)`` with cells ``(n_frames, 3, 3)`` (TOR scheme)."""
    positions = np.asarray(positions, dtype=np.float64)
    unwrapped = np.empty_like(positions)
    unwrapped[0] = positions[0]
    offset = np.zeros_like(positions[0])  # (n_atoms, 3)
    for frame in range(1, len(positions)):
        offset -= image_shift(positions[frame - 1], positions[frame], cells[frame])
        unwrapped[frame] = positions[frame] + offset
    return unwrapped


class TrajectoryWriter:
    """Appends frames to an H5MD file, unwrapping on write; can reopen a file and cut it back to a checkpoint."""

    def __init__(self, path: Path, atoms: Atoms, *, write_velocities: bool = True, keep_frames: int = 0,
                 observables: tuple[str, ...] = (), stage: str | None = None) -> None:
        """Create ``path`` (``keep_frames=0``) or reopen it keeping its first ``keep_frames`` frames.

        ``observables`` (names of ``OBSERVABLE_UNITS``) are given to every :meth:`append`; ``stage`` names what the
        file records.
        """
        unknown = sorted(set(observables) - set(OBSERVABLE_UNITS))
        if unknown:
            raise ValueError(f'unknown trajectory observable(s) {unknown}; known: {sorted(OBSERVABLE_UNITS)}.')
        self.path = Path(path)
        self.write_velocities = write_velocities
        self.observables = tuple(observables)
        if keep_frames == 0:
            self._file = h5py.File(self.path, 'w')
            self._create(atoms)
            for name in self.observables:
                self._create_element(self._file.require_group('observables'), name, (), OBSERVABLE_UNITS[name])
            if stage is not None:
                self._file.require_group('parameters').attrs['stage'] = stage
        else:
            self._file = h5py.File(self.path, 'r+')
            self._truncate(keep_frames)
        self._previous_wrapped: np.ndarray | None = None
        self._offset = np.zeros((len(atoms), 3))  # (n_atoms, 3) unwrapped minus wrapped positions

    @property
    def n_frames(self) -> int:
        return int(self._file['particles/all/position/step'].shape[0])

    def get_state(self) -> dict[str, np.ndarray]:
        """What unwrapping the next frame depends on; saved in the checkpoint."""
        state = {'unwrap_offset': self._offset.copy()}
        if self._previous_wrapped is not None:
            state['previous_wrapped'] = self._previous_wrapped.copy()
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore :meth:`get_state`, so frames after a restart unwrap as in an uninterrupted run."""
        self._offset = np.array(state['unwrap_offset'], dtype=np.float64)
        self._previous_wrapped = state.get('previous_wrapped')

    def _create(self, atoms: Atoms) -> None:
        n_atoms = len(atoms)
        root = self._file.create_group('h5md')
        root.attrs['version'] = np.array(H5MD_VERSION, dtype=np.int32)
        root.create_group('author').attrs['name'] = 'aiida-qrnn'
        creator = root.create_group('creator')
        creator.attrs['name'] = 'aiida-qrnn'
        creator.attrs['version'] = _package_version()
        particles = self._file.create_group('particles/all')
        particles['species'] = atoms.numbers.astype(np.int32)
        particles['mass'] = atoms.get_masses()
        particles['mass'].attrs['unit'] = 'amu'
        box = particles.create_group('box')
        box.attrs['dimension'] = np.int32(3)
        box.attrs['boundary'] = np.array(['periodic' if p else 'none' for p in atoms.pbc], dtype=h5py.string_dtype())
        self._create_element(box, 'edges', (3, 3), 'Angstrom')
        self._create_element(particles, 'position', (n_atoms, 3), 'Angstrom')
        if self.write_velocities:
            self._create_element(particles, 'velocity', (n_atoms, 3), 'Angstrom fs-1')
        if 'molecule' in atoms.arrays:
            self._file['parameters/molecule'] = np.asarray(atoms.arrays['molecule'], dtype=np.int64)

    @staticmethod
    def _create_element(group: h5py.Group, name: str, shape: tuple[int, ...], unit: str) -> None:
        element = group.create_group(name)
        element.create_dataset('step', shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(1024,))
        element.create_dataset('time', shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(1024,))
        element['time'].attrs['unit'] = 'fs'
        element.create_dataset('value', shape=(0, *shape), maxshape=(None, *shape), dtype=np.float64,
                               chunks=(1, *shape))
        element['value'].attrs['unit'] = unit

    def _elements(self) -> list[h5py.Group]:
        names = ['particles/all/box/edges', 'particles/all/position', 'particles/all/velocity',
                 *(f'observables/{name}' for name in self.observables)]
        return [self._file[name] for name in names if name in self._file]

    def _truncate(self, keep_frames: int) -> None:
        if keep_frames > self.n_frames:
            raise ValueError(f'{self.path} has {self.n_frames} frames, fewer than the {keep_frames} the checkpoint '
                             'recorded; the trajectory does not belong to this checkpoint.')
        for element in self._elements():
            for dataset in ('step', 'time', 'value'):
                element[dataset].resize(keep_frames, axis=0)

    def append(self, atoms: Atoms, step: int, time_fs: float, observables: dict[str, float] | None = None) -> None:
        """Add one frame: unwrapped positions, velocities in Å/fs, the cell and the declared ``observables``."""
        observables = observables or {}
        if set(observables) != set(self.observables):
            raise ValueError(f'{self.path}: frame observables {sorted(observables)} differ from the declared '
                             f'{sorted(self.observables)}.')
        wrapped = atoms.get_positions()
        if self._previous_wrapped is not None and atoms.pbc.any():  # open clusters are never wrapped
            self._offset -= image_shift(self._previous_wrapped, wrapped, atoms.cell.array)
        self._previous_wrapped = wrapped
        unwrapped = wrapped + self._offset  # bit-identical to wrapped while nothing has been wrapped
        values = {'particles/all/box/edges': atoms.cell.array, 'particles/all/position': unwrapped}
        if self.write_velocities:
            values['particles/all/velocity'] = atoms.get_velocities() * _VELOCITY_TO_ANGSTROM_PER_FS
        values.update({f'observables/{name}': value for name, value in observables.items()})
        frame = self.n_frames
        for name, value in values.items():
            element = self._file[name]
            for dataset in ('step', 'time', 'value'):
                element[dataset].resize(frame + 1, axis=0)
            element['step'][frame] = step
            element['time'][frame] = time_fs
            element['value'][frame] = value
        self._file.flush()  # a job killed between frames leaves a readable file with every frame written

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(self, *exception) -> None:
        self.close()


@dataclass
class TrajectoryArrays:
    """A whole trajectory in memory; positions unwrapped."""

    numbers: np.ndarray  # (n_atoms,)
    masses: np.ndarray  # (n_atoms,) amu
    steps: np.ndarray  # (n_frames,)
    times_fs: np.ndarray  # (n_frames,)
    positions: np.ndarray  # (n_frames, n_atoms, 3) Å, unwrapped
    cells: np.ndarray  # (n_frames, 3, 3) Å
    pbc: np.ndarray  # (3,) bool
    velocities: np.ndarray | None  # (n_frames, n_atoms, 3) Å/fs
    molecule: np.ndarray | None  # (n_atoms,) molecule ids
    observables: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (n_frames,), OBSERVABLE_UNITS
    stage: str | None = None

    @property
    def n_frames(self) -> int:
        return len(self.steps)

    def frames(self) -> list[Atoms]:
        """Every frame as ASE atoms (:meth:`to_atoms`)."""
        return [self.to_atoms(frame) for frame in range(self.n_frames)]

    def to_atoms(self, frame: int) -> Atoms:
        """Frame ``frame`` as ASE atoms (velocities set, molecule ids in ``arrays['molecule']``; ``info`` holds
        ``step``, ``time_fs``, the observables by name and ``stage`` when the file has them)."""
        atoms = Atoms(numbers=self.numbers, positions=self.positions[frame], cell=self.cells[frame], pbc=self.pbc,
                      masses=self.masses)
        if self.velocities is not None:
            atoms.set_velocities(self.velocities[frame] / _VELOCITY_TO_ANGSTROM_PER_FS)
        if self.molecule is not None:
            atoms.arrays['molecule'] = self.molecule.copy()
        atoms.info.update(step=int(self.steps[frame]), time_fs=float(self.times_fs[frame]))
        atoms.info.update({name: float(values[frame]) for name, values in self.observables.items()})
        if self.stage is not None:
            atoms.info['stage'] = self.stage
        return atoms


def read_trajectory(path: Path, frames: slice | None = None) -> TrajectoryArrays:
    """Read an H5MD trajectory written by :class:`TrajectoryWriter` (``frames`` selects a slice)."""
    selection = slice(None) if frames is None else frames
    try:
        with h5py.File(Path(path), 'r') as handle:
            particles = handle['particles/all']
            boundary = [str(b.decode() if isinstance(b, bytes) else b) for b in particles['box'].attrs['boundary']]
            velocities = particles['velocity/value'][selection] if 'velocity' in particles else None
            observables = {name: group['value'][selection] for name, group in handle.get('observables', {}).items()}
            stage = handle['parameters'].attrs.get('stage') if 'parameters' in handle else None
            return TrajectoryArrays(
                numbers=particles['species'][()], masses=particles['mass'][()],
                steps=particles['position/step'][selection], times_fs=particles['position/time'][selection],
                positions=particles['position/value'][selection], cells=particles['box/edges/value'][selection],
                pbc=np.array([b == 'periodic' for b in boundary]), velocities=velocities,
                molecule=handle['parameters/molecule'][()] if 'parameters/molecule' in handle else None,
                observables=observables, stage=None if stage is None else str(stage),
            )
    except (OSError, KeyError) as exception:
        raise ValueError(f'{path} is not an H5MD trajectory written by aiida-qrnn: {exception}') from exception


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version('aiida-qrnn')
    except PackageNotFoundError:
        return 'unknown'
