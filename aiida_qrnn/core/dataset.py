"""The on-disk format of cluster sets and their labels (HDF5). This module is its only owner.

A cluster set is one HDF5 file::

    bytes 0..511        user block: b'aiida-qrnn-clusters sha256 ' + hex sha256 of bytes 512.. (version 2)
    /                   attrs: format, format_version, units (JSON), level_of_theory, label_names (JSON),
                               summary (JSON: n_clusters, n_atoms, elements, kind_counts, n_periodic),
                               checksums (JSON: sha256 of every dataset and of the header, version 2)
    /offsets            (n_clusters + 1,) int64   atoms of cluster i are rows offsets[i]:offsets[i+1]
    /atoms/numbers      (n_atoms,) uint8          atomic numbers
    /atoms/positions    (n_atoms, 3) float64      Å
    /atoms/molecule     (n_atoms,) int32          molecule index of the atom inside its cluster
    /atoms/forces       (n_atoms, 3) float64      eV/Å   (label, optional)
    /atoms/charges      (n_atoms,) float64        e      (label, optional)
    /clusters/id        (n_clusters,) str         content hash, see :func:`content_hash`
    /clusters/kind      (n_clusters,) str         conformational, decomposed, extracted, active-learning ...
    /clusters/source    (n_clusters,) str         where the cluster came from (trajectory, frame, molecules)
    /clusters/total_charge (n_clusters,) int32    e
    /clusters/cell      (n_clusters, 3, 3) float64 Å (zeros for open clusters)
    /clusters/pbc       (n_clusters, 3) bool
    /clusters/energy    (n_clusters,) float64     eV     (label, optional)
    /clusters/dipole    (n_clusters, 3) float64   e·Å    (label, optional)

Files are written to a temporary name and renamed when complete, so a failed write never leaves a
half-written set behind. Per-atom datasets are chunked, so reading one cluster touches only the chunks that
hold its rows, never the whole file. :meth:`ClusterSet.verify` reads everything back and checks values,
checksums, ids and summary against the content; storing a ``ClusterSetData`` runs it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import h5py
import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import chemical_symbols, covalent_radii
from scipy.spatial import cKDTree

from aiida_qrnn.core.sanity import (
    DISSOCIATED_FACTOR,
    FUSED_FRACTION,
    PhysicsCheckError,
    allows_broken_bonds,
    check_structure,
)

__all__ = [
    'FORMAT_NAME',
    'FORMAT_VERSION',
    'LABELS',
    'READABLE_FORMAT_VERSIONS',
    'UNITS',
    'ClusterArrays',
    'ClusterPhysicsError',
    'ClusterSet',
    'ClusterSetError',
    'array_checksum',
    'check_file_digest',
    'concatenate',
    'content_hash',
    'merge_cluster_sets',
    'order_as',
    'read_cluster_sets',
    'read_extxyz',
    'rows_without_ids',
    'with_atom_label',
    'write_cluster_set',
    'write_file_digest',
]

FORMAT_NAME = 'aiida-qrnn-clusters'
FORMAT_VERSION = 2
#: Versions this module reads. Version 1 files have no checksums: ``verify`` checks their values, ids and summary.
READABLE_FORMAT_VERSIONS = (1, 2)

#: Label name -> (per-atom or per-cluster, trailing shape, unit).
LABELS: dict[str, tuple[str, tuple[int, ...], str]] = {
    'energy': ('cluster', (), 'eV'),
    'dipole': ('cluster', (3,), 'e*Angstrom'),
    'forces': ('atom', (3,), 'eV/Angstrom'),
    'charges': ('atom', (), 'e'),
}
UNITS: dict[str, str] = {
    'positions': 'Angstrom',
    'cell': 'Angstrom',
    'total_charge': 'e',
    **{name: unit for name, (_, _, unit) in LABELS.items()},
}
#: Kinds the workflows produce; other non-empty names are accepted for user data.
KNOWN_KINDS = ('conformational', 'decomposed', 'extracted', 'active-learning', 'scan', 'user')
MAX_ATOMIC_NUMBER = len(chemical_symbols) - 1
#: Positions are rounded to this grid (Å) before hashing, so that a geometry read back from a text file
#: with full precision hashes to the same id.
HASH_POSITION_RESOLUTION = 1e-6
#: Grid values up to this magnitude (about 4.6e12 Å) are hashed as int64, as in every id ever written; beyond it the
#: int64 cast would overflow (three different clusters at ~1e13 Å once got one id), so they are hashed as float64.
_INT64_SAFE_GRID = float(2**62)
ATOM_CHUNK_ROWS = 4096
#: Version 2 files start with a user block (which HDF5 skips) holding the sha256 of the rest of the file, so that
#: damage is found before HDF5 parses it: HDF5 itself loops forever on some byte-flipped files.
USERBLOCK_SIZE = 512
FILE_DIGEST_MAGIC = b'aiida-qrnn-clusters sha256 '
HDF5_SIGNATURE = b'\x89HDF\r\n\x1a\n'
#: Key of the root attributes' checksum in the ``checksums`` attribute (dataset names hold the others).
HEADER_CHECKSUM_KEY = '/attrs'
CLUSTER_CHUNK_ROWS = 1024


class ClusterSetError(ValueError):
    """Bad cluster-set input; the message names the file and, where it applies, the cluster index."""


class ClusterPhysicsError(ClusterSetError, PhysicsCheckError):
    """A cluster no physical system can be (fused atoms, an impossible cell, no electrons, a dissociated atom)."""


def _where(origin: str | os.PathLike | None, index: int | None = None) -> str:
    text = f"'{origin}'" if origin is not None else 'input'
    return f'{text}, cluster {index}' if index is not None else text


def content_hash(
    numbers: np.ndarray, positions: np.ndarray, total_charge: int = 0, cell: np.ndarray | None = None,
    pbc: np.ndarray | None = None,
) -> str:
    """Return the content id of one cluster: the same elements, geometry and charge give the same id.

    Positions are rounded to ``HASH_POSITION_RESOLUTION`` Å; the cell counts only for periodic clusters. A grid
    value beyond ``_INT64_SAFE_GRID`` switches the whole cluster to a float64 encoding under its own tag (exact
    there, since float64 values that large are integers), so ids cannot overflow and ordinary ids do not change.
    """
    periodic = pbc is not None and bool(np.any(pbc))
    grids = [np.rint(np.asarray(positions, dtype=np.float64) / HASH_POSITION_RESOLUTION)]
    if periodic:
        grids.append(np.rint(np.asarray(cell, dtype=np.float64) / HASH_POSITION_RESOLUTION))
    largest = max(float(np.abs(grid).max(initial=0.0)) for grid in grids)
    small = largest < _INT64_SAFE_GRID  # False for NaN too
    digest = hashlib.sha256(b'qrnn-cluster-v1' if small else b'qrnn-cluster-v1-float-grid')

    def grid_bytes(grid: np.ndarray) -> bytes:
        return grid.astype(np.int64).tobytes() if small else (grid + 0.0).astype('<f8').tobytes()  # + 0.0: no -0.0

    digest.update(np.ascontiguousarray(numbers, dtype=np.uint8).tobytes())
    digest.update(grid_bytes(grids[0]))
    digest.update(np.int32(total_charge).tobytes())
    if periodic:
        digest.update(np.asarray(pbc, dtype=np.bool_).tobytes())
        digest.update(grid_bytes(grids[1]))
    return digest.hexdigest()[:32]


def array_checksum(values: np.ndarray) -> str:
    """sha256 of one dataset: dtype, shape and little-endian bytes; strings as length-prefixed UTF-8."""
    values = np.asarray(values)
    digest = hashlib.sha256()
    if values.dtype.kind in 'OUS':
        digest.update(f'str|{values.shape}|'.encode())
        for text in values.ravel():
            encoded = (text.decode() if isinstance(text, bytes) else str(text)).encode()
            digest.update(len(encoded).to_bytes(8, 'little'))
            digest.update(encoded)
    else:
        canonical = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder('<'))
        digest.update(f'{canonical.dtype.str}|{canonical.shape}|'.encode())
        digest.update(canonical.tobytes())
    return digest.hexdigest()


def _header_checksum(format_version: int, units: str, level_of_theory: str, label_names: str) -> str:
    """sha256 of the root attributes that are not derived from the arrays (the summary is recomputed instead)."""
    header = json.dumps([FORMAT_NAME, int(format_version), units, level_of_theory, label_names])
    return hashlib.sha256(header.encode()).hexdigest()


@dataclass
class ClusterArrays:
    """A cluster set in memory: concatenated per-atom arrays plus per-cluster arrays.

    This is what is written to and read from the HDF5 file; :meth:`validate` checks it completely.
    """

    numbers: np.ndarray  # (n_atoms,)
    positions: np.ndarray  # (n_atoms, 3)
    offsets: np.ndarray  # (n_clusters + 1,)
    molecule: np.ndarray | None = None  # (n_atoms,)
    total_charge: np.ndarray | None = None  # (n_clusters,)
    cell: np.ndarray | None = None  # (n_clusters, 3, 3)
    pbc: np.ndarray | None = None  # (n_clusters, 3)
    kind: Sequence[str] | None = None  # (n_clusters,)
    source: Sequence[str] | None = None  # (n_clusters,)
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    ids: np.ndarray | None = None  # (n_clusters,) filled by validate()

    @property
    def n_clusters(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_atoms(self) -> int:
        return int(self.offsets[-1])

    def validate(self, origin: str | os.PathLike | None = None) -> ClusterArrays:
        """Check shapes, values and elements, fill defaults and content ids; return ``self``.

        :raises ClusterSetError: naming ``origin`` and the first bad cluster.
        """
        self.offsets = np.asarray(self.offsets, dtype=np.int64)
        if self.offsets.ndim != 1 or len(self.offsets) < 2:
            raise ClusterSetError(f'{_where(origin)}: the cluster set is empty; a set needs at least one cluster.')
        sizes = np.diff(self.offsets)
        if self.offsets[0] != 0 or np.any(sizes <= 0):
            bad = int(np.argmax(sizes <= 0)) if np.any(sizes <= 0) else 0
            raise ClusterSetError(f'{_where(origin, bad)}: offsets must start at 0 and every cluster needs atoms.')
        n_clusters, n_atoms = self.n_clusters, self.n_atoms

        self.numbers = self._per_atom('numbers', self.numbers, (), origin)
        if np.any(self.numbers < 1) or np.any(self.numbers > MAX_ATOMIC_NUMBER):
            atom = int(np.argmax((self.numbers < 1) | (self.numbers > MAX_ATOMIC_NUMBER)))
            raise ClusterSetError(
                f'{_where(origin, self._cluster_of(atom))}: unknown element with atomic number '
                f'{int(self.numbers[atom])}; atomic numbers must lie in 1..{MAX_ATOMIC_NUMBER}.'
            )
        self.numbers = self.numbers.astype(np.uint8)
        self.positions = self._per_atom('positions', self.positions, (3,), origin).astype(np.float64)
        self.molecule = self._per_atom(
            'molecule', np.zeros(n_atoms, np.int32) if self.molecule is None else self.molecule, (), origin
        ).astype(np.int32)
        self.total_charge = self._per_cluster(
            'total_charge', np.zeros(n_clusters) if self.total_charge is None else self.total_charge, (), origin
        )
        if np.any(self.total_charge != np.rint(self.total_charge)):
            bad = int(np.argmax(self.total_charge != np.rint(self.total_charge)))
            raise ClusterSetError(f'{_where(origin, bad)}: total_charge must be an integer number of e.')
        self.total_charge = self.total_charge.astype(np.int32)
        self.cell = self._per_cluster(
            'cell', np.zeros((n_clusters, 3, 3)) if self.cell is None else self.cell, (3, 3), origin
        ).astype(np.float64)
        self.pbc = self._per_cluster(
            'pbc', np.zeros((n_clusters, 3), bool) if self.pbc is None else self.pbc, (3,), origin
        ).astype(np.bool_)
        self.kind = self._strings('kind', self.kind, 'user', origin)
        self.source = self._strings('source', self.source, '', origin, allow_empty=True)
        for name, values in list(self.labels.items()):
            if name not in LABELS:
                raise ClusterSetError(f'{_where(origin)}: unknown label {name!r}; known labels are {sorted(LABELS)}.')
            scope, shape, _ = LABELS[name]
            check = self._per_atom if scope == 'atom' else self._per_cluster
            self.labels[name] = check(name, values, shape, origin).astype(np.float64)
        self.ids = np.array(
            [
                content_hash(
                    self.numbers[start:stop], self.positions[start:stop], self.total_charge[i], self.cell[i],
                    self.pbc[i],
                )
                for i, (start, stop) in enumerate(zip(self.offsets[:-1], self.offsets[1:], strict=True))
            ],
            dtype=object,
        )
        self._check_physics(origin)
        return self

    def _check_physics(self, origin) -> None:
        """Refuse what :func:`aiida_qrnn.core.sanity.check_structure` refuses: fused atoms, impossible cells, no
        electrons, and dissociated atoms except in decomposed clusters (``allows_broken_bonds``).

        ``check_structure`` takes about 1.5 ms a cluster, so a vectorised screen over the whole set first picks the
        clusters that may fail (a superset); ``check_structure`` decides for those, and for periodic clusters.
        """
        sizes = np.diff(self.offsets)
        cluster = np.repeat(np.arange(self.n_clusters), sizes)  # (atoms,)
        radii = covalent_radii[self.numbers.astype(np.int64)]  # (atoms,)
        periodic = np.any(self.pbc, axis=1)  # (clusters,)
        suspects = set(np.flatnonzero(periodic).tolist())
        electrons = np.add.reduceat(self.numbers.astype(np.int64), self.offsets[:-1]) - self.total_charge
        suspects.update(np.flatnonzero(electrons <= 0).tolist())
        open_atoms = np.flatnonzero(~periodic[cluster])
        if len(open_atoms) > 1:
            fused_reach = FUSED_FRACTION * 2.0 * float(radii.max())
            lonely_reach = DISSOCIATED_FACTOR * (radii[open_atoms] + float(radii.min()))  # (open atoms,)
            separation = 2.0 * float(lonely_reach.max()) + 1.0  # Å between clusters along a fourth axis
            points = np.column_stack([self.positions[open_atoms], cluster[open_atoms] * separation])
            tree = cKDTree(points)
            pairs = tree.query_pairs(fused_reach, output_type='ndarray')  # (pairs, 2), same cluster only
            suspects.update(cluster[open_atoms[pairs[:, 0]]].tolist())
            nearest, _ = tree.query(points, k=2)  # (open atoms, 2): itself, then its nearest neighbour
            kinds, kind_index = np.unique(self.kind.astype(str), return_inverse=True)
            may_break = np.array([not allows_broken_bonds(kind) for kind in kinds])[kind_index][cluster[open_atoms]]
            lonely = may_break & (sizes[cluster[open_atoms]] > 1) & (nearest[:, 1] > lonely_reach)
            suspects.update(cluster[open_atoms[lonely]].tolist())
        for index in sorted(suspects):
            start, stop = self.offsets[index], self.offsets[index + 1]
            problems = check_structure(
                self.numbers[start:stop], self.positions[start:stop], cell=self.cell[index], pbc=self.pbc[index],
                total_charge=int(self.total_charge[index]), multiplicity=None,
                allow_broken_bonds=allows_broken_bonds(str(self.kind[index])),
            )
            if problems:
                raise ClusterPhysicsError(f'{_where(origin, index)}: ' + '; '.join(problems) + '.')

    def _cluster_of(self, atom: int) -> int:
        return int(np.searchsorted(self.offsets, atom, side='right') - 1)

    def _check_finite(self, name: str, values: np.ndarray, per_atom: bool, origin) -> None:
        if values.dtype.kind not in 'fc':
            return
        finite = np.isfinite(values).reshape(len(values), -1).all(axis=1)
        if not finite.all():
            row = int(np.argmin(finite))
            cluster = self._cluster_of(row) if per_atom else row
            raise ClusterSetError(f'{_where(origin, cluster)}: {name} contains NaN or infinite values.')

    def _per_atom(self, name: str, values, shape: tuple[int, ...], origin) -> np.ndarray:
        return self._checked(name, values, shape, origin, per_atom=True)

    def _per_cluster(self, name: str, values, shape: tuple[int, ...], origin) -> np.ndarray:
        return self._checked(name, values, shape, origin, per_atom=False)

    def _checked(self, name: str, values, shape: tuple[int, ...], origin, per_atom: bool) -> np.ndarray:
        try:
            array = np.asarray(values)
            if array.dtype.kind not in 'biuf':
                array = array.astype(np.float64)
        except (TypeError, ValueError) as exception:
            raise ClusterSetError(f'{_where(origin)}: {name} must hold numbers ({exception}).') from None
        rows, scope, unit = (self.n_atoms, 'per-atom', 'atoms') if per_atom else (
            self.n_clusters, 'per-cluster', 'clusters')
        if array.shape != (rows, *shape):
            raise ClusterSetError(
                f'{_where(origin)}: {scope} array {name!r} has shape {array.shape}, expected {(rows, *shape)} for '
                f'{rows} {unit}.'
            )
        self._check_finite(name, array, per_atom, origin)
        return array

    def _strings(self, name: str, values, default: str, origin, allow_empty: bool = False) -> np.ndarray:
        if values is None:
            return np.array([default] * self.n_clusters, dtype=object)
        if isinstance(values, str):
            values = [values] * self.n_clusters
        values = list(values)
        if len(values) != self.n_clusters:
            raise ClusterSetError(
                f'{_where(origin)}: {name!r} has {len(values)} entries, expected one per cluster ({self.n_clusters}).'
            )
        for index, value in enumerate(values):
            if not isinstance(value, str) or (not allow_empty and not value.strip()):
                raise ClusterSetError(f'{_where(origin, index)}: {name} must be a non-empty string, got {value!r}.')
        return np.array(values, dtype=object)

    def summary(self) -> dict[str, Any]:
        """Counts, elements and kinds: what the AiiDA node exposes as queryable attributes."""
        present = sorted({int(z) for z in np.unique(self.numbers)})
        return {
            'n_clusters': self.n_clusters,
            'n_atoms': self.n_atoms,
            'elements': [chemical_symbols[z] for z in present],
            'kind_counts': dict(sorted(Counter(str(k) for k in self.kind).items())),
            'n_periodic': int(np.any(self.pbc, axis=1).sum()),
        }

    def select(self, indices: Sequence[int] | np.ndarray) -> ClusterArrays:
        """Return the clusters ``indices`` as a new (validated) ``ClusterArrays``."""
        indices = np.asarray(indices, dtype=np.int64)
        sizes = np.diff(self.offsets)[indices]
        rows = np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in indices])
        labels = {
            name: values[rows] if LABELS[name][0] == 'atom' else values[indices]
            for name, values in self.labels.items()
        }
        return ClusterArrays(
            numbers=self.numbers[rows], positions=self.positions[rows],
            offsets=np.concatenate([[0], np.cumsum(sizes)]), molecule=self.molecule[rows],
            total_charge=self.total_charge[indices], cell=self.cell[indices], pbc=self.pbc[indices],
            kind=list(self.kind[indices]), source=list(self.source[indices]), labels=labels,
        ).validate()

    @classmethod
    def from_atoms(
        cls, images: Sequence[Atoms], *, kind: str | Sequence[str] | None = None, origin: str | None = None,
    ) -> ClusterArrays:
        """Build from ASE ``Atoms``.

        Labels are taken from an attached calculator's results (``energy``, ``forces``, ``dipole``,
        ``charges``); ``info['total_charge']`` (or ``info['charge']``), ``info['kind']``, ``info['source']`` and
        ``arrays['molecule']`` are used when present.
        """
        images = list(images)
        if not images:
            raise ClusterSetError(f'{_where(origin)}: the cluster set is empty; a set needs at least one cluster.')
        label_names = set()
        per_image_labels = []
        for index, atoms in enumerate(images):
            if not isinstance(atoms, Atoms):
                raise ClusterSetError(f'{_where(origin, index)}: expected ase.Atoms, got {type(atoms).__name__}.')
            if len(atoms) == 0:
                raise ClusterSetError(f'{_where(origin, index)}: the cluster has no atoms.')
            results = dict(atoms.calc.results) if atoms.calc is not None else {}
            found = {name: results[name] for name in LABELS if name in results and results[name] is not None}
            per_image_labels.append(found)
            label_names |= found.keys()
        for index, found in enumerate(per_image_labels):
            missing = label_names - found.keys()
            if missing:
                raise ClusterSetError(
                    f'{_where(origin, index)}: labels {sorted(missing)} are missing, but other clusters have them; '
                    'a set is labelled completely or not at all.'
                )
        offsets = np.concatenate([[0], np.cumsum([len(atoms) for atoms in images])])
        if kind is None:
            kind = [_info_text(atoms.info.get('kind', 'user')) for atoms in images]

        labels = {}
        for name in sorted(label_names):
            scope, shape, _ = LABELS[name]
            values = [found[name] for found in per_image_labels]
            if scope == 'atom':
                for index, (value, atoms) in enumerate(zip(values, images, strict=True)):
                    if np.shape(value) != (len(atoms), *shape):
                        raise ClusterSetError(
                            f'{_where(origin, index)}: label {name!r} has shape {np.shape(value)}, expected '
                            f'{(len(atoms), *shape)}.'
                        )
            else:
                for index, value in enumerate(values):
                    if np.shape(value) != shape:
                        raise ClusterSetError(
                            f'{_where(origin, index)}: label {name!r} has shape {np.shape(value)}, expected {shape}.'
                        )
            labels[name] = np.concatenate(
                [_label_array(value, name, shape, origin, index) for index, value in enumerate(values)]
            )
        return cls(
            numbers=np.concatenate([atoms.numbers for atoms in images]),
            positions=np.concatenate([atoms.positions for atoms in images]),
            offsets=offsets,
            molecule=np.concatenate(
                [atoms.arrays.get('molecule', np.zeros(len(atoms), np.int32)) for atoms in images]
            ),
            total_charge=np.array([atoms.info.get('total_charge', atoms.info.get('charge', 0)) for atoms in images]),
            cell=np.array([atoms.cell.array for atoms in images]),
            pbc=np.array([atoms.pbc for atoms in images]),
            kind=kind,
            source=[_info_text(atoms.info.get('source', '')) for atoms in images],
            labels=labels,
        ).validate(origin)


def _label_array(value: Any, name: str, shape: tuple[int, ...], origin, index: int) -> np.ndarray:
    """A label as float64 rows; text where a number belongs (``energy=abc``) names the cluster."""
    try:
        return np.asarray(value, dtype=np.float64).reshape(-1, *shape)
    except (TypeError, ValueError):
        raise ClusterSetError(f'{_where(origin, index)}: label {name!r} is not a number: {value!r}.') from None


def _info_text(value: Any) -> str:
    """A string from an ``Atoms.info`` entry; extended XYZ may have parsed text such as ``"3 5"`` into numbers."""
    if isinstance(value, str):
        return value
    return ' '.join(str(x) for x in np.ravel(value))


def write_cluster_set(
    path: str | os.PathLike, arrays: ClusterArrays, *, level_of_theory: str | None = None,
    origin: str | os.PathLike | None = None,
) -> Path:
    """Validate ``arrays`` and write them to ``path`` atomically (temporary file, then rename).

    :param level_of_theory: required when the set carries labels, e.g. ``'gfn2-xtb'`` or
        ``'wb97x-d3bj/def2-tzvpd'``; must be omitted for unlabelled sets.
    """
    path = Path(path)
    arrays.validate(origin or path)
    label_names = sorted(arrays.labels)
    if label_names and not level_of_theory:
        raise ClusterSetError(
            f'{_where(origin or path)}: the set carries labels {label_names}, so level_of_theory must be given.'
        )
    if level_of_theory and not label_names:
        raise ClusterSetError(
            f'{_where(origin or path)}: level_of_theory={level_of_theory!r} was given, but the set has no labels.'
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.partial', dir=path.parent)
    os.close(descriptor)
    try:
        with h5py.File(temporary, 'w', userblock_size=USERBLOCK_SIZE) as handle:
            _write_arrays(handle, arrays, level_of_theory, label_names)
        write_file_digest(temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return path


def _body_digest(stream: IO[bytes]) -> str:
    """sha256 of everything after the user block."""
    stream.seek(USERBLOCK_SIZE)
    digest = hashlib.sha256()
    while block := stream.read(1 << 20):
        digest.update(block)
    return digest.hexdigest()


def write_file_digest(path: str | os.PathLike) -> None:
    """Record the sha256 of the file's HDF5 part in its user block; the writer's last step."""
    with open(path, 'r+b') as stream:
        header = FILE_DIGEST_MAGIC + _body_digest(stream).encode() + b'\n'
        stream.seek(0)
        stream.write(header.ljust(USERBLOCK_SIZE, b'\0'))


def check_file_digest(source: str | os.PathLike | IO[bytes], name: str) -> None:
    """Compare a version-2 file with the digest in its user block before HDF5 reads it; files without a user
    block (version 1) pass unchecked.

    :raises ClusterSetError: naming the file, when the digest differs or the user block is damaged.
    """
    stream = open(source, 'rb') if isinstance(source, str | os.PathLike) else source  # noqa: SIM115
    try:
        start = stream.seek(0, os.SEEK_CUR)
        stream.seek(0)
        head = stream.read(USERBLOCK_SIZE + len(HDF5_SIGNATURE))
        if head.startswith(FILE_DIGEST_MAGIC):
            recorded = head[len(FILE_DIGEST_MAGIC):len(FILE_DIGEST_MAGIC) + 64].decode('ascii', 'replace')
            if _body_digest(stream) != recorded:
                raise ClusterSetError(
                    f"'{name}': damaged cluster set, the file's sha256 differs from the one recorded when it was "
                    'written (changed or damaged bytes).'
                )
        elif head[USERBLOCK_SIZE:] == HDF5_SIGNATURE:
            raise ClusterSetError(f"'{name}': damaged cluster set, the digest in its first 512 bytes is unreadable.")
        stream.seek(start)
    finally:
        if stream is not source:
            stream.close()


def _write_arrays(handle: h5py.File, arrays: ClusterArrays, level_of_theory: str | None, label_names: list[str]):
    string = h5py.string_dtype('utf-8')
    units, level, names = json.dumps(UNITS), level_of_theory or '', json.dumps(label_names)
    handle.attrs['format'] = FORMAT_NAME
    handle.attrs['format_version'] = FORMAT_VERSION
    handle.attrs['units'] = units
    handle.attrs['level_of_theory'] = level
    handle.attrs['label_names'] = names
    handle.attrs['summary'] = json.dumps(arrays.summary())
    checksums = {HEADER_CHECKSUM_KEY: _header_checksum(FORMAT_VERSION, units, level, names)}

    def dataset(name: str, data: np.ndarray, chunk_rows: int | None, dtype=None):
        data = np.asarray(data) if dtype is None else np.asarray(data, dtype=dtype)
        chunks = None if chunk_rows is None else (min(chunk_rows, len(data)), *data.shape[1:])
        handle.create_dataset(name, data=data, chunks=chunks, dtype=dtype)
        checksums[name] = array_checksum(data)

    dataset('offsets', arrays.offsets, None)
    dataset('atoms/numbers', arrays.numbers, ATOM_CHUNK_ROWS)
    dataset('atoms/positions', arrays.positions, ATOM_CHUNK_ROWS)
    dataset('atoms/molecule', arrays.molecule, ATOM_CHUNK_ROWS)
    dataset('clusters/id', arrays.ids.astype(object), CLUSTER_CHUNK_ROWS, dtype=string)
    dataset('clusters/kind', np.asarray(arrays.kind, dtype=object), CLUSTER_CHUNK_ROWS, dtype=string)
    dataset('clusters/source', np.asarray(arrays.source, dtype=object), CLUSTER_CHUNK_ROWS, dtype=string)
    dataset('clusters/total_charge', arrays.total_charge, CLUSTER_CHUNK_ROWS)
    dataset('clusters/cell', arrays.cell, CLUSTER_CHUNK_ROWS)
    dataset('clusters/pbc', arrays.pbc, CLUSTER_CHUNK_ROWS)
    for name in label_names:
        scope = LABELS[name][0]
        group, rows = ('atoms', ATOM_CHUNK_ROWS) if scope == 'atom' else ('clusters', CLUSTER_CHUNK_ROWS)
        dataset(f'{group}/{name}', arrays.labels[name], rows)
    handle.attrs['checksums'] = json.dumps(checksums, sort_keys=True)


class ClusterSet:
    """Read access to a cluster-set file, by path or by an open binary stream.

    Opening reads only the attributes and offsets; ``cs[i]`` reads the rows of cluster ``i`` alone;
    :meth:`verify` reads and checks everything. Whatever damage a file has, reading it raises
    :class:`ClusterSetError` naming the file, never an h5py exception.

    >>> with ClusterSet('clusters.h5') as clusters:  # doctest: +SKIP
    ...     atoms = clusters[12]
    """

    def __init__(self, source: str | os.PathLike | IO[bytes], *, name: str | None = None, check_digest: bool = True):
        """Open ``source``; ``check_digest=False`` skips hashing the whole file first (for stored, verified files:
        random access then reads only what it needs)."""
        if name is None:
            name = str(source) if isinstance(source, str | os.PathLike) else getattr(source, 'name', 'stream')
        self.name = name
        try:
            self._file_size = _size_of(source)
            if check_digest:
                check_file_digest(source, name)
            self._handle = h5py.File(source, 'r')
        except ClusterSetError:
            raise
        except FileNotFoundError:
            raise ClusterSetError(f"'{self.name}': no such file.") from None
        except (OSError, RuntimeError, ValueError) as exception:
            raise ClusterSetError(f"'{self.name}': not a readable HDF5 cluster set ({exception}).") from None
        try:
            with self._reading('the header'):
                self._check_format()
                self._label_names: list[str] = self._json_attribute('label_names', list)
                # Dataset objects are looked up once: h5py's per-lookup cost dominates reading one small cluster.
                self._datasets: dict[str, h5py.Dataset] = {
                    f'{group}/{name}': item for group in ('atoms', 'clusters')
                    for name, item in self._handle[group].items()
                }
                self._datasets['offsets'] = self._handle['offsets']
                for path, item in self._datasets.items():
                    self._check_size(path, item)
                self.offsets: np.ndarray = self._read('offsets')
            self._check_offsets()
        except BaseException:
            self._handle.close()
            raise

    @contextlib.contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        """Turn whatever h5py, HDF5 or JSON raise on a damaged file into a ``ClusterSetError`` naming the file."""
        try:
            yield
        except ClusterSetError:
            raise
        except (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError, IndexError,
                OverflowError, MemoryError) as exception:
            raise ClusterSetError(
                f"'{self.name}': damaged cluster set, cannot read {what} ({type(exception).__name__}: {exception})."
            ) from None

    def _check_format(self) -> None:
        attrs = self._handle.attrs
        if attrs.get('format') != FORMAT_NAME:
            raise ClusterSetError(f"'{self.name}': not an aiida-qrnn cluster set (format attribute is missing).")
        version = int(attrs.get('format_version', -1))
        if version not in READABLE_FORMAT_VERSIONS:
            raise ClusterSetError(
                f"'{self.name}': cluster-set format version {version} is not supported; this aiida-qrnn reads "
                f'versions {", ".join(map(str, READABLE_FORMAT_VERSIONS))}.'
            )
        self.format_version = version
        for required in ('offsets', 'atoms/numbers', 'atoms/positions', 'clusters/id'):
            if required not in self._handle:
                raise ClusterSetError(f"'{self.name}': dataset {required!r} is missing.")

    def _json_attribute(self, name: str, kind: type) -> Any:
        value = json.loads(self._handle.attrs[name])
        if not isinstance(value, kind):
            raise ClusterSetError(f"'{self.name}': attribute {name!r} is not a JSON {kind.__name__}.")
        return value

    def _check_size(self, path: str, dataset: h5py.Dataset) -> None:
        """Refuse a dataset that claims more bytes than the file holds (damaged dimensions), before reading it."""
        claimed = int(np.prod(dataset.shape, dtype=np.float64)) * dataset.dtype.itemsize
        if self._file_size is not None and claimed > self._file_size:
            raise ClusterSetError(
                f"'{self.name}': damaged cluster set, dataset {path!r} claims {claimed} bytes, more than the "
                f'{self._file_size} bytes of the file.'
            )

    def _check_offsets(self) -> None:
        offsets = self.offsets
        if offsets.ndim != 1 or len(offsets) < 2 or offsets.dtype.kind not in 'iu':
            raise ClusterSetError(f"'{self.name}': damaged cluster set, offsets are not a list of at least 2 integers.")
        sizes = np.diff(offsets)
        if offsets[0] != 0 or np.any(sizes <= 0):
            raise ClusterSetError(
                f"'{self.name}': damaged cluster set, offsets must start at 0 and grow (every cluster needs atoms)."
            )

    def _read(self, path: str) -> np.ndarray:
        """One whole dataset (strings decoded), inside the caller's ``_reading`` context."""
        dataset = self._datasets[path]
        return dataset.asstr()[...] if h5py.check_string_dtype(dataset.dtype) else dataset[...]

    # -- context and summary ------------------------------------------------------------------------------
    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> ClusterSet:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_atoms(self) -> int:
        return int(self.offsets[-1])

    @property
    def level_of_theory(self) -> str | None:
        with self._reading('the level of theory'):
            return str(self._handle.attrs['level_of_theory']) or None

    @property
    def label_names(self) -> list[str]:
        return list(self._label_names)

    @property
    def units(self) -> dict[str, str]:
        with self._reading('the units'):
            return self._json_attribute('units', dict)

    def summary(self) -> dict[str, Any]:
        """The summary recorded in the file (:meth:`verify` checks it against the content), plus the header."""
        with self._reading('the summary'):
            recorded = self._json_attribute('summary', dict)
        return {
            **recorded, 'level_of_theory': self.level_of_theory, 'label_names': self.label_names,
            'format_version': self.format_version,
        }

    @property
    def ids(self) -> np.ndarray:
        with self._reading('the cluster ids'):
            return self._read('clusters/id')

    # -- random access --------------------------------------------------------------------------------------
    def __getitem__(self, index: int) -> Atoms:
        n_clusters = len(self)
        if not -n_clusters <= index < n_clusters:
            raise IndexError(f"'{self.name}': cluster index {index} out of range for {n_clusters} clusters.")
        index %= n_clusters
        start, stop = int(self.offsets[index]), int(self.offsets[index + 1])
        datasets = self._datasets
        with self._reading(f'cluster {index}'):
            atoms = Atoms(
                numbers=datasets['atoms/numbers'][start:stop],
                positions=datasets['atoms/positions'][start:stop],
                cell=datasets['clusters/cell'][index],
                pbc=datasets['clusters/pbc'][index],
            )
            atoms.arrays['molecule'] = datasets['atoms/molecule'][start:stop]
            atoms.info.update(
                id=datasets['clusters/id'].asstr()[index],
                kind=datasets['clusters/kind'].asstr()[index],
                source=datasets['clusters/source'].asstr()[index],
                total_charge=int(datasets['clusters/total_charge'][index]),
                index=index,
            )
            results = {}
            for name in self._label_names:
                if LABELS[name][0] == 'atom':
                    results[name] = datasets[f'atoms/{name}'][start:stop]
                else:
                    results[name] = datasets[f'clusters/{name}'][index]
            if results:
                atoms.calc = SinglePointCalculator(atoms, **results)
        return atoms

    def __iter__(self) -> Iterator[Atoms]:
        for index in range(len(self)):
            yield self[index]

    def _read_all(self) -> dict[str, np.ndarray]:
        """Every dataset the set is made of, as stored (labels included)."""
        unknown = [name for name in self._label_names if name not in LABELS]
        if unknown:
            raise ClusterSetError(f"'{self.name}': unknown label(s) {unknown} in label_names.")
        paths = ['offsets', *(f'atoms/{name}' for name in ('numbers', 'positions', 'molecule'))]
        paths += [f'clusters/{name}' for name in ('id', 'kind', 'source', 'total_charge', 'cell', 'pbc')]
        paths += [f'{"atoms" if LABELS[name][0] == "atom" else "clusters"}/{name}' for name in self._label_names]
        with self._reading('the arrays'):
            return {path: self._read(path) for path in paths}

    def read_arrays(self) -> ClusterArrays:
        """Read the whole set into memory (not validated: :meth:`verify` does that)."""
        return self._arrays_of(self._read_all())

    def _arrays_of(self, raw: dict[str, np.ndarray]) -> ClusterArrays:
        return ClusterArrays(
            numbers=raw['atoms/numbers'], positions=raw['atoms/positions'], offsets=self.offsets.copy(),
            molecule=raw['atoms/molecule'], total_charge=raw['clusters/total_charge'], cell=raw['clusters/cell'],
            pbc=raw['clusters/pbc'], kind=raw['clusters/kind'].astype(object),
            source=raw['clusters/source'].astype(object),
            labels={
                name: raw[f'{"atoms" if LABELS[name][0] == "atom" else "clusters"}/{name}']
                for name in self._label_names
            },
            ids=raw['clusters/id'].astype(object),
        )

    def verify(self) -> ClusterArrays:
        """Read every array and check it against what the file records; return the validated arrays.

        In order: every value (as :meth:`ClusterArrays.validate`), the checksum of every dataset and of the header
        (format version 2), each cluster id against its content, the summary against the content, and the rule
        that a labelled set names its level of theory.

        :raises ClusterSetError: naming the file and, where it applies, the dataset or the cluster.
        """
        raw = self._read_all()
        if not np.array_equal(raw['offsets'], self.offsets):
            raise ClusterSetError(f"'{self.name}': damaged cluster set, offsets changed while reading.")
        arrays = self._arrays_of(raw)
        recorded_ids = np.asarray(arrays.ids, dtype=str)
        with self._reading('the arrays'):
            arrays.validate(self.name)
        if self.format_version >= 2:
            self._verify_checksums(raw)
        if recorded_ids.shape != (arrays.n_clusters,):
            raise ClusterSetError(f"'{self.name}': 'clusters/id' has {recorded_ids.shape} entries, expected "
                                  f'{arrays.n_clusters}.')
        mismatched = np.flatnonzero(arrays.ids.astype(str) != recorded_ids)
        if len(mismatched):
            index = int(mismatched[0])
            raise ClusterSetError(
                f"'{self.name}', cluster {index}: recorded id {recorded_ids[index]} does not match the content "
                f'(id {arrays.ids[index]}); {len(mismatched)} cluster(s) differ.'
            )
        recorded = self.summary()
        computed = arrays.summary()
        differing = sorted(key for key in computed if recorded.get(key) != computed[key])
        if differing:
            details = '; '.join(f'{key} recorded {recorded.get(key)!r}, content {computed[key]!r}' for key in differing)
            raise ClusterSetError(f"'{self.name}': the recorded summary does not match the content: {details}.")
        if bool(self._label_names) != bool(self.level_of_theory):
            raise ClusterSetError(
                f"'{self.name}': labels {self._label_names} and level of theory {self.level_of_theory!r} disagree; a "
                'labelled set needs a level of theory, an unlabelled one has none.'
            )
        return arrays

    def _verify_checksums(self, raw: dict[str, np.ndarray]) -> None:
        with self._reading('the checksums'):
            recorded = self._json_attribute('checksums', dict)
            attrs = self._handle.attrs
            header = _header_checksum(self.format_version, str(attrs['units']), str(attrs['level_of_theory']),
                                      str(attrs['label_names']))
        if recorded.get(HEADER_CHECKSUM_KEY) != header:
            raise ClusterSetError(
                f"'{self.name}': the checksum of the header (units, level of theory, label names) does not match; "
                'the file was changed or damaged after it was written.'
            )
        missing = sorted(set(raw) - set(recorded))
        extra = sorted(set(recorded) - set(raw) - {HEADER_CHECKSUM_KEY})
        if missing or extra:
            raise ClusterSetError(
                f"'{self.name}': the checksums do not cover the datasets (no checksum for {missing}, checksum "
                f'without dataset for {extra}).'
            )
        for path, values in raw.items():
            if array_checksum(values) != recorded[path]:
                raise ClusterSetError(
                    f"'{self.name}': the checksum of dataset {path!r} does not match its content; the file was "
                    'changed or damaged after it was written.'
                )

    def read_column(self, name: str) -> np.ndarray:
        """One whole dataset, e.g. ``'clusters/pbc'`` or ``'clusters/energy'``, without reading the others."""
        if name not in self._datasets:
            raise KeyError(f"'{self.name}': no dataset {name!r}; present: {sorted(self._datasets)}.")
        with self._reading(f'dataset {name!r}'):
            return self._read(name)

    def read_rows(self, name: str, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
        """Rows ``starts[k]:stops[k]`` of dataset ``name`` (e.g. ``'atoms/positions'``), concatenated: one read per
        run, for batches of clusters (training reads its batches so)."""
        if name not in self._datasets:
            raise KeyError(f"'{self.name}': no dataset {name!r}; present: {sorted(self._datasets)}.")
        dataset = self._datasets[name]
        with self._reading(f'rows of dataset {name!r}'):
            parts = [dataset[int(start):int(stop)] for start, stop in zip(starts, stops, strict=True)]
            return np.concatenate(parts) if parts else np.empty((0, *dataset.shape[1:]), dtype=dataset.dtype)

    def write_extxyz(self, path: str | os.PathLike) -> Path:
        """Export to extended XYZ with full float64 precision (``%.17g``), readable by ``ase.io.read``.

        Per-cluster labels and ``id``, ``kind``, ``source``, ``total_charge`` go to the comment line,
        per-atom labels and ``molecule`` to columns.
        """
        path = Path(path)
        descriptor, temporary = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.partial', dir=path.parent)
        try:
            with os.fdopen(descriptor, 'w') as stream:
                for atoms in self:
                    _write_extxyz_frame(stream, atoms)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        return path


def _size_of(source: str | os.PathLike | IO[bytes]) -> int | None:
    """Bytes in a file or seekable stream (``None`` when unknown); bounds what a damaged header may ask to read."""
    if isinstance(source, str | os.PathLike):
        return os.path.getsize(source)
    if not source.seekable():
        return None
    position = source.seek(0, os.SEEK_CUR)
    size = source.seek(0, os.SEEK_END)
    source.seek(position)
    return size


def _write_extxyz_frame(stream: IO[str], atoms: Atoms) -> None:
    results = atoms.calc.results if atoms.calc is not None else {}
    columns = [('species', 'S', 1), ('pos', 'R', 3), ('molecule', 'I', 1)]
    data = [atoms.positions, atoms.arrays['molecule'][:, None]]
    for name in ('forces', 'charges'):
        if name in results:
            values = np.asarray(results[name], dtype=np.float64).reshape(len(atoms), -1)
            columns.append((name, 'R', values.shape[1]))
            data.append(values)
    header = ['Properties=' + ':'.join(f'{n}:{t}:{c}' for n, t, c in columns)]
    if atoms.pbc.any():
        header.insert(0, 'Lattice="' + ' '.join(f'{x:.17g}' for x in atoms.cell.array.ravel()) + '"')
    header.append('pbc="' + ' '.join('T' if p else 'F' for p in atoms.pbc) + '"')
    if 'energy' in results:
        header.append(f'energy={float(results["energy"]):.17g}')
    if 'dipole' in results:
        header.append('dipole="' + ' '.join(f'{x:.17g}' for x in results['dipole']) + '"')
    for key in ('id', 'kind', 'total_charge'):
        header.append(f'{key}={atoms.info[key]}')
    if atoms.info['source']:
        header.append('source=' + json.dumps(atoms.info['source']))
    stream.write(f'{len(atoms)}\n{" ".join(header)}\n')
    symbols = atoms.get_chemical_symbols()
    for row, symbol in enumerate(symbols):
        numbers = []
        for block in data:
            numbers.extend(f'{float(x):.17g}' if block.dtype.kind == 'f' else str(int(x)) for x in block[row])
        stream.write(f'{symbol:<2} ' + ' '.join(numbers) + '\n')


def read_extxyz(path: str | os.PathLike) -> list[Atoms]:
    """Read all frames of an extended XYZ file with ASE; a malformed frame raises ``ClusterSetError`` naming it."""
    from ase.io import iread

    path = Path(path)
    if not path.is_file():
        raise ClusterSetError(f"'{path}': no such file.")
    images: list[Atoms] = []
    try:
        for atoms in iread(path, index=':', format='extxyz'):
            if 'molecule' in atoms.arrays:
                atoms.arrays['molecule'] = atoms.arrays['molecule'].astype(np.int32)
            images.append(atoms)
    except Exception as exception:  # ASE raises many types for malformed text
        raise ClusterSetError(
            f'{_where(path, len(images))}: malformed extended XYZ ({type(exception).__name__}: {exception}).'
        ) from None
    if not images:
        raise ClusterSetError(f"'{path}': the file holds no clusters.")
    for index, atoms in enumerate(images):
        _check_recorded_id(atoms, path, index)
    return images


def _check_recorded_id(atoms: Atoms, path: Path, index: int) -> None:
    """A frame that records its ``id`` (as ``write_extxyz`` does) must still hold that content: an edited
    geometry, element or charge is refused instead of being imported under the old id."""
    if 'id' not in atoms.info:
        return
    charge = atoms.info.get('total_charge', atoms.info.get('charge', 0))
    try:
        total_charge = int(charge)
    except (TypeError, ValueError):
        raise ClusterSetError(f'{_where(path, index)}: total_charge {charge!r} is not an integer.') from None
    if total_charge != charge or not np.all(np.isfinite(atoms.positions)):
        return  # validation names these
    content_id = content_hash(atoms.numbers, atoms.positions, total_charge, atoms.cell.array, atoms.pbc)
    recorded = _info_text(atoms.info['id'])
    if recorded != content_id:
        raise ClusterSetError(
            f'{_where(path, index)}: the recorded id={recorded} does not match the content (id {content_id}): the '
            'geometry, elements or charge were changed; remove id= from the frame to import a changed cluster.'
        )


def merge_cluster_sets(
    sources: Sequence[str | os.PathLike], path: str | os.PathLike, *, deduplicate: bool = True,
) -> Path:
    """Merge cluster-set files into a new file at ``path``.

    All inputs must share the level of theory and label names (or all be unlabelled). With ``deduplicate``, a
    cluster whose content id is already present is dropped, keeping the first occurrence. ``path`` may be one of the
    sources: ``merge_cluster_sets([path, new], path)`` appends ``new`` in place, atomically.
    """
    if not sources:
        raise ClusterSetError('merge_cluster_sets: no input files were given.')
    parts, levels, labels = [], set(), set()
    for source in sources:
        with ClusterSet(source) as clusters:
            parts.append((source, clusters.read_arrays()))
            levels.add(clusters.level_of_theory)
            labels.add(tuple(clusters.label_names))
    if len(levels) > 1 or len(labels) > 1:
        details = ', '.join(f"'{source}'" for source, _ in parts)
        raise ClusterSetError(
            f'cannot merge {details}: levels of theory {sorted(map(str, levels))} and label sets '
            f'{sorted(labels)} must agree.'
        )
    merged = concatenate([arrays for _, arrays in parts], label_names=list(labels.pop()), deduplicate=deduplicate,
                         origin=path)
    return write_cluster_set(path, merged, level_of_theory=levels.pop())


def read_cluster_sets(paths: Sequence[str | os.PathLike]) -> ClusterArrays:
    """The cluster-set files ``paths`` read and concatenated in order (:func:`concatenate`, duplicates kept); all
    must carry the same labels. The error names the first file whose labels differ."""
    if not paths:
        raise ClusterSetError('read_cluster_sets: no cluster-set files were given.')
    parts = []
    for path in paths:
        with ClusterSet(path) as clusters:
            parts.append((path, clusters.read_arrays()))
    label_names = sorted(parts[0][1].labels)
    for path, arrays in parts:
        if sorted(arrays.labels) != label_names:
            raise ClusterSetError(f"'{path}': labels {sorted(arrays.labels)} differ from those of '{parts[0][0]}' "
                                  f'({label_names}); the sets must carry the same labels.')
    return concatenate([arrays for _, arrays in parts], label_names=label_names, deduplicate=False,
                       origin=paths[0] if len(paths) == 1 else 'datasets')


def concatenate(
    parts: Sequence[ClusterArrays], *, label_names: Sequence[str] | None = None, deduplicate: bool = True,
    origin: str | os.PathLike | None = None,
) -> ClusterArrays:
    """One set of all ``parts`` in order, with the labels ``label_names`` (default: those of the first part).

    With ``deduplicate``, a cluster whose content id occurred before is dropped, keeping the first occurrence.
    """
    if not parts:
        raise ClusterSetError('concatenate: no cluster sets were given.')
    label_names = list(parts[0].labels) if label_names is None else list(label_names)
    merged = ClusterArrays(
        numbers=np.concatenate([part.numbers for part in parts]),
        positions=np.concatenate([part.positions for part in parts]),
        offsets=np.concatenate([[0], np.cumsum(np.concatenate([np.diff(part.offsets) for part in parts]))]),
        molecule=np.concatenate([part.molecule for part in parts]),
        total_charge=np.concatenate([part.total_charge for part in parts]),
        cell=np.concatenate([part.cell for part in parts]),
        pbc=np.concatenate([part.pbc for part in parts]),
        kind=[kind for part in parts for kind in part.kind],
        source=[source for part in parts for source in part.source],
        labels={name: np.concatenate([part.labels[name] for part in parts]) for name in label_names},
    ).validate(origin)
    if deduplicate:
        _, first = np.unique(merged.ids.astype(str), return_index=True)
        if len(first) < merged.n_clusters:
            merged = merged.select(np.sort(first))
    return merged


def order_as(arrays: ClusterArrays, ids: Sequence[str]) -> ClusterArrays:
    """``arrays`` reordered as their cluster ids first occur in ``ids``; an id of ``arrays`` missing there is an
    error naming it."""
    rank: dict[str, int] = {}
    for position, cluster_id in enumerate(ids):
        rank.setdefault(str(cluster_id), position)
    own = [str(cluster_id) for cluster_id in arrays.ids]
    foreign = [cluster_id for cluster_id in own if cluster_id not in rank]
    if foreign:
        raise ClusterSetError(f'cluster {foreign[0]} is not in the reference set ({len(foreign)} such cluster(s)).')
    order = np.argsort([rank[cluster_id] for cluster_id in own], kind='stable')
    return arrays if np.array_equal(order, np.arange(len(order))) else arrays.select(order)


def rows_without_ids(arrays: ClusterArrays, ids: Sequence[str] | set[str]) -> np.ndarray:
    """Indices of the clusters of ``arrays`` whose content id is not in ``ids``."""
    excluded = {str(cluster_id) for cluster_id in ids}
    return np.array([row for row, cluster_id in enumerate(arrays.ids) if str(cluster_id) not in excluded], np.int64)


def with_atom_label(arrays: ClusterArrays, source: ClusterArrays, name: str) -> ClusterArrays:
    """The clusters of ``arrays`` that ``source`` also holds (same content id), with ``source``'s per-atom label
    ``name`` added; a cluster whose atoms differ between the two is an error naming it."""
    row_of = {str(cluster_id): row for row, cluster_id in enumerate(source.ids)}
    arrays = arrays.select([row for row, cluster_id in enumerate(arrays.ids) if str(cluster_id) in row_of])
    matched = source.select([row_of[str(cluster_id)] for cluster_id in arrays.ids])
    differs = np.diff(matched.offsets) != np.diff(arrays.offsets)  # (n_clusters,)
    if not differs.any():
        atoms = np.flatnonzero(matched.numbers != arrays.numbers)  # (n_differing_atoms,)
        differs[np.searchsorted(arrays.offsets, atoms, side='right') - 1] = True
    if differs.any():
        raise ClusterSetError(f'cluster {arrays.ids[np.argmax(differs)]}: the set with the {name} label has other '
                              'atoms.')
    arrays.labels = {**arrays.labels, name: matched.labels[name]}
    return arrays.validate()
