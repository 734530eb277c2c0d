"""``ClusterSetData``: one cluster-set HDF5 file (see :mod:`aiida_qrnn.core.dataset`) stored as one node."""

from __future__ import annotations

import contextlib
import io
import os
import pathlib
import shutil
import tempfile
import typing as t
from collections import OrderedDict
from collections.abc import Iterator, Sequence

import numpy as np
from aiida.common.exceptions import ValidationError
from aiida.orm import SinglefileData, load_node

from aiida_qrnn.core.dataset import ClusterArrays, ClusterSet, ClusterSetError, read_extxyz, write_cluster_set

if t.TYPE_CHECKING:
    from ase import Atoms

__all__ = ('ClusterSetData', 'stored_cluster_rows')


class ClusterSetData(SinglefileData):
    """A set of clusters (and optionally their labels) in the package's HDF5 format.

    The file is verified before the node exists (every value, the checksums, each cluster id and the recorded
    summary against the content), so an invalid or inconsistent set can never be stored; the summary attributes
    are computed from the content and checked again on ``store()``. They are queryable::

        QueryBuilder().append(ClusterSetData, filters={
            'attributes.level_of_theory': 'gfn2-xtb',
            'attributes.elements': {'contains': ['O']},
        })

    Attributes: ``n_clusters``, ``n_atoms``, ``elements`` (symbols), ``kinds`` and ``kind_counts``,
    ``level_of_theory`` (``None`` when unlabelled), ``label_names``, ``format_version``, ``units``.
    """

    DEFAULT_FILENAME = 'clusters.h5'

    def __init__(
        self, file: str | pathlib.Path | t.IO | None = None, filename: str | pathlib.Path | None = None, **kwargs
    ) -> None:
        super().__init__(None, **kwargs)
        if file is not None:
            self.set_file(file, filename=filename)

    def set_file(self, file: str | pathlib.Path | t.IO, filename: str | pathlib.Path | None = None) -> None:
        """Verify ``file`` as a cluster set, then keep it and the summary attributes computed from its content."""
        if isinstance(file, str | pathlib.Path):
            file = pathlib.Path(file).absolute()
            with ClusterSet(file) as clusters:
                attributes = self._attributes_from_content(clusters)
        else:
            with ClusterSet(file, name=getattr(file, 'name', None) or filename or 'stream') as clusters:
                attributes = self._attributes_from_content(clusters)
            file.seek(0)
        super().set_file(file, filename=filename or self.DEFAULT_FILENAME)
        for key, value in attributes.items():
            self.base.attributes.set(key, value)
        self._content_attributes = attributes

    @staticmethod
    def _attributes_from_content(clusters: ClusterSet) -> dict[str, t.Any]:
        """Read the whole set once and verify it (values, checksums, ids, recorded summary), so a damaged or
        inconsistent file is refused; the attributes come from the arrays, not from what the file says of itself."""
        summary = clusters.verify().summary()
        return {
            **summary, 'kinds': sorted(summary['kind_counts']), 'level_of_theory': clusters.level_of_theory,
            'label_names': clusters.label_names, 'format_version': clusters.format_version, 'units': clusters.units,
        }

    def _validate(self) -> bool:
        """On store: the queryable attributes must still be those computed from the file's content."""
        super()._validate()
        expected = getattr(self, '_content_attributes', None)
        if expected is None:  # the file was put into the repository some other way: verify it now
            with self.open_cluster_set(check_digest=True) as clusters:
                expected = self._attributes_from_content(clusters)
        differing = sorted(key for key, value in expected.items() if self.base.attributes.get(key, None) != value)
        if differing:
            raise ValidationError(
                f'ClusterSetData: attributes {differing} differ from the content of the stored file; they are computed '
                'from the file and must not be changed.'
            )
        return True

    # -- constructors ---------------------------------------------------------------------------------------
    @classmethod
    def from_arrays(cls, arrays: ClusterArrays, *, level_of_theory: str | None = None, **kwargs) -> ClusterSetData:
        """Create an unstored node from in-memory arrays."""
        with tempfile.TemporaryDirectory() as folder:
            path = write_cluster_set(pathlib.Path(folder) / cls.DEFAULT_FILENAME, arrays,
                                     level_of_theory=level_of_theory)
            return cls(path, **kwargs)

    @classmethod
    def from_atoms(
        cls, images: Sequence[Atoms], *, level_of_theory: str | None = None, kind: str | Sequence[str] | None = None,
        **kwargs,
    ) -> ClusterSetData:
        """Create an unstored node from ASE ``Atoms`` (labels from their calculators' results)."""
        arrays = ClusterArrays.from_atoms(images, kind=kind)
        return cls.from_arrays(arrays, level_of_theory=level_of_theory, **kwargs)

    @classmethod
    def from_extxyz(
        cls, path: str | os.PathLike, *, level_of_theory: str | None = None, kind: str | Sequence[str] | None = None,
        **kwargs,
    ) -> ClusterSetData:
        """Create an unstored node from an extended XYZ file; errors name the file and the frame."""
        images = read_extxyz(path)
        arrays = ClusterArrays.from_atoms(images, kind=kind, origin=str(path))
        try:
            return cls.from_arrays(arrays, level_of_theory=level_of_theory, **kwargs)
        except ClusterSetError as exception:
            raise ClusterSetError(f"'{path}': {exception}") from None

    # -- access ---------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def open_cluster_set(self, check_digest: bool = False) -> Iterator[ClusterSet]:
        """Open the stored file for random access without copying or reading it whole.

        The file was verified in full before the node was stored, so it is not hashed again unless ``check_digest``.
        """
        with self.open(mode='rb') as stream:
            handle = stream if stream.seekable() else io.BytesIO(stream.read())
            name = f'ClusterSetData<{self.pk or "unstored"}>'
            with ClusterSet(handle, name=name, check_digest=check_digest) as clusters:
                yield clusters

    def get_atoms(self, index: int) -> Atoms:
        """Return cluster ``index`` as ASE ``Atoms`` with labels in a ``SinglePointCalculator``."""
        with self.open_cluster_set() as clusters:
            return clusters[index]

    def get_arrays(self) -> ClusterArrays:
        with self.open_cluster_set() as clusters:
            return clusters.read_arrays()

    def export_extxyz(self, path: str | os.PathLike) -> pathlib.Path:
        """Write the set to extended XYZ with full float64 precision."""
        with self.open_cluster_set() as clusters:
            return clusters.write_extxyz(path)

    @property
    def ids(self) -> np.ndarray:
        """The content id of every cluster (str), read from the file's id column alone: cheap for large sets."""
        with self.open_cluster_set() as clusters:
            return clusters.ids.astype(str)

    @property
    def n_clusters(self) -> int:
        return self.base.attributes.get('n_clusters')

    @property
    def n_atoms(self) -> int:
        return self.base.attributes.get('n_atoms')

    @property
    def elements(self) -> list[str]:
        return self.base.attributes.get('elements')

    @property
    def level_of_theory(self) -> str | None:
        return self.base.attributes.get('level_of_theory')

    @property
    def label_names(self) -> list[str]:
        return self.base.attributes.get('label_names')

    def __len__(self) -> int:
        return self.n_clusters

    def export_file(self, path: str | os.PathLike) -> pathlib.Path:
        """Copy the stored HDF5 file to ``path``."""
        path = pathlib.Path(path)
        with self.open(mode='rb') as source, path.open('wb') as target:
            shutil.copyfileobj(source, target)
        return path


