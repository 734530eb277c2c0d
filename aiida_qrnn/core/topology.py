"""Bonds, molecules and whole molecules: the one place that says which atoms are bonded.

Every part of the package that needs a molecular graph (cell building, the classical force field, MD start-up,
cluster cutting, trajectory analyses) takes it from here, so one bond criterion holds everywhere:

* :func:`find_bonds`: two atoms are bonded when closer than ``BOND_TOLERANCE`` (1.2) times the sum of ASE's
  covalent radii, across periodic boundaries (minimum image);
* :func:`molecule_ids`: connected components of the bond graph, numbered in order of their first atom;
* :func:`make_molecules_whole`: every molecule made one connected piece by moving atoms by whole cell vectors only
  (no energy changes), so centres of mass and intramolecular vectors are right in a wrapped frame.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

__all__ = ('BOND_TOLERANCE', 'bond_graph', 'find_bonds', 'make_molecules_whole', 'molecule_ids')

#: Two atoms are bonded when closer than this factor times the sum of their covalent radii (ASE's radii).
BOND_TOLERANCE = 1.2


def find_bonds(atoms: Atoms, *, scale: float = BOND_TOLERANCE) -> np.ndarray:
    """Bonds ``(n_bonds, 2)`` with ``i < j``, sorted, from covalent radii; across periodic boundaries.

    Reliable for whole, unperturbed organic molecules: covalent bonds of C, H, O are shorter than 1.2 times the
    sum of radii, hydrogen bonds (H...O ~ 1.8 Å) longer.
    """
    from ase.neighborlist import natural_cutoffs, neighbor_list

    first, second = neighbor_list('ij', atoms, natural_cutoffs(atoms, mult=scale))
    keep = first < second
    bonds = np.unique(np.stack([first[keep], second[keep]], axis=1).astype(np.int64), axis=0)  # (n_bonds, 2)
    return bonds.reshape(-1, 2)


def molecule_ids(n_atoms: int, bonds: np.ndarray) -> np.ndarray:
    """Molecule index ``(n_atoms,)`` of every atom: connected components of the bond graph, numbered 0, 1, ... in
    order of their first atom."""
    return _components(n_atoms, bonds)


def make_molecules_whole(
    atoms: Atoms, bonds: np.ndarray | None = None, *, molecule_ids: np.ndarray | None = None,
) -> np.ndarray:
    """Positions ``(n_atoms, 3)`` with every molecule one connected piece through its bonds.

    ``bonds`` ``(n_bonds, 2)`` default to :func:`find_bonds` of ``atoms``; pass the bonds of a reference frame to
    unwrap later frames of the same molecules. Each molecule's lowest-numbered atom stays where it is; every other
    atom is placed at the minimum-image bond vector from the atom it is reached from (breadth first), so atoms move
    by whole cell vectors only. A no-op for open clusters and for trajectories that are already unwrapped.

    ``molecule_ids`` ``(n_atoms,)``, if given, says what the molecules are: bonds between different molecules (a
    close contact) are ignored, and a molecule whose atoms are not all connected by bonds is an error.
    """
    from ase.geometry import find_mic
    from scipy.sparse.csgraph import breadth_first_order

    n_atoms = len(atoms)
    positions = atoms.get_positions()
    bonds = find_bonds(atoms) if bonds is None else np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    if molecule_ids is not None:
        molecule_ids = np.asarray(molecule_ids)
        if molecule_ids.shape != (n_atoms,):
            raise ValueError(f'molecule ids have shape {molecule_ids.shape}, expected ({n_atoms},).')
        bonds = bonds[molecule_ids[bonds[:, 0]] == molecule_ids[bonds[:, 1]]]
    if not atoms.pbc.any() or len(bonds) == 0:
        _check_connected(n_atoms, bonds, molecule_ids)
        return positions
    # One breadth-first walk from a virtual atom n_atoms linked to the first atom of every connected piece.
    pieces = _components(n_atoms, bonds)
    _, roots = np.unique(pieces, return_index=True)
    walk = np.concatenate([bonds, np.stack([np.full(len(roots), n_atoms), roots], axis=1)])
    graph = bond_graph(n_atoms + 1, walk)
    order, parents = breadth_first_order(graph, n_atoms, directed=False, return_predecessors=True)
    order = order[1:]  # (n_atoms,) every atom after the atom it is reached from
    placed = order[parents[order] != n_atoms]  # atoms that are not the root of their piece
    vectors, _ = find_mic(positions[placed] - positions[parents[placed]], atoms.cell, atoms.pbc)  # (n_placed, 3)
    vector_of = np.zeros((n_atoms, 3))
    vector_of[placed] = vectors
    for atom in placed.tolist():
        positions[atom] = positions[parents[atom]] + vector_of[atom]
    _check_connected(n_atoms, bonds, molecule_ids, pieces)
    return positions


def _components(n_atoms: int, bonds: np.ndarray) -> np.ndarray:
    """:func:`molecule_ids` under a name that its keyword argument in :func:`make_molecules_whole` does not hide."""
    from scipy.sparse.csgraph import connected_components

    _, labels = connected_components(bond_graph(n_atoms, bonds), directed=False)
    # Renumber in order of first appearance, so that contiguous molecules get 0, 1, 2, ...
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(np.argsort(first))
    return order[labels].astype(np.int32)


def bond_graph(n_atoms: int, bonds: np.ndarray):
    """Symmetric sparse adjacency ``(n_atoms, n_atoms)`` of the bond graph."""
    from scipy.sparse import coo_matrix

    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(bonds)), (bonds[:, 0], bonds[:, 1])), shape=(n_atoms, n_atoms)).tocsr()
    return graph + graph.T


def _check_connected(n_atoms: int, bonds: np.ndarray, molecule_ids: np.ndarray | None,
                     pieces: np.ndarray | None = None) -> None:
    """Raise when a molecule of ``molecule_ids`` is split into several bonded pieces."""
    if molecule_ids is None:
        return
    pieces = _components(n_atoms, bonds) if pieces is None else pieces
    for molecule in np.unique(molecule_ids):
        members = np.flatnonzero(molecule_ids == molecule)
        connected = np.count_nonzero(pieces[members] == pieces[members[0]])
        if connected != len(members):
            raise ValueError(f'Molecule {molecule} has {len(members)} atoms but only {connected} are bonded to its '
                             f'first atom {members[0]}; molecule ids and bonds disagree.')
