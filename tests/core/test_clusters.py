"""Cluster extraction across periodic boundaries, bounded perturbations, broken bonds and seeded sampling."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from ase import Atoms

from aiida_qrnn.core.clusters import (
    ClusterSampling,
    ClusterSamplingError,
    decompose,
    deduplicate,
    extract_cluster,
    perturb_conformation,
    sample_clusters,
    scale_intermolecular_distances,
    to_cluster_arrays,
)
from aiida_qrnn.core.structures import pack_cell
from aiida_qrnn.core.topology import find_bonds, make_molecules_whole, molecule_ids


@pytest.fixture(scope='module')
def wrapped_frame():
    """A packed EG cell (0.9 g/cm^3) wrapped into the box, so that some molecules are split by the boundary."""
    frame = pack_cell(1, 24, density_g_cm3=0.9, seed=4, tolerance=1.8)
    frame.positions += 0.5 * frame.cell.lengths()  # push molecules across the faces
    bonds = find_bonds(frame)
    frame.wrap()
    return frame, bonds


def _whole(cluster) -> bool:
    bonds = find_bonds(cluster)
    return np.array_equal(molecule_ids(len(cluster), bonds), cluster.arrays['molecule'])


def _brute_force_distance(frame, rows_a, rows_b, positions) -> float:
    cell = frame.cell.array
    shifts = np.array(list(itertools.product((-1, 0, 1), repeat=3))) @ cell  # (27, 3)
    differences = positions[rows_b][None, None] + shifts[:, None, None] - positions[rows_a][None, :, None]
    return float(np.linalg.norm(differences, axis=-1).min())


@pytest.mark.parametrize('n_molecules', [1, 4, 8])
def test_extracted_cluster_is_the_nearest_whole_molecules(wrapped_frame, n_molecules):
    frame, bonds = wrapped_frame
    molecule = molecule_ids(len(frame), bonds)
    assert np.linalg.norm(frame.positions[bonds[:, 0]] - frame.positions[bonds[:, 1]], axis=1).max() > 5  # split
    cluster = extract_cluster(frame, molecule, 3, n_molecules, bonds=bonds, source={'trajectory': 't', 'frame': 0})
    assert not cluster.pbc.any()
    assert len(np.unique(cluster.arrays['molecule'])) == n_molecules
    assert len(cluster) == 10 * n_molecules
    assert _whole(cluster)
    chosen = cluster.info['frame_molecules']
    assert chosen[0] == 3
    assert json.loads(cluster.info['source']) == {'trajectory': 't', 'frame': 0, 'molecules': chosen,
                                                  'variant': 'extracted'}
    # the neighbours are the closest molecules by atom-atom minimum-image distance
    whole = make_molecules_whole(frame, bonds)
    distances = {m: _brute_force_distance(frame, molecule == 3, molecule == m, whole) for m in range(24) if m != 3}
    nearest = sorted(distances, key=distances.get)[: n_molecules - 1]
    assert chosen[1:] == nearest
    # and they sit at that distance in the open cluster
    for rank, member in enumerate(chosen[1:], start=1):
        gaps = cluster.positions[cluster.arrays['molecule'] == 0][:, None] - \
            cluster.positions[cluster.arrays['molecule'] == rank][None]
        assert np.linalg.norm(gaps, axis=-1).min() == pytest.approx(distances[member], abs=1e-9)


def test_asking_for_too_many_molecules_names_the_count(wrapped_frame):
    frame, bonds = wrapped_frame
    with pytest.raises(ClusterSamplingError, match='cannot cut 30 molecules'):
        extract_cluster(frame, molecule_ids(len(frame), bonds), 0, 30, bonds=bonds)


@pytest.fixture(scope='module')
def trimer_cluster(wrapped_frame):
    frame, bonds = wrapped_frame
    return extract_cluster(frame, molecule_ids(len(frame), bonds), 5, 3, bonds=bonds)


def _angles(positions, bonds):
    values = {}
    for (a, b), (c, d) in itertools.combinations(bonds.tolist(), 2):
        shared = {a, b} & {c, d}
        if len(shared) == 1:
            centre = shared.pop()
            i, k = ({a, b} - {centre}).pop(), ({c, d} - {centre}).pop()
            u, v = positions[i] - positions[centre], positions[k] - positions[centre]
            values[(i, centre, k)] = np.arccos(u @ v / np.linalg.norm(u) / np.linalg.norm(v))
    return values


def _dihedrals(positions, bonds):
    neighbours = {a: set() for a in range(len(positions))}
    for a, b in bonds.tolist():
        neighbours[a].add(b)
        neighbours[b].add(a)
    values = {}
    for j, k in bonds.tolist():
        for i in neighbours[j] - {k}:
            for m in neighbours[k] - {j}:
                b0, b1, b2 = positions[i] - positions[j], positions[k] - positions[j], positions[m] - positions[k]
                b1 = b1 / np.linalg.norm(b1)
                v, w = b0 - b0 @ b1 * b1, b2 - b2 @ b1 * b1
                values[(i, j, k, m)] = np.arctan2(np.cross(b1, v) @ w, v @ w)
    return values


def test_perturbations_are_bounded_and_keep_the_bond_graph(trimer_cluster):
    bonds = find_bonds(trimer_cluster)
    rng = np.random.default_rng(0)
    perturbed = perturb_conformation(trimer_cluster, rng, max_bond_change=0.04, max_angle_change_deg=3.0,
                                     max_dihedral_change_deg=20.0)
    lengths = [np.linalg.norm(c.positions[bonds[:, 0]] - c.positions[bonds[:, 1]], axis=1)
               for c in (trimer_cluster, perturbed)]
    change = np.abs(lengths[1] - lengths[0])
    assert change.max() <= 0.04 + 1e-9 and change.max() > 0.01
    before, after = _angles(trimer_cluster.positions, bonds), _angles(perturbed.positions, bonds)
    degree = np.bincount(bonds.ravel(), minlength=len(trimer_cluster))
    for key, value in before.items():
        angles_at_centre = degree[key[1]] * (degree[key[1]] - 1) // 2
        assert abs(np.degrees(after[key] - value)) <= 3.0 * angles_at_centre + 1e-6
    assert np.array_equal(find_bonds(perturbed), bonds)


def test_dihedral_moves_change_only_dihedrals_and_by_at_most_the_bound(trimer_cluster):
    bonds = find_bonds(trimer_cluster)
    perturbed = perturb_conformation(trimer_cluster, np.random.default_rng(1), max_bond_change=0.0,
                                     max_angle_change_deg=0.0, max_dihedral_change_deg=25.0)
    before, after = _angles(trimer_cluster.positions, bonds), _angles(perturbed.positions, bonds)
    assert max(abs(after[key] - value) for key, value in before.items()) < 1e-9
    before, after = _dihedrals(trimer_cluster.positions, bonds), _dihedrals(perturbed.positions, bonds)
    changes = np.array([np.angle(np.exp(1j * (after[key] - value))) for key, value in before.items()])
    assert np.degrees(np.abs(changes)).max() <= 25.0 + 1e-6
    assert np.degrees(np.abs(changes)).max() > 5.0


def test_density_scaling_scales_centre_distances_and_keeps_molecules_rigid(trimer_cluster):
    scaled = scale_intermolecular_distances(trimer_cluster, 0.9)
    molecule = trimer_cluster.arrays['molecule']

    def centres(atoms):
        masses = atoms.get_masses()
        return np.array([masses[molecule == m] @ atoms.positions[molecule == m] / masses[molecule == m].sum()
                         for m in range(3)])

    before, after = centres(trimer_cluster), centres(scaled)
    distance = lambda c: np.linalg.norm(c[:, None] - c[None], axis=-1)  # noqa: E731
    assert np.allclose(distance(after), 0.9 * distance(before))
    for m in range(3):
        rows = molecule == m
        assert np.allclose(scaled.positions[rows] - after[m], trimer_cluster.positions[rows] - before[m])


def test_decomposed_cluster_has_exactly_one_broken_bond(trimer_cluster):
    bonds = find_bonds(trimer_cluster)
    for seed in range(5):
        broken, (i, j) = decompose(trimer_cluster, np.random.default_rng(seed))
        remaining = find_bonds(broken)
        assert len(remaining) == len(bonds) - 1
        assert [i, j] not in remaining.tolist()
        assert {tuple(b) for b in remaining} == {tuple(b) for b in bonds} - {(i, j)}


SETTINGS = ClusterSampling(max_molecules=3, clusters_per_frame=3)


def test_sampling_is_seeded_tagged_and_deduplicated(wrapped_frame):
    frame, bonds = wrapped_frame
    frames = [(frame, {'trajectory': 'nvt.traj', 'frame': 0})]
    first = sample_clusters(frames, SETTINGS, np.random.default_rng(7), bonds=bonds)
    again = sample_clusters(frames, SETTINGS, np.random.default_rng(7), bonds=bonds)
    other = sample_clusters(frames, SETTINGS, np.random.default_rng(8), bonds=bonds)
    ids = [to_cluster_arrays(images).ids.tolist() for images in (first, again, other)]
    assert ids[0] == ids[1]
    assert ids[0] != ids[2]
    assert len(set(ids[0])) == len(ids[0])
    kinds = {atoms.info['kind'] for atoms in first}
    assert kinds == {'extracted', 'conformational', 'decomposed'}
    for atoms in first:
        source = json.loads(atoms.info['source'])
        assert source['trajectory'] == 'nvt.traj' and source['frame'] == 0
        assert 1 <= len(source['molecules']) <= 3 == SETTINGS.max_molecules
        assert len(np.unique(atoms.arrays['molecule'])) == len(source['molecules'])
        if atoms.info['kind'] != 'decomposed':
            assert _whole(atoms)
    assert len(deduplicate(first + first)) == len(first)


def test_settings_are_validated_by_name():
    with pytest.raises(ClusterSamplingError, match='max_molecules'):
        ClusterSampling(max_molecules=0)
    with pytest.raises(ClusterSamplingError, match='broken_bond_factor'):
        ClusterSampling(broken_bond_factor=(1.0, 2.0))
    with pytest.raises(ClusterSamplingError, match=r"unknown cluster-sampling setting\(s\) \['size'\]"):
        ClusterSampling.from_dict({'size': 3})
    assert ClusterSampling.from_dict({'density_scale': [0.8, 1.1]}).density_scale == (0.8, 1.1)


def test_clusters_whose_molecules_touch_are_left_out(wrapped_frame):
    """A frame of a potential under training where one molecule's atom sits at bonding distance of another
    molecule's (molecules as in the first frame): the clusters holding both are left out with a warning, the rest
    are kept; the demo's candidate MD once stopped the whole loop here."""
    frame, bonds = wrapped_frame
    whole = frame.copy()
    whole.positions = make_molecules_whole(frame, bonds)
    molecule = molecule_ids(len(frame), bonds)
    touching = whole.copy()
    first, second = np.flatnonzero(molecule == 0)[0], np.flatnonzero(molecule == 1)
    nearest = second[np.argmin(np.linalg.norm(whole.positions[second] - whole.positions[first], axis=1))]
    touching.positions[molecule == 1] += whole.positions[first] - whole.positions[nearest] + [1.0, 0.0, 0.0]
    with pytest.warns(UserWarning, match=r'left out .* of different molecules are within bonding distance'):
        kept = sample_clusters([(touching, {'frame': 5}) for _ in range(6)], SETTINGS, np.random.default_rng(0),
                               molecule=molecule, bonds=bonds)
    assert kept
    for atoms in kept:
        assert not {0, 1} <= set(json.loads(atoms.info['source'])['molecules'])


