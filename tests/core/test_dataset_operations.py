"""The array operations the cluster-set calcfunctions are made of: reorder by ids, drop known ids, attach a label."""

from __future__ import annotations

import numpy as np
import pytest

from aiida_qrnn.core.dataset import ClusterArrays, ClusterSetError, order_as, rows_without_ids, with_atom_label
from aiida_qrnn.testing.structures import make_water_clusters


@pytest.fixture
def clusters() -> ClusterArrays:
    return ClusterArrays.from_atoms(make_water_clusters(5, labelled=True, seed=3))


def test_order_as_follows_the_reference_and_names_a_foreign_cluster(clusters):
    reference = [str(cluster_id) for cluster_id in clusters.ids]
    shuffled = clusters.select([3, 0, 4])
    ordered = order_as(shuffled, reference)
    assert [str(i) for i in ordered.ids] == [reference[0], reference[3], reference[4]]
    assert np.array_equal(ordered.positions, clusters.select([0, 3, 4]).positions)
    assert order_as(ordered, reference) is ordered  # already in order: no copy
    with pytest.raises(ClusterSetError, match=rf'cluster {reference[3]} is not in the reference set \(1 such'):
        order_as(shuffled, reference[:3] + reference[4:])


def test_rows_without_ids(clusters):
    known = {str(clusters.ids[1]), str(clusters.ids[4]), 'not-an-id'}
    assert rows_without_ids(clusters, known).tolist() == [0, 2, 3]
    assert rows_without_ids(clusters, [str(i) for i in clusters.ids]).dtype == np.int64


def test_with_atom_label_keeps_the_shared_clusters_and_refuses_other_atoms(clusters):
    unlabelled = clusters.select([0, 1, 2])
    unlabelled.labels = {'energy': unlabelled.labels['energy']}
    charged = with_atom_label(unlabelled.validate(), clusters.select([2, 4, 0]), 'charges')
    assert [str(i) for i in charged.ids] == [str(clusters.ids[0]), str(clusters.ids[2])]
    expected = clusters.select([0, 2])
    assert np.array_equal(charged.labels['charges'], expected.labels['charges'])  # (n_atoms,), in own order
    assert np.array_equal(charged.labels['energy'], expected.labels['energy'])

    impostor = clusters.select([0])
    impostor.numbers = impostor.numbers[::-1].copy()  # same recorded id, other atoms (a corrupted source)
    with pytest.raises(ClusterSetError, match=rf'cluster {clusters.ids[0]}: the set with the charges label has other'):
        with_atom_label(clusters.select([0]), impostor, 'charges')
