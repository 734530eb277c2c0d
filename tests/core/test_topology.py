"""The one bond graph: bonds across boundaries, molecule ids, molecules made whole in any cell."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import molecule

from aiida_qrnn.core.topology import find_bonds, make_molecules_whole, molecule_ids


def _split_ethanols(cell) -> tuple:
    """Two ethanols 8 Å apart in ``cell`` (3x3), wrapped, so that the bonds of both cross the boundary."""
    ethanol = molecule('CH3CH2OH')
    first = ethanol.copy()
    second = ethanol.copy()
    second.translate([0.0, 0.0, 8.0])
    atoms = first + second
    atoms.set_cell(cell)
    atoms.pbc = True
    reference = atoms.get_positions()
    atoms.translate(-atoms.positions[1] + 0.2)  # the C-C bond of the first molecule straddles the corner
    atoms.wrap()
    return atoms, reference


@pytest.mark.parametrize('cell', [np.diag([9.0, 9.0, 16.0]), [[9.0, 0.0, 0.0], [4.0, 8.0, 0.0], [3.0, -2.0, 16.0]]])
def test_molecules_made_whole_in_orthorhombic_and_triclinic_cells(cell):
    atoms, reference = _split_ethanols(cell)
    bonds = find_bonds(atoms)
    assert len(bonds) == 16  # 8 per ethanol, found across the boundary
    lengths = np.linalg.norm(atoms.positions[bonds[:, 0]] - atoms.positions[bonds[:, 1]], axis=1)
    assert lengths.max() > 3.0  # split by the wrapping
    ids = molecule_ids(len(atoms), bonds)
    assert ids.tolist() == [0] * 9 + [1] * 9
    for whole in (make_molecules_whole(atoms), make_molecules_whole(atoms, bonds, molecule_ids=ids)):
        for rows in (slice(0, 9), slice(9, 18)):
            # each molecule's first atom stays put; the rest sit at their bond vectors from it
            np.testing.assert_allclose(whole[rows] - whole[rows][0], reference[rows] - reference[rows][0], atol=1e-9)
        shift = np.linalg.solve(np.asarray(cell, dtype=float).T, (whole - atoms.positions).T).T
        np.testing.assert_allclose(shift, np.round(shift), atol=1e-9)  # moved by whole cell vectors only


def test_bonds_between_molecules_are_ignored_and_split_molecules_refused():
    atoms, _ = _split_ethanols(np.diag([9.0, 9.0, 16.0]))
    ids = molecule_ids(len(atoms), find_bonds(atoms))
    # a contact: atom 12 of the second ethanol pushed onto the first's oxygen neighbourhood
    bonds = np.concatenate([find_bonds(atoms), [[2, 12]]])
    whole = make_molecules_whole(atoms, bonds, molecule_ids=ids)
    np.testing.assert_allclose(whole, make_molecules_whole(atoms, molecule_ids=ids))
    wrong = ids.copy()
    wrong[0] = 1  # atom 0 (C) said to be in the second molecule: its three H atoms are cut off from molecule 0
    with pytest.raises(ValueError, match=r'Molecule 0 has 8 atoms but only 5 are bonded to its first atom 1'):
        make_molecules_whole(atoms, molecule_ids=wrong)
    with pytest.raises(ValueError, match=r'molecule ids have shape \(3,\)'):
        make_molecules_whole(atoms, molecule_ids=np.zeros(3))


def test_open_clusters_are_left_alone():
    water = molecule('H2O')
    np.testing.assert_array_equal(make_molecules_whole(water), water.positions)
