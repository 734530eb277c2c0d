"""Merging cluster sets as a calcfunction, so that a merged set links back to every set it came from."""

from __future__ import annotations

import pathlib
import tempfile

from aiida import orm
from aiida.engine import calcfunction

from aiida_qrnn.core.dataset import merge_cluster_sets as merge_files
from aiida_qrnn.data.cluster_set import ClusterSetData

__all__ = ('merge_cluster_sets',)


@calcfunction
def merge_cluster_sets(deduplicate: orm.Bool | None = None, **cluster_sets: ClusterSetData) -> ClusterSetData:
    """Merge ``cluster_sets`` (in the sorted order of their keyword names) into one new set.

    All inputs must share the level of theory and label names. With ``deduplicate`` (default ``True``) a cluster
    whose content id is already in the merged set is dropped, keeping the first occurrence.
    """
    if not cluster_sets:
        raise ValueError('merge_cluster_sets needs at least one cluster set as a keyword argument.')
    with tempfile.TemporaryDirectory() as folder:
        folder = pathlib.Path(folder)
        sources = []
        for name in sorted(cluster_sets):
            path = folder / f'{name}.h5'
            cluster_sets[name].export_file(path)
            sources.append(path)
        merged = merge_files(
            sources, folder / ClusterSetData.DEFAULT_FILENAME,
            deduplicate=True if deduplicate is None else deduplicate.value,
        )
        return ClusterSetData(merged)
