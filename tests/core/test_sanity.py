"""The shared physical sanity check: fused atoms, electron counts, periodic cells and energy windows."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import molecule

from aiida_qrnn.core.clusters import ClusterSampling, sample_clusters
from aiida_qrnn.core.sanity import (
    FUSED_FRACTION,
    PhysicsCheckError,
    allows_broken_bonds,
    check_cell,
    check_electrons,
    check_energy,
    check_structure,
    raise_if,
)
from aiida_qrnn.core.structures import pack_cell


def test_a_water_molecule_is_sane():
    water = molecule('H2O')
    assert check_structure(water.numbers, water.positions) == []


def test_two_atoms_a_tenth_of_an_angstrom_apart_are_fused():
    problems = check_structure([6, 1], [[0, 0, 0], [0.1, 0, 0]], multiplicity=2)
    assert len(problems) == 1
    assert 'C0 and H1 are 0.1 Å apart' in problems[0] and 'fused' in problems[0]


def test_the_fused_threshold_is_a_fraction_of_the_covalent_radii():
    """H-H radii sum to 0.62 Å: just above half of it is accepted, just below refused."""
    threshold = FUSED_FRACTION * 0.62
    assert check_structure([1, 1], [[0, 0, 0], [threshold * 1.01, 0, 0]]) == []
    assert check_structure([1, 1], [[0, 0, 0], [threshold * 0.99, 0, 0]]) != []


def test_an_atom_on_its_own_periodic_image_is_fused():
    """A 0.5 Å cell puts every atom 0.5 Å from its image; the check refuses it without a neighbour search."""
    problems = check_structure([6, 6], [[0, 0, 0], [0.25, 0.25, 0.25]], cell=np.eye(3) * 0.5, pbc=[True] * 3)
    assert any('0.5 Å wide' in problem for problem in problems)


def test_a_cell_narrower_than_twice_the_cutoff_is_refused():
    cell = np.eye(3) * 20.0
    assert check_cell(cell, [True] * 3, cutoff=12.0)[0].startswith('the periodic cell is 20 Å wide')
    assert check_cell(cell, [True] * 3, cutoff=10.0) == []
    assert check_cell(cell, [False] * 3, cutoff=12.0) == []  # open clusters have no images
    skewed = np.array([[20.0, 0, 0], [19.0, 1.0, 0], [0, 0, 20.0]])  # long vectors, 1 Å between two faces
    assert 'wide' in check_cell(skewed, [True] * 3, cutoff=5.0)[0]
    assert 'zero volume' in check_cell(np.array([[1.0, 0, 0], [2.0, 0, 0], [0, 0, 1.0]]), [True] * 3)[0]


def test_electron_counts():
    water = [8, 1, 1]
    assert check_electrons(water, 0, 1) == []
    assert 'closed shell' in check_electrons(water, +1, 1)[0]  # a +1 cluster cannot be run closed-shell
    assert check_electrons(water, +1, 2) == []
    assert check_electrons(water, +1, None) == []
    assert '-30 electrons' in check_electrons(water, +40, None)[0]
    assert check_electrons([1], 0, 4) != []  # three unpaired electrons from one
    assert check_electrons(water, 0, 0) != []


def test_dissociated_atoms_and_the_decomposed_opt_out():
    water = molecule('H2O')
    water.positions[1] += [8.0, 0, 0]
    problems = check_structure(water.numbers, water.positions)
    assert len(problems) == 1 and 'dissociated atom' in problems[0] and 'H1' in problems[0]
    assert check_structure(water.numbers, water.positions, allow_broken_bonds=True) == []
    assert allows_broken_bonds('decomposed') and not allows_broken_bonds('conformational')


def test_every_sampled_cluster_and_its_periodic_frame_pass():
    """The samplers' clusters (decomposed ones with their opt-out) and a packed periodic cell are all sane."""
    frame = pack_cell(1, 12, density_g_cm3=0.9, seed=3, tolerance=1.8)
    assert check_structure(frame.numbers, frame.positions, cell=frame.cell.array, pbc=frame.pbc) == []
    clusters = sample_clusters([(frame, {'frame': 0})], ClusterSampling(clusters_per_frame=3), np.random.default_rng(0))
    assert {cluster.info['kind'] for cluster in clusters} >= {'extracted', 'decomposed'}
    for cluster in clusters:
        allow = allows_broken_bonds(cluster.info['kind'])
        assert check_structure(cluster.numbers, cluster.positions, allow_broken_bonds=allow) == [], cluster.info


def test_fused_atoms_across_a_periodic_boundary_are_found():
    cell = np.eye(3) * 10.0
    assert check_structure([1, 1], [[0.05, 5, 5], [9.95, 5, 5]], cell=cell, pbc=[True] * 3) != []
    assert check_structure([1, 1], [[0.5, 5, 5], [9.5, 5, 5]], cell=cell, pbc=[True] * 3) == []


def test_energy_window():
    water = [8, 1, 1]
    assert check_energy(-2080.0, water) == []  # about -76.4 Eh, the all-electron energy of water
    assert check_energy(-137.9, water) == []  # about -5.07 Eh, GFN2-xTB
    assert 'above -1.0 eV per atom' in check_energy(2675.7, [6, 1])[0]  # xtb, two atoms 0.1 Å apart
    assert check_energy(-1.0e6, water) != []  # below the Thomas-Fermi bound of O + 2 H
    assert check_energy(float('nan'), water) == ['the energy is nan']


def test_raise_if_names_the_place():
    raise_if([], 'cluster 0')
    with pytest.raises(PhysicsCheckError, match=r"cluster 3 of 'x.h5': a; b"):
        raise_if(['a', 'b'], "cluster 3 of 'x.h5'")