def test_clusters_with_fused_atoms_are_left_out(wrapped_frame):
    """H atoms pulled to 0.1 Å from the atom they are bonded to: clusters holding one are left out with a warning
    (here the even-numbered molecules); when every molecule has one, sampling names the frame and the atoms."""
    frame, bonds = wrapped_frame
    whole = frame.copy()
    whole.positions = make_molecules_whole(frame, bonds)

    def fused(molecules) -> Atoms:
        atoms = whole.copy()
        for i, j in bonds:
            hydrogen, partner = (i, j) if atoms.numbers[i] == 1 else (j, i)
            if atoms.numbers[hydrogen] == 1 and MOLECULE[hydrogen] in molecules:
                direction = atoms.positions[hydrogen] - atoms.positions[partner]
                atoms.positions[hydrogen] = atoms.positions[partner] + 0.1 * direction / np.linalg.norm(direction)
        return atoms

    MOLECULE = molecule_ids(len(frame), bonds)
    with pytest.raises(ClusterSamplingError, match=r"every cluster failed .* frame \{'frame': 3\}: atoms .* fused"):
        sample_clusters([(fused(set(MOLECULE)), {'frame': 3})], SETTINGS, np.random.default_rng(0), bonds=bonds)
    with pytest.warns(UserWarning, match=r'cluster\(s\) left out by the physical check'):
        kept = sample_clusters([(fused(set(range(0, 24, 2))), {'frame': 4}) for _ in range(3)], SETTINGS,
                               np.random.default_rng(0), bonds=bonds)
    assert kept
    for atoms in kept:
        assert all(member % 2 for member in json.loads(atoms.info['source'])['molecules'])
