"""``ClusterSetData.ids``: the content ids without loading the whole set."""

from __future__ import annotations

from ase.build import molecule

from aiida_qrnn.core.dataset import ClusterSet
from aiida_qrnn.data.cluster_set import ClusterSetData


def test_ids_are_those_of_the_arrays_and_read_alone(aiida_profile, monkeypatch):
    images = [molecule('H2O'), molecule('CH4'), molecule('H2O')]
    images[2].positions[0, 2] += 0.3
    node = ClusterSetData.from_atoms(images).store()
    expected = [str(cluster_id) for cluster_id in node.get_arrays().ids]

    def no_whole_read(self):
        raise AssertionError('ids read the whole set')

    monkeypatch.setattr(ClusterSet, 'read_arrays', no_whole_read)
    assert node.ids.tolist() == expected
    assert len(set(expected)) == 3
