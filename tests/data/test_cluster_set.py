"""ClusterSetData: storing, querying, exporting, merging with provenance, and refusing bad input."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.common.exceptions import ValidationError

from aiida_qrnn.calculations.functions.cluster_sets import merge_cluster_sets
from aiida_qrnn.core.dataset import ClusterArrays, ClusterSetError, read_extxyz, write_cluster_set, write_file_digest
from aiida_qrnn.data.cluster_set import ClusterSetData, _StoredRowCache
from aiida_qrnn.testing.files import change_dataset, flip_bit_in_dataset, randomly_damaged_copies
from aiida_qrnn.testing.structures import make_water_clusters


def test_atoms_to_node_to_extxyz_to_atoms_is_bit_exact(aiida_profile, tmp_path, labelled_water_clusters):
    node = ClusterSetData.from_atoms(labelled_water_clusters, level_of_theory='gfn2-xtb').store()
    loaded = orm.load_node(node.pk)
    loaded.export_extxyz(tmp_path / 'out.xyz')
    for original, back in zip(labelled_water_clusters, read_extxyz(tmp_path / 'out.xyz'), strict=True):
        assert np.array_equal(back.positions, original.positions)
        assert np.array_equal(back.numbers, original.numbers)
        assert np.array_equal(back.calc.results['forces'], original.calc.results['forces'])
        assert back.calc.results['energy'] == original.calc.results['energy']
    reimported = ClusterSetData.from_extxyz(tmp_path / 'out.xyz', level_of_theory='gfn2-xtb')
    assert np.array_equal(reimported.get_arrays().positions, loaded.get_arrays().positions)


def test_attributes_are_the_queryable_summary(aiida_profile, labelled_water_clusters):
    node = ClusterSetData.from_atoms(labelled_water_clusters, level_of_theory='gfn2-xtb').store()
    assert node.n_clusters == 4
    assert node.n_atoms == sum(len(atoms) for atoms in labelled_water_clusters)
    assert node.elements == ['H', 'O']
    assert node.base.attributes.get('kinds') == ['conformational']
    assert node.level_of_theory == 'gfn2-xtb'
    assert node.label_names == ['charges', 'dipole', 'energy', 'forces']
    assert node.get_atoms(2).info['source'] == labelled_water_clusters[2].info['source']


def test_query_by_level_of_theory_and_element(aiida_profile_clean):
    water = ClusterSetData.from_atoms(make_water_clusters(2, labelled=True), level_of_theory='gfn2-xtb').store()
    other = make_water_clusters(2, labelled=True, seed=3)
    other[0].numbers[0] = 6  # a carbon
    with_carbon = ClusterSetData.from_atoms(other, level_of_theory='wb97x-d3bj/def2-tzvpd').store()
    ClusterSetData.from_atoms(make_water_clusters(2)).store()  # unlabelled

    def query(**filters):
        builder = orm.QueryBuilder().append(ClusterSetData, filters=filters, project='id')
        return sorted(builder.all(flat=True))

    assert query(**{'attributes.level_of_theory': 'gfn2-xtb'}) == [water.pk]
    assert query(**{'attributes.elements': {'contains': ['C']}}) == [with_carbon.pk]
    assert query(**{'attributes.elements': {'contains': ['O']}, 'attributes.level_of_theory':
                    'wb97x-d3bj/def2-tzvpd'}) == [with_carbon.pk]
    assert len(query(**{'attributes.label_names': {'contains': ['forces']}})) == 2


def test_merge_is_a_calcfunction_with_provenance(aiida_profile_clean):
    first = ClusterSetData.from_atoms(make_water_clusters(3, labelled=True, seed=1), level_of_theory='gfn2-xtb')
    repeated = make_water_clusters(1, labelled=True, seed=1)  # equal to the first cluster of `first`
    second = ClusterSetData.from_atoms(make_water_clusters(2, labelled=True, seed=2) + repeated,
                                       level_of_theory='gfn2-xtb')
    merged, calculation = merge_cluster_sets.run_get_node(a=first, b=second)
    assert calculation.is_finished_ok
    assert merged.n_clusters == 5
    assert merged.creator.pk == calculation.pk
    inputs = {link.link_label: link.node.pk for link in calculation.base.links.get_incoming(node_class=ClusterSetData)}
    assert inputs == {'a': first.pk, 'b': second.pk}
    kept_all = merge_cluster_sets(a=first, b=second, deduplicate=orm.Bool(False))
    assert kept_all.n_clusters == 6


def test_merge_of_incompatible_sets_fails_and_stores_no_output(aiida_profile_clean):
    labelled = ClusterSetData.from_atoms(make_water_clusters(2, labelled=True), level_of_theory='gfn2-xtb')
    unlabelled = ClusterSetData.from_atoms(make_water_clusters(2, seed=4))
    with pytest.raises(ClusterSetError, match='must agree'):
        merge_cluster_sets(a=labelled, b=unlabelled)
    assert orm.QueryBuilder().append(ClusterSetData, filters={'attributes.n_clusters': 4}).count() == 0


def test_invalid_file_never_becomes_a_node(aiida_profile_clean, tmp_path):
    bad = tmp_path / 'bad.h5'
    bad.write_bytes(b'not hdf5 at all')
    with pytest.raises(ClusterSetError, match=r"bad\.h5': not a readable HDF5"):
        ClusterSetData(bad)
    with pytest.raises(ClusterSetError, match='cluster 1: positions contains NaN'):
        images = make_water_clusters(3)
        images[1].positions[0, 0] = np.nan
        ClusterSetData.from_atoms(images)
    assert orm.QueryBuilder().append(ClusterSetData).count() == 0


def test_corrupt_arrays_inside_a_valid_file_are_refused(aiida_profile_clean, tmp_path):
    """A file written by another tool with NaN inside passes the header check but not the node's validation."""
    import h5py

    path = write_cluster_set(tmp_path / 'set.h5', ClusterArrays.from_atoms(make_water_clusters(3)))
    with h5py.File(path, 'a') as handle:
        handle['atoms/positions'][4, 2] = np.inf
    write_file_digest(path)  # the other tool sealed the file it wrote
    with pytest.raises(ClusterSetError, match='cluster 1: positions contains NaN or infinite'):
        ClusterSetData(path)


