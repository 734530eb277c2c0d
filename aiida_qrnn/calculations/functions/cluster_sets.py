"""Every calcfunction that cuts or joins cluster sets, so that each cut or joined set links back to the sets it came
from. All of them work on the in-memory arrays of :mod:`aiida_qrnn.core.dataset` (``select``, ``concatenate``,
``order_as``, ``with_atom_label``); none writes temporary files.

Cutting: ``select_clusters`` (given rows), ``split_cluster_set`` (consecutive shards), ``split_clusters`` (a seeded
random part and the rest), ``candidate_pool`` (the clusters not yet known). Joining: ``merge_cluster_sets`` (sets of
one level of theory), ``collect_labels`` (rows of several label sets), ``assemble_labels`` (the labelled batches of
one set, in its order, with charges from a second level).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_qrnn.core.dataset import ClusterSetError, concatenate, order_as, rows_without_ids, with_atom_label
from aiida_qrnn.data.cluster_set import ClusterSetData

__all__ = (
    'CHARGES', 'LABELS', 'assemble_labels', 'candidate_pool', 'collect_labels', 'merge_cluster_sets',
    'select_clusters', 'split_cluster_set', 'split_clusters',
)

#: Name prefixes of the parts ``assemble_labels`` joins: the engine's labels, and GFN2-xTB charges.
LABELS, CHARGES = 'labels', 'charges'


def _common_level(sets: dict[str, ClusterSetData]) -> str | None:
    """The level of theory all ``sets`` share (their label names too); else an error naming the sets."""
    levels = {node.level_of_theory for node in sets.values()}
    labels = {tuple(sorted(node.label_names)) for node in sets.values()}
    if len(levels) > 1 or len(labels) > 1:
        raise ClusterSetError(f'cannot merge {", ".join(sorted(sets))}: levels of theory {sorted(map(str, levels))} '
                              f'and label sets {sorted(labels)} must agree.')
    return levels.pop()


def _joined(sets: Iterable[ClusterSetData], deduplicate: bool):
    sets = list(sets)
    return concatenate([node.get_arrays() for node in sets], label_names=sets[0].label_names, deduplicate=deduplicate)


@calcfunction
def select_clusters(clusters: ClusterSetData, indices: orm.List) -> ClusterSetData:
    """The clusters ``indices`` of ``clusters``, in that order: the input of a restart, linked to the full set."""
    arrays = clusters.get_arrays()
    return ClusterSetData.from_arrays(arrays.select(indices.get_list()), level_of_theory=clusters.level_of_theory)


@calcfunction
def split_cluster_set(clusters: ClusterSetData, shard_size: orm.Int) -> dict[str, ClusterSetData]:
    """Consecutive shards of ``shard_size`` clusters, outputs ``shard_0000``, ``shard_0001``, ... in input order."""
    arrays = clusters.get_arrays()
    size = shard_size.value
    return {
        f'shard_{index:04d}': ClusterSetData.from_arrays(
            arrays.select(np.arange(start, min(start + size, arrays.n_clusters))),
            level_of_theory=clusters.level_of_theory)
        for index, start in enumerate(range(0, arrays.n_clusters, size))
    }


@calcfunction
def split_clusters(clusters: ClusterSetData, parameters: orm.Dict) -> dict[str, ClusterSetData]:
    """A seeded random ``n_initial`` clusters to label first (``initial``) and the rest (``candidates``)."""
    values = parameters.get_dict()
    n_clusters = clusters.n_clusters
    n_initial = int(values['n_initial'])
    if not 0 < n_initial < n_clusters:
        raise ValueError(f'split_clusters: n_initial must be in 1..{n_clusters - 1} for {n_clusters} sampled '
                         f'clusters, got {n_initial}.')
    chosen = np.zeros(n_clusters, bool)
    chosen[np.random.default_rng(int(values.get('seed', 0))).choice(n_clusters, size=n_initial, replace=False)] = True
    arrays = clusters.get_arrays()
    return {'initial': ClusterSetData.from_arrays(arrays.select(np.flatnonzero(chosen))),
            'candidates': ClusterSetData.from_arrays(arrays.select(np.flatnonzero(~chosen)))}


@calcfunction
def candidate_pool(known: ClusterSetData, **sources: ClusterSetData) -> ClusterSetData:
    """The clusters of ``sources`` (in name order, unlabelled, each once) that are not in ``known``."""
    known_ids = {str(cluster_id) for cluster_id in known.get_arrays().ids}
    parts = []
    for name in sorted(sources):
        arrays = sources[name].get_arrays()
        rows = rows_without_ids(arrays, known_ids)
        if len(rows):
            parts.append(arrays.select(rows))
    if not parts:
        raise ValueError(f'candidate_pool: every candidate of {sorted(sources)} is already in the training data.')
    return ClusterSetData.from_arrays(concatenate(parts, label_names=()))


@calcfunction
def merge_cluster_sets(deduplicate: orm.Bool | None = None, **cluster_sets: ClusterSetData) -> ClusterSetData:
    """Merge ``cluster_sets`` (in the sorted order of their keyword names) into one new set.

    All inputs must share the level of theory and label names. With ``deduplicate`` (default ``True``) a cluster
    whose content id is already in the merged set is dropped, keeping the first occurrence.
    """
    if not cluster_sets:
        raise ValueError('merge_cluster_sets needs at least one cluster set as a keyword argument.')
    level = _common_level(cluster_sets)
    merged = _joined((cluster_sets[name] for name in sorted(cluster_sets)),
                     deduplicate=True if deduplicate is None else deduplicate.value)
    return ClusterSetData.from_arrays(merged, level_of_theory=level)


@calcfunction
def collect_labels(selection: orm.Dict, **sources: ClusterSetData) -> ClusterSetData:
    """Labelled clusters taken from earlier label sets: ``selection`` maps a source name to its row indices."""
    level = _common_level(sources)
    parts = [sources[name].get_arrays().select(rows) for name, rows in sorted(selection.get_dict().items())]
    return ClusterSetData.from_arrays(concatenate(parts), level_of_theory=level)


@calcfunction
def assemble_labels(clusters: ClusterSetData, **parts: ClusterSetData) -> ClusterSetData:
    """The labelled parts of ``clusters`` as one set, in the input order of ``clusters``.

    Parts named ``labels_*`` carry the engine's labels. Parts named ``charges_*`` (GFN2-xTB sets of the same
    cluster ids), when given, supply the per-atom ``charges`` label: only clusters labelled in both are kept, and
    the node's attribute ``charges_level_of_theory`` records that the charges are at the xTB level, not at the
    node's ``level_of_theory``.
    """
    label_parts = {name: part for name, part in parts.items() if name.startswith(f'{LABELS}_')}
    charge_parts = {name: part for name, part in parts.items() if name.startswith(f'{CHARGES}_')}
    if not label_parts:
        raise ValueError(f'assemble_labels: no part named {LABELS}_* among {sorted(parts)}.')
    level = _common_level(label_parts)
    labelled = order_as(_joined((label_parts[name] for name in sorted(label_parts)), deduplicate=True),
                        clusters.get_arrays().ids)
    if charge_parts:
        charges_level = _common_level(charge_parts)
        charges = _joined((charge_parts[name] for name in sorted(charge_parts)), deduplicate=True)
        labelled = with_atom_label(labelled, charges, 'charges')
    node = ClusterSetData.from_arrays(labelled, level_of_theory=level)
    if charge_parts:
        node.base.attributes.set('charges_level_of_theory', charges_level)
    return node
