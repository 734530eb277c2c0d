"""The HDF5 cluster-set format: round trips, content ids, merging, random access and every bad-input case."""

from __future__ import annotations

import io

import h5py
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from aiida_qrnn.core.dataset import (
    ClusterArrays,
    ClusterSet,
    ClusterSetError,
    content_hash,
    merge_cluster_sets,
    read_extxyz,
    write_cluster_set,
    write_file_digest,
)
from tests.conftest import make_water_clusters


def write_atoms(path, images, **kwargs):
    return write_cluster_set(path, ClusterArrays.from_atoms(images), **kwargs)


def test_round_trip_through_hdf5_and_extxyz_is_bit_exact(tmp_path, labelled_water_clusters):
    path = write_atoms(tmp_path / 'set.h5', labelled_water_clusters, level_of_theory='gfn2-xtb')
    with ClusterSet(path) as clusters:
        assert len(clusters) == len(labelled_water_clusters)
        assert clusters.level_of_theory == 'gfn2-xtb'
        assert clusters.label_names == ['charges', 'dipole', 'energy', 'forces']
        clusters.write_extxyz(tmp_path / 'set.xyz')
        from_hdf5 = list(clusters)
    back = read_extxyz(tmp_path / 'set.xyz')
    for original, stored, reread in zip(labelled_water_clusters, from_hdf5, back, strict=True):
        for atoms in (stored, reread):
            assert np.array_equal(atoms.positions, original.positions)  # bit for bit, not approximately
            assert np.array_equal(atoms.numbers, original.numbers)
            assert np.array_equal(atoms.arrays['molecule'], original.arrays['molecule'])
            for name in ('energy', 'forces', 'dipole', 'charges'):
                assert np.array_equal(atoms.calc.results[name], original.calc.results[name])
        assert reread.info['kind'] == 'conformational'
        assert reread.info['source'] == original.info['source']
        assert reread.info['id'] == stored.info['id']


def test_periodic_cluster_keeps_cell_and_pbc(tmp_path):
    atoms = Atoms('OH2', positions=[[0, 0, 0], [0.9, 0, 0], [0, 0.9, 0]], cell=[[5, 0, 0], [1, 6, 0], [0, 0, 7]],
                  pbc=[True, True, False])
    path = write_atoms(tmp_path / 'pbc.h5', [atoms])
    with ClusterSet(path) as clusters:
        stored = clusters[0]
        clusters.write_extxyz(tmp_path / 'pbc.xyz')
    reread = read_extxyz(tmp_path / 'pbc.xyz')[0]
    for result in (stored, reread):
        assert np.array_equal(result.cell.array, atoms.cell.array)
        assert list(result.pbc) == [True, True, False]


class CountingReader(io.FileIO):
    """A file that counts the bytes read through it."""

    bytes_read = 0

    def readinto(self, buffer):
        count = super().readinto(buffer)
        self.bytes_read += count or 0
        return count


def test_random_access_reads_a_small_part_of_the_file(tmp_path):
    """Opening a large set and reading one cluster must read a tiny fraction of the file."""
    rng = np.random.default_rng(1)
    n_clusters, size = 20_000, 10
    arrays = ClusterArrays(
        numbers=rng.integers(1, 9, n_clusters * size), positions=rng.normal(size=(n_clusters * size, 3)),
        offsets=np.arange(n_clusters + 1) * size,
    )
    path = write_cluster_set(tmp_path / 'big.h5', arrays)
    with CountingReader(path, 'r') as stream, ClusterSet(stream, check_digest=False) as clusters:
        atoms = clusters[12_345]
        assert np.array_equal(atoms.positions, arrays.positions[123_450:123_460])
        fraction = stream.bytes_read / path.stat().st_size
    assert fraction < 0.2, f'read {fraction:.0%} of the file for one cluster'


def test_content_hash_depends_on_geometry_elements_and_charge():
    numbers = np.array([8, 1, 1])
    positions = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [0.0, 0.96, 0.0]])
    reference = content_hash(numbers, positions)
    assert content_hash(numbers.copy(), positions.copy()) == reference
    assert content_hash(numbers, positions + 1e-9) == reference  # below the hashing resolution
    assert content_hash(numbers, positions + 1e-3) != reference
    assert content_hash(np.array([8, 1, 9]), positions) != reference
    assert content_hash(numbers, positions, total_charge=-1) != reference
    assert content_hash(numbers, positions, cell=np.eye(3) * 5, pbc=np.ones(3, bool)) != reference