def test_malformed_extxyz_names_file(aiida_profile_clean, tmp_path):
    path = tmp_path / 'broken.xyz'
    path.write_text('3\n\nO 0 0 0\nH 0 0\n')
    with pytest.raises(ClusterSetError, match=r"broken.xyz', cluster 0: malformed"):
        ClusterSetData.from_extxyz(path)
    assert orm.QueryBuilder().append(ClusterSetData).count() == 0


def test_stored_rows_are_read_once_and_the_cache_is_bounded(aiida_profile, monkeypatch):
    first = ClusterSetData.from_atoms(make_water_clusters(3, seed=1)).store()
    second = ClusterSetData.from_atoms(make_water_clusters(4, seed=2)).store()
    opened = []
    original = ClusterSetData.open_cluster_set
    monkeypatch.setattr(ClusterSetData, 'open_cluster_set', lambda node: opened.append(node.pk) or original(node))
    cache = _StoredRowCache(limit=5)
    with original(first) as clusters:
        expected = {str(cluster_id): row for row, cluster_id in enumerate(clusters.ids)}
    assert cache(first.uuid) == expected and sorted(expected.values()) == [0, 1, 2]
    assert cache(first.uuid) == expected
    assert opened == [first.pk]  # the second lookup did not open the file
    assert len(cache(second.uuid)) == 4
    assert list(cache.rows) == [second.uuid] and cache.held == 4  # 3 + 4 > 5: the older set was dropped
    cache(first.uuid)
    assert opened == [first.pk, second.pk, first.pk]


# -- storing verifies: the node's attributes and ids are the file's content -----------------------------------------
def test_a_file_whose_summary_lies_is_not_stored(aiida_profile_clean, labelled_file):
    """Before: a file with one atomic number changed was stored with the elements its own summary claimed."""
    def to_fluorine(numbers):
        numbers[4] = 9

    change_dataset(labelled_file, 'atoms/numbers', to_fluorine, sealed=True)
    with pytest.raises(ClusterSetError, match=r"set.h5', cluster 1: recorded id"):
        ClusterSetData(labelled_file)
    assert orm.QueryBuilder().append(ClusterSetData).count() == 0


def test_moved_atoms_are_not_stored_under_the_intact_id(aiida_profile_clean, labelled_file):
    intact = ClusterSetData(labelled_file).store()

    def move(positions):
        positions[0] += 0.3

    change_dataset(labelled_file, 'atoms/positions', move, sealed=True)
    with pytest.raises(ClusterSetError, match='cluster 0: recorded id'):
        ClusterSetData(labelled_file)
    assert orm.QueryBuilder().append(ClusterSetData).all(flat=True) == [intact]


@pytest.mark.parametrize('dataset', ['clusters/energy', 'atoms/forces'])
def test_a_changed_label_byte_is_not_stored(aiida_profile_clean, labelled_file, dataset):
    flip_bit_in_dataset(labelled_file, dataset, byte=3, mask=0x40)
    with pytest.raises(ClusterSetError, match=f"the checksum of dataset '{dataset}' does not match"):
        ClusterSetData(labelled_file)


def test_randomly_damaged_files_give_one_clear_error(aiida_profile_clean, labelled_file, tmp_path):
    """Before: 4 of 5 byte-flipped files raised h5py's RuntimeError/KeyError/OSError (and some hang HDF5)."""
    damaged = randomly_damaged_copies(labelled_file, tmp_path, n_copies=20, flips_per_copy=3, seed=5)
    for trial, path in enumerate(damaged):
        with pytest.raises(ClusterSetError, match=rf"damaged{trial}.h5': damaged cluster set"):
            ClusterSetData(path)
    assert orm.QueryBuilder().append(ClusterSetData).count() == 0


def test_attributes_changed_before_storing_are_refused(aiida_profile_clean, labelled_file):
    node = ClusterSetData(labelled_file)
    node.base.attributes.set('elements', ['H', 'C', 'O'])
    with pytest.raises(ValidationError, match=r"attributes \['elements'\] differ from the content"):
        node.store()
    assert ClusterSetData(labelled_file).store().elements == ['H', 'O']


def test_fused_atoms_are_never_stored(aiida_profile_clean):
    images = make_water_clusters(3)
    images[1].positions[1] = images[1].positions[0] + 0.01
    with pytest.raises(ClusterSetError, match=r'cluster 1: atoms O0 and H1 are 0\.0173 Å apart'):
        ClusterSetData.from_atoms(images)
    assert orm.QueryBuilder().append(ClusterSetData).count() == 0