class _StoredRowCache:
    """Row of each cluster id (its first) in stored sets, by node uuid, least recently used dropped first beyond
    ``limit`` ids in all."""

    def __init__(self, limit: int) -> None:
        self.limit, self.held = limit, 0
        self.rows: OrderedDict[str, dict[str, int]] = OrderedDict()

    def __call__(self, uuid: str) -> dict[str, int]:
        if uuid in self.rows:
            self.rows.move_to_end(uuid)
            return self.rows[uuid]
        ids = load_node(uuid).ids.tolist()
        rows = {cluster_id: row for row, cluster_id in reversed(list(enumerate(ids)))}
        self.rows[uuid] = rows
        self.held += len(rows)
        while self.held > self.limit and len(self.rows) > 1:
            self.held -= len(self.rows.popitem(last=False)[1])
        return rows


#: ``stored_cluster_rows(uuid)``: {cluster id: row} of the stored ``ClusterSetData`` with ``uuid``, read from its
#: file once per process. Label reuse asks this of every labelled set at a level of theory for every new labelling
#: work chain; opening each HDF5 file every time made that cost grow with the database (in a 1 000-job daemon run
#: the rate fell from 20 to 10 jobs a minute). A stored node's file never changes, so the rows can be cached; at
#: most 2 million ids (about 250 MB) are held.
stored_cluster_rows = _StoredRowCache(limit=2_000_000)