def test_same_cluster_gets_same_id_in_different_sets(tmp_path, water_clusters):
    first = write_atoms(tmp_path / 'a.h5', water_clusters)
    second = write_atoms(tmp_path / 'b.h5', water_clusters[::-1])
    with ClusterSet(first) as a, ClusterSet(second) as b:
        assert list(a.ids) == list(b.ids[::-1])
        assert len(set(a.ids)) == len(a)


def test_merge_deduplicates_and_keeps_order(tmp_path):
    first = make_water_clusters(4, labelled=True, seed=1)
    second = make_water_clusters(3, labelled=True, seed=2)
    a = write_atoms(tmp_path / 'a.h5', first, level_of_theory='gfn2-xtb')
    b = write_atoms(tmp_path / 'b.h5', [*second, first[0]], level_of_theory='gfn2-xtb')
    merged = merge_cluster_sets([a, b], tmp_path / 'merged.h5')
    with ClusterSet(a) as ca, ClusterSet(b) as cb, ClusterSet(merged) as cm:
        assert len(cm) == 7
        assert list(cm.ids) == [*ca.ids, *cb.ids[:3]]
        assert cm.summary()['kind_counts'] == {'conformational': 7}
    kept_all = merge_cluster_sets([a, b], tmp_path / 'all.h5', deduplicate=False)
    with ClusterSet(kept_all) as clusters:
        assert len(clusters) == 8


def test_append_in_place_is_atomic(tmp_path):
    path = write_atoms(tmp_path / 'set.h5', make_water_clusters(2, seed=1))
    new = write_atoms(tmp_path / 'new.h5', make_water_clusters(3, seed=2))
    merge_cluster_sets([path, new], path)
    with ClusterSet(path) as clusters:
        assert len(clusters) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ['new.h5', 'set.h5']  # no temporary file left


def test_merge_refuses_different_levels_of_theory(tmp_path):
    a = write_atoms(tmp_path / 'a.h5', make_water_clusters(2, labelled=True), level_of_theory='gfn2-xtb')
    b = write_atoms(tmp_path / 'b.h5', make_water_clusters(2, labelled=True, seed=5), level_of_theory='wb97x-d3bj')
    with pytest.raises(ClusterSetError, match='levels of theory'):
        merge_cluster_sets([a, b], tmp_path / 'merged.h5')
    assert not (tmp_path / 'merged.h5').exists()


# -- bad input ----------------------------------------------------------------------------------------------------
def test_empty_set_is_refused(tmp_path):
    with pytest.raises(ClusterSetError, match='empty'):
        ClusterArrays.from_atoms([], origin='nothing.xyz')
    with pytest.raises(ClusterSetError, match='empty'):
        write_cluster_set(tmp_path / 'empty.h5', ClusterArrays(np.zeros(0), np.zeros((0, 3)), np.array([0])))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize('bad_value', [np.nan, np.inf, -np.inf])
def test_non_finite_positions_name_the_cluster(tmp_path, water_clusters, bad_value):
    water_clusters[2].positions[1, 0] = bad_value
    with pytest.raises(ClusterSetError, match=r"'in.xyz', cluster 2: positions contains NaN"):
        ClusterArrays.from_atoms(water_clusters, origin='in.xyz')


def test_non_finite_label_names_the_cluster(tmp_path, labelled_water_clusters):
    labelled_water_clusters[3].calc.results['forces'][0, 1] = np.nan
    with pytest.raises(ClusterSetError, match='cluster 3: forces contains NaN'):
        write_atoms(tmp_path / 'x.h5', labelled_water_clusters, level_of_theory='gfn2-xtb')
    assert not list(tmp_path.iterdir())  # no half-written file


def test_unknown_element_is_refused(water_clusters):
    water_clusters[1].numbers[0] = 0  # 'X', a dummy atom
    with pytest.raises(ClusterSetError, match='cluster 1: unknown element'):
        ClusterArrays.from_atoms(water_clusters, origin='in.xyz')


