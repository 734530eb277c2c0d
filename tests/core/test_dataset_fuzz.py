"""Fuzzing the cluster-set readers and validator (Hypothesis): random and damaged input either loads to exactly what
was written or fails with ``ClusterSetError`` — never a raw library exception, a hang or a wrong value.

Each test is bounded (``max_examples``, ``deadline``) and derandomised, so CI stays fast and repeatable.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from ase import Atoms
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiida_qrnn.core.dataset import (
    ClusterArrays,
    ClusterSet,
    ClusterSetError,
    content_hash,
    read_extxyz,
    write_cluster_set,
    write_file_digest,
)
from aiida_qrnn.core.sanity import allows_broken_bonds, check_structure
from aiida_qrnn.testing.structures import make_water_clusters

FUZZ = settings(
    max_examples=40, deadline=10_000, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def water_set(n_clusters: int, labelled: bool, seed: int) -> list[Atoms]:
    """``make_water_clusters`` with the molecules moved to 3 Å apart along x (plus jitter), so that no seed puts two
    molecules on top of each other (the physics gate refuses that)."""
    rng = np.random.default_rng(seed)
    images = make_water_clusters(n_clusters, labelled=labelled, seed=seed)
    for atoms in images:
        molecule = atoms.arrays['molecule']
        centres = np.array([[3.0 * m, 0.0, 0.0] for m in range(molecule.max() + 1)]) + rng.uniform(-0.3, 0.3, (1, 3))
        oxygen = atoms.positions[::3][molecule[::3]]
        atoms.positions += np.repeat(centres - oxygen, 3, axis=0)
    return images


def sets():
    """A small labelled or unlabelled water cluster set, as ASE images."""
    return st.builds(water_set, st.integers(1, 5), st.booleans(), st.integers(0, 2**16))


def assert_same_arrays(read: ClusterArrays, written: ClusterArrays) -> None:
    for name in ('numbers', 'positions', 'offsets', 'molecule', 'total_charge', 'cell', 'pbc'):
        assert np.array_equal(getattr(read, name), getattr(written, name)), name
    assert list(read.kind) == list(written.kind) and list(read.source) == list(written.source)
    assert list(read.ids.astype(str)) == list(written.ids.astype(str))
    assert sorted(read.labels) == sorted(written.labels)
    for name, values in written.labels.items():
        assert np.array_equal(read.labels[name], values), name


def flip(data: bytes, positions: list[int], bits: list[int]) -> bytes:
    damaged = bytearray(data)
    for position, bit in zip(positions, bits, strict=False):
        damaged[position % len(damaged)] ^= 1 << bit
    return bytes(damaged)


def write(path, images) -> tuple[ClusterArrays, object]:
    arrays = ClusterArrays.from_atoms(images)
    level = 'gfn2-xtb' if arrays.labels else None
    return arrays, write_cluster_set(path, arrays, level_of_theory=level)


# -- HDF5 ----------------------------------------------------------------------------------------------------------
@FUZZ
@given(images=sets(), positions=st.lists(st.integers(0, 2**31), min_size=1, max_size=40),
       bits=st.lists(st.integers(0, 7), min_size=40, max_size=40))
def test_byte_flipped_hdf5_loads_exactly_or_fails_cleanly(tmp_path, images, positions, bits):
    written, path = write(tmp_path / 'set.h5', images)
    path.write_bytes(flip(path.read_bytes(), positions, bits))
    try:
        with ClusterSet(path) as clusters:
            read = clusters.verify()
            atoms = clusters[len(clusters) - 1]
    except ClusterSetError as error:
        assert "set.h5'" in str(error)
        return
    assert_same_arrays(read, written)  # the flips hit bytes HDF5 does not use
    assert np.array_equal(atoms.positions, written.positions[written.offsets[-2]:])


def data_extents(path) -> list[tuple[int, int]]:
    """(file offset, size) of every allocated chunk or contiguous block of data, metadata excluded."""
    extents = []

    def visit(_, item):
        if not isinstance(item, h5py.Dataset) or item.id.get_storage_size() == 0:
            return
        if item.chunks is None:
            extents.append((item.id.get_offset(), item.id.get_storage_size()))
        else:
            for index in range(item.id.get_num_chunks()):
                chunk = item.id.get_chunk_info(index)
                extents.append((chunk.byte_offset, chunk.size))

    with h5py.File(path, 'r') as handle:
        handle.visititems(visit)
    return [(offset, size) for offset, size in extents if offset is not None and size > 0]


@FUZZ
@given(images=sets(), picks=st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 2**31), st.integers(0, 7)),
                                     min_size=1, max_size=4))
def test_changed_values_under_a_valid_file_digest_are_caught(tmp_path, images, picks):
    """A writer that seals damaged data (bytes of any array changed, file digest recomputed): the per-dataset
    checksums, ids and validation still refuse it, or it is unchanged."""
    written, path = write(tmp_path / 'set.h5', images)
    extents = data_extents(path)
    data = bytearray(path.read_bytes())
    for which, where, bit in picks:
        offset, size = extents[which % len(extents)]
        data[offset + where % size] ^= 1 << bit
    path.write_bytes(bytes(data))
    write_file_digest(path)
    try:
        with ClusterSet(path) as clusters:
            read = clusters.verify()
    except ClusterSetError as error:
        assert "set.h5'" in str(error)
        return
    assert_same_arrays(read, written)


@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes_are_not_a_cluster_set(tmp_path, data):
    path = tmp_path / 'random.h5'
    path.write_bytes(data)
    with pytest.raises(ClusterSetError, match=r"random.h5'"):
        ClusterSet(path).verify()


# -- extended XYZ --------------------------------------------------------------------------------------------------
def text_edits():
    """Edits of a text file: (line, column, replacement) with replacements that break numbers, keys or structure."""
    return st.lists(
        st.tuples(st.integers(0, 10**6), st.integers(0, 10**6),
                  st.sampled_from(['', 'abc', 'nan', 'inf', '1e400', '"', '=', ' ', '\n', '999999', '-', 'x=y', '0'])),
        min_size=1, max_size=4,
    )


@FUZZ
@given(images=sets(), edits=text_edits())
def test_edited_extxyz_loads_sane_sets_or_fails_cleanly(tmp_path, images, edits):
    """An edit either breaks the file (ClusterSetError naming it), or leaves a set whose every value is valid and
    whose recorded ids hold: a changed geometry, element or charge is never imported under its old id. Label values
    in text carry no checksum, so an edited label digit is the one change that can pass (docs/data-formats.md)."""
    _, path = write(tmp_path / 'set.h5', images)
    with ClusterSet(path) as clusters:
        clusters.write_extxyz(tmp_path / 'set.xyz')
    lines = (tmp_path / 'set.xyz').read_text().split('\n')
    for line, column, replacement in edits:
        row = line % len(lines)
        text = lines[row]
        cut = column % (len(text) + 1)
        lines[row] = text[:cut] + replacement + text[cut + 1:]
    (tmp_path / 'edited.xyz').write_text('\n'.join(lines))
    try:
        arrays = ClusterArrays.from_atoms(read_extxyz(tmp_path / 'edited.xyz'), origin='edited.xyz')
    except ClusterSetError as error:
        assert 'edited.xyz' in str(error)
        return
    recorded = set(ClusterArrays.from_atoms(images).ids.astype(str))
    assert np.all(np.isfinite(arrays.positions))
    for index in range(arrays.n_clusters):  # every geometry that loaded is one that was written
        assert str(arrays.ids[index]) in recorded or _id_was_removed(lines)


def _id_was_removed(lines: list[str]) -> bool:
    """True when an edit removed or damaged an ``id=`` key (then the frame imports as a new cluster)."""
    headers = [line for line in lines if 'Properties=' in line]
    return any(' id=' not in header or len(header.split(' id=')[1].split()[0]) != 32 for header in headers)


# -- the validator and the physics screen --------------------------------------------------------------------------
@st.composite
def raw_sets(draw):
    """Clusters of 1..6 atoms (H, C, O, Hf) at random places within a few Å, some periodic, some decomposed."""
    n_clusters = draw(st.integers(1, 4))
    images = []
    for _ in range(n_clusters):
        n_atoms = draw(st.integers(1, 6))
        numbers = draw(st.lists(st.sampled_from([1, 6, 8, 72]), min_size=n_atoms, max_size=n_atoms))
        coordinates = draw(st.lists(st.floats(-4, 4, allow_nan=False), min_size=3 * n_atoms, max_size=3 * n_atoms))
        atoms = Atoms(numbers=numbers, positions=np.reshape(coordinates, (n_atoms, 3)))
        if draw(st.booleans()) and draw(st.booleans()):
            atoms.cell, atoms.pbc = np.eye(3) * draw(st.floats(0.2, 12)), True
        atoms.info['kind'] = draw(st.sampled_from(['user', 'decomposed']))
        atoms.info['total_charge'] = draw(st.integers(-3, 12))
        images.append(atoms)
    return images


@FUZZ
@given(images=raw_sets())
def test_the_set_gate_refuses_exactly_what_the_physics_check_refuses(images):
    """The vectorised screen in ``ClusterArrays.validate`` picks suspects; no cluster that ``check_structure`` refuses
    may pass, and none it accepts may be refused."""
    expected_bad = [
        index for index, atoms in enumerate(images)
        if check_structure(atoms.numbers, atoms.positions, cell=atoms.cell.array, pbc=atoms.pbc,
                           total_charge=atoms.info['total_charge'], multiplicity=None,
                           allow_broken_bonds=allows_broken_bonds(atoms.info['kind']))
    ]
    try:
        arrays = ClusterArrays.from_atoms(images, origin='fuzz.xyz')
    except ClusterSetError as error:
        assert expected_bad, f'refused a sane set: {error}'
        assert f"'fuzz.xyz', cluster {expected_bad[0]}:" in str(error)
        return
    assert not expected_bad
    for index, atoms in enumerate(images):
        assert arrays.ids[index] == content_hash(atoms.numbers, atoms.positions, atoms.info['total_charge'],
                                                 atoms.cell.array, atoms.pbc)


@FUZZ
@given(
    numbers=st.lists(st.integers(-5, 300), min_size=0, max_size=8),
    coordinates=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=0, max_size=30),
    offsets=st.lists(st.integers(-2, 10), min_size=0, max_size=4),
    charges=st.lists(st.floats(-5, 5) | st.integers(-5, 5), max_size=4),
)
def test_arbitrary_arrays_validate_or_fail_cleanly(numbers, coordinates, offsets, charges):
    arrays = ClusterArrays(
        numbers=np.array(numbers), positions=np.array(coordinates[: 3 * (len(coordinates) // 3)]).reshape(-1, 3),
        offsets=np.array(offsets), total_charge=np.array(charges) if charges else None,
    )
    try:
        arrays.validate('arrays')
    except ClusterSetError as error:
        assert str(error).startswith("'arrays'")
        return
    assert np.all(np.isfinite(arrays.positions)) and len(arrays.ids) == arrays.n_clusters
