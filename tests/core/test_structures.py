"""Oligomer molecules, packed amorphous cells and bond graphs."""

from __future__ import annotations

import numpy as np
import pytest
from ase.geometry import get_distances

from aiida_qrnn.core.structures import (
    PackingError,
    density_g_cm3,
    ethylene_glycol_oligomer,
    molecules_for_atoms,
    oligomer_atom_count,
    oligomer_smiles,
    pack_cell,
)
from aiida_qrnn.core.topology import find_bonds, molecule_ids


@pytest.mark.parametrize('n_units', range(1, 11))
def test_oligomer_formula_and_graph(n_units):
    """HO-(CH2CH2O)n-H is C(2n) H(4n+2) O(n+1), one acyclic molecule with every atom bonded."""
    atoms = ethylene_glycol_oligomer(n_units, seed=n_units)
    symbols = atoms.get_chemical_symbols()
    assert (symbols.count('C'), symbols.count('H'), symbols.count('O')) == (2 * n_units, 4 * n_units + 2, n_units + 1)
    assert len(atoms) == oligomer_atom_count(n_units)
    bonds = find_bonds(atoms)
    assert len(bonds) == len(atoms) - 1
    assert set(molecule_ids(len(atoms), bonds)) == {0}


def test_invalid_length_is_refused():
    with pytest.raises(ValueError, match='n_units'):
        oligomer_smiles(0)
    with pytest.raises(ValueError, match='n_units'):
        oligomer_atom_count(101)


def test_molecules_for_atoms_matches_the_paper_sizes():
    """~1500 atoms: 150 monomers, 20 decamers; at least one chain."""
    assert molecules_for_atoms(1, 1500) == 150
    assert molecules_for_atoms(10, 1500) == 21
    assert molecules_for_atoms(100, 10) == 1


def test_packed_cell_has_target_density_whole_molecules_and_no_overlaps():
    tolerance = 2.0
    cell = pack_cell(2, 12, density_g_cm3=0.5, seed=3, tolerance=tolerance)
    assert len(cell) == 12 * oligomer_atom_count(2)
    assert density_g_cm3(cell) == pytest.approx(0.5, rel=1e-12)
    assert np.allclose(cell.cell.array, np.diag(cell.cell.lengths()))

    bonds = find_bonds(cell)
    assert len(bonds) == len(cell) - 12
    assert np.array_equal(molecule_ids(len(cell), bonds), cell.arrays['molecule'])
    # minimum-image distances between atoms of different molecules respect packmol's tolerance
    _, distances = get_distances(cell.positions, cell=cell.cell, pbc=True)
    other = cell.arrays['molecule'][:, None] != cell.arrays['molecule'][None, :]
    assert distances[other].min() >= tolerance - 0.02


def test_replicas_differ_and_seeds_reproduce():
    first, again, other = (pack_cell(1, 8, seed=seed) for seed in (1, 1, 2))
    assert np.array_equal(first.positions, again.positions)
    assert not np.allclose(first.positions, other.positions)


def test_chain_longer_than_any_box_diagonal_is_refused():
    with pytest.raises(PackingError, match='cannot fit'):
        pack_cell(10, 1, density_g_cm3=1.0, seed=0)


def test_molecule_ids_number_components_in_order_of_first_atom():
    bonds = np.array([[3, 4], [0, 2]])
    assert molecule_ids(5, bonds).tolist() == [0, 1, 0, 2, 2]


def _non_bonded_closest(atoms) -> float:
    """Closest minimum-image distance between atoms more than three bonds apart (or in different molecules)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import shortest_path

    bonds = find_bonds(atoms)
    graph = coo_matrix((np.ones(len(bonds)), (bonds[:, 0], bonds[:, 1])), shape=(len(atoms), len(atoms)))
    hops = shortest_path(graph, directed=False, unweighted=True)
    _, distances = get_distances(atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    return float(distances[hops > 3].min())


def test_random_walk_grows_a_50mer_at_liquid_density_without_overlaps():
    """One 50-mer (353 atoms) grown in its periodic cell at the liquid density of PEG (1.12 g/cm^3): bonds intact
    (its bond graph is the molecule's own), no two atoms more than three bonds apart closer than min_distance
    across the boundaries, and the target density."""
    from aiida_qrnn.core.structures import random_walk_cell

    cell = random_walk_cell(50, 1, density_g_cm3=1.12, seed=2, min_distance=1.5)
    assert len(cell) == oligomer_atom_count(50)
    assert density_g_cm3(cell) == pytest.approx(1.12, rel=1e-12)
    bonds = find_bonds(cell)
    assert len(bonds) == len(cell) - 1
    assert set(molecule_ids(len(cell), bonds)) == {0}
    assert _non_bonded_closest(cell) >= 1.5 - 1e-6
    # the chain is longer than its box: it crosses the periodic boundaries (a packmol cell could not hold it)
    assert np.ptp(cell.positions, axis=0).max() > cell.cell.lengths()[0]


def test_random_walk_packs_several_chains_at_the_builder_density():
    """Three 10-mers at the paper's builder density: chains keep min_distance from each other across the cell."""
    from aiida_qrnn.core.structures import random_walk_cell

    cell = random_walk_cell(10, 3, density_g_cm3=0.5, seed=0)
    bonds = find_bonds(cell)
    assert np.array_equal(molecule_ids(len(cell), bonds), cell.arrays['molecule'])
    assert _non_bonded_closest(cell) >= 1.7 - 1e-6


def test_random_walk_builds_other_families_with_their_bonds():
    from aiida_qrnn.core.polymer import NYLON_6, PROPYLENE_GLYCOL
    from aiida_qrnn.core.structures import random_walk_oligomer

    for polymer in (PROPYLENE_GLYCOL, NYLON_6):
        chain = random_walk_oligomer(8, polymer, seed=1)
        assert len(chain) == oligomer_atom_count(8, polymer)
        assert len(find_bonds(chain)) == len(chain) - 1
        assert _non_bonded_closest(chain) >= 1.7 - 1e-6


def test_random_walk_that_cannot_grow_says_so():
    from aiida_qrnn.core.structures import random_walk_cell

    with pytest.raises(PackingError, match=r'min_distance 3\.0'):
        random_walk_cell(10, 4, density_g_cm3=1.5, seed=0, min_distance=3.0)