def test_shape_mismatch_is_refused(tmp_path):
    arrays = ClusterArrays(numbers=np.array([8, 1, 1]), positions=np.zeros((3, 2)), offsets=np.array([0, 3]))
    with pytest.raises(ClusterSetError, match=r"positions' has shape \(3, 2\), expected \(3, 3\)"):
        write_cluster_set(tmp_path / 'x.h5', arrays)
    atoms = Atoms('OH2', positions=np.eye(3))
    atoms.calc = SinglePointCalculator(atoms, energy=1.0, forces=np.zeros((2, 3)))
    with pytest.raises(ClusterSetError, match="cluster 0: label 'forces' has shape"):
        ClusterArrays.from_atoms([atoms], origin='in.xyz')


def test_partially_labelled_set_is_refused(labelled_water_clusters):
    labelled_water_clusters[1].calc = None
    with pytest.raises(ClusterSetError, match=r'cluster 1: labels .* are missing'):
        ClusterArrays.from_atoms(labelled_water_clusters, origin='in.xyz')


def test_labels_need_a_level_of_theory(tmp_path, labelled_water_clusters):
    with pytest.raises(ClusterSetError, match='level_of_theory must be given'):
        write_atoms(tmp_path / 'x.h5', labelled_water_clusters)


def test_malformed_extxyz_names_file_and_frame(tmp_path, water_clusters):
    path = write_atoms(tmp_path / 'good.h5', water_clusters)
    with ClusterSet(path) as clusters:
        clusters.write_extxyz(tmp_path / 'good.xyz')
    lines = (tmp_path / 'good.xyz').read_text().splitlines()
    # Frames hold 3, 6, 9, 3 atoms: corrupt a coordinate in frame 2 (lines 0-4, 5-12, 13-23).
    lines[16] = lines[16].replace(lines[16].split()[2], 'abc', 1)
    bad = tmp_path / 'bad.xyz'
    bad.write_text('\n'.join(lines) + '\n')
    with pytest.raises(ClusterSetError, match=r"bad.xyz', cluster 2: malformed extended XYZ"):
        read_extxyz(bad)
    truncated = tmp_path / 'truncated.xyz'
    truncated.write_text('\n'.join(lines[:20]) + '\n')
    with pytest.raises(ClusterSetError, match=r"truncated.xyz', cluster 2: malformed"):
        read_extxyz(truncated)


def test_extxyz_with_unknown_symbol_is_refused(tmp_path):
    path = tmp_path / 'xx.xyz'
    path.write_text('2\nProperties=species:S:1:pos:R:3\nO 0 0 0\nQq 0 0 1\n')
    with pytest.raises(ClusterSetError, match=r"xx.xyz', cluster 0"):
        ClusterArrays.from_atoms(read_extxyz(path), origin=str(path))


def test_wrong_format_version_is_refused(tmp_path, water_clusters):
    path = write_atoms(tmp_path / 'set.h5', water_clusters)
    with h5py.File(path, 'a') as handle:
        handle.attrs['format_version'] = 99
    write_file_digest(path)  # as another tool writing a future version would
    with pytest.raises(ClusterSetError, match=r"set.h5': cluster-set format version 99 is not supported"):
        ClusterSet(path)


def test_foreign_hdf5_file_is_refused(tmp_path):
    path = tmp_path / 'other.h5'
    with h5py.File(path, 'w') as handle:
        handle['x'] = np.arange(3)
    with pytest.raises(ClusterSetError, match='not an aiida-qrnn cluster set'):
        ClusterSet(path)
    (tmp_path / 'text.h5').write_text('hello')
    with pytest.raises(ClusterSetError, match='not a readable HDF5'):
        ClusterSet(tmp_path / 'text.h5')


def test_index_out_of_range(tmp_path, water_clusters):
    with ClusterSet(write_atoms(tmp_path / 'set.h5', water_clusters)) as clusters:
        assert clusters[-1].info['index'] == len(water_clusters) - 1
        with pytest.raises(IndexError, match='cluster index 10 out of range'):
            clusters[10]
