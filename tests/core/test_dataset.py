"""The HDF5 cluster-set format: round trips, content ids, merging, random access and every bad-input case."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from aiida_qrnn.core.dataset import (
    ClusterArrays,
    ClusterPhysicsError,
    ClusterSet,
    ClusterSetError,
    content_hash,
    merge_cluster_sets,
    read_extxyz,
    write_cluster_set,
    write_file_digest,
)
from aiida_qrnn.testing.files import CountingReader, change_dataset, reseal
from aiida_qrnn.testing.structures import make_water_clusters


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
    atoms = Atoms('OH2', positions=[[0, 0, 0], [0.9, 0, 0], [0, 0.9, 0]], cell=[[5, 0, 0], [1, 6, 0], [0, 0.5, 7]],
                  pbc=True)
    path = write_atoms(tmp_path / 'pbc.h5', [atoms])
    with ClusterSet(path) as clusters:
        stored = clusters[0]
        clusters.write_extxyz(tmp_path / 'pbc.xyz')
    reread = read_extxyz(tmp_path / 'pbc.xyz')[0]
    for result in (stored, reread):
        assert np.array_equal(result.cell.array, atoms.cell.array)
        assert list(result.pbc) == [True, True, True]


def test_random_access_reads_a_small_part_of_the_file(tmp_path):
    """Opening a large set and reading one cluster must read a tiny fraction of the file."""
    rng = np.random.default_rng(1)
    n_clusters, size = 20_000, 10
    arrays = ClusterArrays(
        numbers=rng.choice([1, 6, 7, 8], n_clusters * size),
        positions=np.tile(np.arange(size)[:, None] * [1.5, 0.0, 0.0], (n_clusters, 1)) + rng.normal(
            scale=0.05, size=(n_clusters * size, 3)),  # chains of atoms 1.5 Å apart
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


# -- integrity: what a file records must be its content ------------------------------------------------------------
def test_intact_file_verifies_to_what_was_written(labelled_file):
    original = ClusterArrays.from_atoms(make_water_clusters(4, labelled=True))
    with ClusterSet(labelled_file) as clusters:
        arrays = clusters.verify()
        assert clusters.format_version == 2
    assert np.array_equal(arrays.positions, original.positions)
    assert np.array_equal(arrays.ids.astype(str), original.ids.astype(str))
    for name, values in original.labels.items():
        assert np.array_equal(arrays.labels[name], values)


@pytest.mark.parametrize(('dataset', 'index'), [('clusters/energy', 2), ('atoms/forces', (5, 1)),
                                                ('atoms/charges', 0), ('clusters/kind', 1)])
def test_a_changed_label_or_string_is_caught_by_its_checksum(labelled_file, dataset, index):
    def change(values):
        if values.dtype.kind == 'f':
            values.view(np.uint8).reshape((*values.shape, 8))[index][0] ^= 1  # one bit of the lowest byte
        else:
            values[index] = b'decomposed'

    change_dataset(labelled_file, dataset, change, sealed=False)
    with ClusterSet(labelled_file) as clusters, pytest.raises(
        ClusterSetError, match=rf"set.h5': the checksum of dataset '{dataset}' does not match"
    ):
        clusters.verify()


def test_a_changed_byte_anywhere_is_caught_before_hdf5_reads_the_file(labelled_file):
    data = bytearray(labelled_file.read_bytes())
    data[len(data) // 2] ^= 0x10
    labelled_file.write_bytes(bytes(data))
    with pytest.raises(ClusterSetError, match=r"set.h5': damaged cluster set, the file's sha256 differs"):
        ClusterSet(labelled_file)


@pytest.mark.parametrize(('number', 'symbol'), [(9, 'F'), (72, 'Hf')])
def test_an_element_changed_in_a_resealed_file_is_caught_by_id_and_summary(labelled_file, number, symbol):
    """A file with one atomic number changed but its summary and ids unchanged lies about its content (an H
    turned into Hf 0.96 Å from its O is also fused, and the physics check finds that first)."""
    def change_element(numbers):
        numbers[4] = number

    change_dataset(labelled_file, 'atoms/numbers', change_element, sealed=True)
    first_failure = 'fused atoms' if symbol == 'Hf' else r"set.h5', cluster 1: recorded id \w+ does not match"
    with ClusterSet(labelled_file) as clusters:
        assert clusters.summary()['elements'] == ['H', 'O']  # what the file says of itself
        with pytest.raises(ClusterSetError, match=first_failure):
            clusters.verify()
    if symbol == 'Hf':
        return
    with h5py.File(labelled_file, 'a') as handle:  # ids made right, the summary still stale
        ids = handle['clusters/id'].asstr()[...]
        numbers, offsets = handle['atoms/numbers'][...], handle['offsets'][...]
        positions = handle['atoms/positions'][...]
        ids[1] = content_hash(numbers[offsets[1]:offsets[2]], positions[offsets[1]:offsets[2]])
        handle['clusters/id'][...] = ids.astype(object)
    reseal(labelled_file)
    with ClusterSet(labelled_file) as clusters, pytest.raises(
        ClusterSetError, match=r"recorded summary does not match the content: elements recorded \['H', 'O'\], "
                               r"content \['H', 'O', 'F'\]"):
        clusters.verify()


def test_moved_atoms_under_an_old_id_are_caught(labelled_file):
    def move(positions):
        positions[7] += 0.5

    change_dataset(labelled_file, 'atoms/positions', move, sealed=True)
    with ClusterSet(labelled_file) as clusters, pytest.raises(ClusterSetError, match='cluster 1: recorded id'):
        clusters.verify()


def test_content_ids_do_not_overflow_and_ordinary_ids_are_unchanged(tmp_path):
    numbers = np.array([8, 1, 1])
    positions = np.array([[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]])
    # The ids written by every earlier version (int64 grid), computed with the code before this change:
    assert content_hash(numbers, positions) == 'da3708743e478128ef939a1d3344da30'
    assert content_hash(numbers, positions, 1, np.eye(3) * 9, np.ones(3, bool)) == 'ec6f201481e2eb58f00ce128d4d43a3f'
    far = [positions * scale + 1e14 for scale in (1, 2, 3)]  # the int64 grid overflowed: one id for all three
    ids = {content_hash(numbers, shifted) for shifted in far}
    assert len(ids) == 3
    assert content_hash(numbers, -far[0]) not in ids
    images = [Atoms(numbers=numbers, positions=shifted) for shifted in far]
    merged = merge_cluster_sets([write_atoms(tmp_path / 'far.h5', images)], tmp_path / 'merged.h5')
    with ClusterSet(merged) as clusters:
        assert len(clusters) == 3  # deduplication keeps all three


def test_version_1_files_are_still_read_and_verified():
    fixture = Path(__file__).parents[1] / 'parsers/fixtures/pyscf/success/clusters.h5'
    with ClusterSet(fixture) as clusters:
        assert clusters.format_version == 1
        arrays = clusters.verify()
    assert arrays.n_clusters == 2


def test_dataset_claiming_more_bytes_than_the_file_is_refused_before_reading(tmp_path, water_clusters):
    path = write_atoms(tmp_path / 'set.h5', water_clusters)
    with h5py.File(path, 'a') as handle:
        del handle['atoms/molecule']
        handle.create_dataset('atoms/molecule', shape=(10**12,), dtype=np.int32, chunks=(4096,))
    write_file_digest(path)
    with pytest.raises(ClusterSetError, match=r"set.h5': damaged cluster set, dataset 'atoms/molecule' claims"):
        ClusterSet(path)


# -- physical sanity (core.sanity) at the cluster-set gate ---------------------------------------------------------
def test_fused_atoms_and_impossible_cells_are_never_written(tmp_path, water_clusters):
    fused = [atoms.copy() for atoms in water_clusters]
    fused[2].positions[4] = fused[2].positions[3]  # two atoms at one position: the QRNN returned NaN for this
    with pytest.raises(ClusterPhysicsError, match=r'cluster 2: atoms O3 and H4 are 0 Å apart.*fused atoms'):
        write_atoms(tmp_path / 'x.h5', fused)
    tiny_cell = Atoms('OH2', positions=water_clusters[0].positions, cell=np.eye(3) * 0.5, pbc=True)
    with pytest.raises(ClusterSetError, match=r'cluster 0: the periodic cell is 0\.5 Å wide'):
        write_atoms(tmp_path / 'x.h5', [tiny_cell])
    charged = water_clusters[0].copy()
    charged.info['total_charge'] = 40
    with pytest.raises(ClusterSetError, match=r'cluster 0: total charge \+40 leaves -30 electrons'):
        write_atoms(tmp_path / 'x.h5', [charged])
    assert not list(tmp_path.iterdir())


def test_a_broken_bond_is_allowed_only_in_decomposed_clusters(tmp_path):
    water = Atoms('OH2', positions=[[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -4.0, -0.4692]])
    with pytest.raises(ClusterSetError, match='a dissociated atom'):
        write_atoms(tmp_path / 'user.h5', [water])
    water.info['kind'] = 'decomposed'
    with ClusterSet(write_atoms(tmp_path / 'decomposed.h5', [water])) as clusters:
        assert clusters.verify().kind[0] == 'decomposed'


def test_an_edited_extxyz_geometry_is_not_imported_under_its_old_id(tmp_path, water_clusters):
    with ClusterSet(write_atoms(tmp_path / 'set.h5', water_clusters)) as clusters:
        clusters.write_extxyz(tmp_path / 'set.xyz')
    lines = (tmp_path / 'set.xyz').read_text().splitlines()
    fields = lines[7].split()  # frame 1, first atom
    fields[1] = repr(float(fields[1]) + 0.2)
    lines[7] = ' '.join(fields)
    (tmp_path / 'edited.xyz').write_text('\n'.join(lines) + '\n')
    with pytest.raises(ClusterSetError, match=r"edited.xyz', cluster 1: the recorded id=\w+ does not match"):
        read_extxyz(tmp_path / 'edited.xyz')
    lines[6] = lines[6].split(' id=')[0] + ' kind=' + lines[6].split(' kind=')[1]  # without the id it imports
    (tmp_path / 'edited.xyz').write_text('\n'.join(lines) + '\n')
    assert read_extxyz(tmp_path / 'edited.xyz')[1].positions[0, 0] == pytest.approx(float(fields[1]))
