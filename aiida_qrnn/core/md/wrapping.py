"""Make molecules whole across periodic boundaries before a run, so molecular centres of mass are right.

A molecule split by the cell boundary has a centre of mass in the middle of the box; after this, each
molecule is one connected piece (atoms moved by whole cell vectors only, which changes no energy). Together
with the unwrapped trajectory (:mod:`.trajectory`) this keeps every molecule whole for the whole run.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.neighborlist import natural_cutoffs, neighbor_list
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import breadth_first_order

BOND_CUTOFF_SCALE = 1.2  # bonded if closer than 1.2 x the sum of ASE's covalent radii


def make_molecules_whole(atoms: Atoms, molecule_ids: np.ndarray) -> np.ndarray:
    """Positions ``(n_atoms, 3)`` with each molecule (``molecule_ids``, ``(n_atoms,)``) connected through bonds.

    Walks each molecule's bond graph breadth-first and places every atom at its bond vector from the atom it
    was reached from. Raises if a molecule's atoms are not all connected by bonds.
    """
    molecule_ids = np.asarray(molecule_ids)
    if molecule_ids.shape != (len(atoms),):
        raise ValueError(f'molecule ids have shape {molecule_ids.shape}, expected ({len(atoms)},).')
    first, second, vectors = neighbor_list('ijD', atoms, natural_cutoffs(atoms, mult=BOND_CUTOFF_SCALE))
    same = molecule_ids[first] == molecule_ids[second]
    first, second, vectors = first[same], second[same], vectors[same]  # (n_pairs,), (n_pairs, 3)
    # Several periodic images of one pair can be within the cutoff only in tiny cells; keep the shortest.
    order = np.argsort(np.linalg.norm(vectors, axis=1))[::-1]
    vector_of = {(int(i), int(j)): vectors[k] for k, i, j in zip(order, first[order], second[order], strict=True)}
    graph = coo_matrix((np.ones(len(first)), (first, second)), shape=(len(atoms), len(atoms))).tocsr()
    positions = atoms.get_positions()
    for molecule in np.unique(molecule_ids):
        members = np.flatnonzero(molecule_ids == molecule)
        visit, parents = breadth_first_order(graph, members[0], directed=False, return_predecessors=True)
        if len(visit) != len(members):
            raise ValueError(f'Molecule {molecule} has {len(members)} atoms but only {len(visit)} are bonded to '
                             f'its first atom {members[0]}; molecule ids and bonds disagree.')
        for atom in visit[1:]:
            positions[atom] = positions[parents[atom]] + vector_of[(int(parents[atom]), int(atom))]
    return positions
