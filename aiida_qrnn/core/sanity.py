"""Physical sanity of a structure and of its labels: the one check every gate applies.

A cluster set is a provenance database: a structure or a label that no physical system can have (two atoms on top
of each other, more positive charge than electrons, a periodic cell narrower than the interaction cutoff, an
energy far above any bound state) must be refused where it enters, not discovered later as a NaN or an out-of-memory
kill. The rules, each a documented threshold (see ``docs/integrity.md``):

* **fused atoms**: no two atoms (periodic images included) closer than ``FUSED_FRACTION`` times the sum of their
  covalent radii (ASE's Cordero radii). Bonds are about 1.0 times that sum and the cluster samplers keep non-bonded
  atoms 0.9 Å apart, so only atoms that are physically on top of each other fall below.
* **dissociated atoms** (open clusters of two atoms or more): every atom has a neighbour within
  ``DISSOCIATED_FACTOR`` times the sum of their covalent radii. The paper's *decomposed* clusters have a bond pulled
  to up to 2.2 times that sum on purpose; they, and clusters cut from MD (``kind`` in ``BROKEN_BOND_KINDS``), opt
  out with ``allow_broken_bonds=True``, and are still checked for fused atoms.
* **electrons**: the electron count ``sum(Z) - total_charge`` is positive and, for a given spin multiplicity
  ``2S + 1``, has the parity it needs and at least ``2S`` electrons (a +1 cluster cannot be a closed-shell singlet).
* **periodic cells**: a cell of non-zero volume; with the interaction ``cutoff`` in use, every perpendicular width
  at least twice the cutoff, so an atom never sees its own image inside the cutoff and the neighbour list stays
  bounded (a 0.5 Å cell with a 12 Å cutoff took 22.6 GB).
* **energies**: finite, at most ``MAX_ENERGY_PER_ATOM_EV`` per atom (every isolated atom is lower at every level of
  theory used here: H is -10.7 eV in GFN2-xTB and -13.6 eV exactly) and above the Thomas-Fermi bound
  ``-THOMAS_FERMI_HARTREE * sum(Z**(7/3))`` Eh, which is below the true total energy of every neutral atom.

Each check returns a list of human-readable problems (empty when the input is sane), so that a gate can report all
of them at once or raise :class:`PhysicsCheckError`. Pure numpy/scipy/ASE: no AiiDA.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase.data import chemical_symbols, covalent_radii
from ase.neighborlist import neighbor_list
from scipy.spatial import cKDTree

from aiida_qrnn.core.units import HARTREE_TO_EV

__all__ = (
    'BROKEN_BOND_KINDS',
    'DISSOCIATED_FACTOR',
    'FUSED_FRACTION',
    'MAX_ENERGY_PER_ATOM_EV',
    'PhysicsCheckError',
    'allows_broken_bonds',
    'check_cell',
    'check_electrons',
    'check_energy',
    'check_structure',
    'raise_if',
)

#: Two atoms closer than this fraction of the sum of their covalent radii are fused (C-H: 0.53 Å, H-H: 0.31 Å).
FUSED_FRACTION = 0.5
#: An atom whose nearest neighbour is farther than this multiple of the sum of covalent radii has left its cluster.
DISSOCIATED_FACTOR = 3.0
#: Cluster kinds that may carry a broken bond: the paper's decomposed clusters (``core.clusters``), and clusters cut
#: from MD (``extracted``) and selected from them (``active-learning``), because a potential under training can break
#: bonds in MD and active learning is meant to label exactly those configurations.
BROKEN_BOND_KINDS = frozenset({'decomposed', 'extracted', 'active-learning'})
#: Highest sane energy per atom (eV) at any level of theory: every isolated atom lies below it.
MAX_ENERGY_PER_ATOM_EV = -1.0
#: Thomas-Fermi total energy coefficient (Eh): E_TF = -0.7687 Z^(7/3) lies below every neutral atom's energy.
THOMAS_FERMI_HARTREE = 0.7687


class PhysicsCheckError(ValueError):
    """A structure or label that no physical system can have; the message names the cluster and the rule."""


def allows_broken_bonds(kind: str | None) -> bool:
    """Whether clusters of this ``kind`` are meant to have a broken bond (skip the dissociated-atom rule)."""
    return kind in BROKEN_BOND_KINDS


def raise_if(problems: Sequence[str], where: str) -> None:
    """Raise :class:`PhysicsCheckError` listing ``problems`` for ``where`` (e.g. ``"cluster 3 of 'set.h5'"``)."""
    if problems:
        raise PhysicsCheckError(f'{where}: ' + '; '.join(problems))


def _radii(numbers: np.ndarray) -> np.ndarray:
    return covalent_radii[np.asarray(numbers, dtype=np.int64)]


def _pair(numbers: np.ndarray, i: int, j: int) -> str:
    return f'{chemical_symbols[numbers[i]]}{i} and {chemical_symbols[numbers[j]]}{j}'


def check_electrons(numbers: Sequence[int], total_charge: int = 0, multiplicity: int | None = 1) -> list[str]:
    """Problems with the electron count ``sum(Z) - total_charge`` for spin ``multiplicity`` (``None``: any spin)."""
    electrons = int(np.sum(np.asarray(numbers, dtype=np.int64))) - int(total_charge)
    if electrons <= 0:
        return [
            f'total charge {int(total_charge):+d} leaves {electrons} electrons '
            f'(the nuclei carry {electrons + int(total_charge)})'
        ]
    if multiplicity is None:
        return []
    if isinstance(multiplicity, bool) or int(multiplicity) != multiplicity or multiplicity < 1:
        return [f'spin multiplicity must be a positive integer, got {multiplicity!r}']
    unpaired = int(multiplicity) - 1
    if unpaired > electrons or (electrons - unpaired) % 2:
        return [
            f'{electrons} electrons (total charge {int(total_charge):+d}) cannot have spin multiplicity '
            f'{int(multiplicity)}' + (' (a closed shell needs an even electron count)' if unpaired == 0 else '')
        ]
    return []


def check_cell(cell: np.ndarray | None, pbc: Sequence[bool] | None, cutoff: float | None = None) -> list[str]:
    """Problems with a periodic cell: zero volume, or a perpendicular width under twice ``cutoff`` (Å)."""
    if pbc is None or not np.any(pbc):
        return []
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    if not np.all(np.isfinite(cell)):
        return ['the periodic cell holds NaN or infinite values']
    if not np.all(np.asarray(pbc, dtype=bool)):
        return [f'partly periodic cells (pbc={[bool(p) for p in pbc]}) are not supported; use all or none']
    volume = abs(float(np.linalg.det(cell)))
    lengths = np.linalg.norm(cell, axis=1)
    if not volume > 1e-9 * max(float(np.prod(lengths)), 1e-30):
        return ['the periodic cell has zero volume (its vectors are not independent)']
    widths = volume / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)  # distance between faces
    if cutoff is not None and float(widths.min()) < 2.0 * cutoff:
        return [
            f'the periodic cell is {float(widths.min()):.3g} Å wide, less than twice the {cutoff:g} Å cutoff: an '
            f'atom would see its own images; use a cell at least {2.0 * cutoff:g} Å wide'
        ]
    return []


#: Atoms per Å³ above which a periodic cell is refused: diamond, the densest solid of these elements, has 0.18,
#: liquid EG 0.10. Pairs per atom grow with density × cutoff³, so this bounds the memory of every pair list: a
#: 0.5 Å cell of a 40-atom cluster (320 atoms/Å³, its periodic images fused) asked for 22.6 GB at a 12 Å cutoff.
MAX_ATOMS_PER_CUBIC_ANGSTROM = 0.5


def check_density(n_atoms: int, cell: np.ndarray) -> list[str]:
    """Problems of a fully periodic cell packed denser than any matter (its images fused), or of no volume."""
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    volume = abs(float(np.linalg.det(cell)))
    if volume > 0.0 and n_atoms / volume <= MAX_ATOMS_PER_CUBIC_ANGSTROM:
        return []
    lengths = [round(float(length), 3) for length in np.linalg.norm(cell, axis=1)]
    density = n_atoms / volume if volume else np.inf
    return [f'{n_atoms} atoms in a periodic cell of {volume:.4g} Å³ (cell vector lengths {lengths} Å) is '
            f'{density:.3g} atoms/Å³, denser than any matter (limit {MAX_ATOMS_PER_CUBIC_ANGSTROM}): its periodic '
            'images overlap']


def check_structure(
    numbers: Sequence[int], positions: np.ndarray, *, cell: np.ndarray | None = None,
    pbc: Sequence[bool] | None = None, total_charge: int = 0, multiplicity: int | None = 1,
    allow_broken_bonds: bool = False, cutoff: float | None = None,
) -> list[str]:
    """Every physical problem of one structure (Å, e), as human-readable sentences; empty when it is sane.

    :param multiplicity: spin multiplicity the structure will be computed with (1: closed shell); ``None`` checks
        only that electrons remain, for sets whose spin state is not decided yet.
    :param allow_broken_bonds: skip the dissociated-atom rule (decomposed clusters, see ``allows_broken_bonds``).
    :param cutoff: the largest interaction cutoff (Å) the structure will be evaluated with; periodic cells must be
        at least twice as wide. ``None`` checks only that the cell has a volume.
    """
    numbers = np.asarray(numbers, dtype=np.int64)
    positions = np.asarray(positions, dtype=np.float64).reshape(len(numbers), 3)
    if len(numbers) == 0:
        return ['the structure has no atoms']
    if np.any(numbers < 1) or np.any(numbers >= len(chemical_symbols)):
        return [f'unknown atomic number {int(numbers[(numbers < 1) | (numbers >= len(chemical_symbols))][0])}']
    if not np.all(np.isfinite(positions)):
        return ['the positions hold NaN or infinite values']
    periodic = pbc is not None and bool(np.any(pbc))
    problems = check_electrons(numbers, total_charge, multiplicity)
    cell_problems = check_cell(cell, pbc, cutoff)
    if cell_problems:  # a degenerate or too narrow cell would make the neighbour search below unbounded
        return problems + cell_problems
    if len(numbers) < 2 and not periodic:
        return problems
    radii = _radii(numbers)
    atoms_cell = np.asarray(cell, dtype=np.float64).reshape(3, 3) if periodic else np.zeros((3, 3))
    widest_fused = FUSED_FRACTION * 2.0 * float(radii.max())
    if periodic:
        widths = abs(np.linalg.det(atoms_cell)) / np.linalg.norm(
            np.cross(atoms_cell[[1, 2, 0]], atoms_cell[[2, 0, 1]]), axis=1
        )
        if float(widths.min()) < widest_fused:
            return [*problems, f'the periodic cell is {float(widths.min()):.3g} Å wide: every atom is fused with '
                               'its own image']
    from ase import Atoms

    atoms = Atoms(numbers=numbers, positions=positions, cell=atoms_cell, pbc=periodic)
    first, second, distance = neighbor_list('ijd', atoms, widest_fused, self_interaction=False)
    fused = distance < FUSED_FRACTION * (radii[first] + radii[second])
    if np.any(fused):
        worst = int(np.argmin(np.where(fused, distance / (radii[first] + radii[second]), np.inf)))
        i, j = int(first[worst]), int(second[worst])
        count = int(np.sum(fused & (first < second))) or int(np.sum(fused))
        problems.append(
            f'atoms {_pair(numbers, i, j)} are {distance[worst]:.3g} Å apart, less than {FUSED_FRACTION} of the sum '
            f'of their covalent radii ({radii[i] + radii[j]:.3g} Å): fused atoms ({count} such pair(s))'
        )
    if not allow_broken_bonds and not periodic:
        nearest_distance, nearest = cKDTree(positions).query(positions, k=2)
        nearest_distance, nearest = nearest_distance[:, 1], nearest[:, 1]
        reach = DISSOCIATED_FACTOR * (radii + radii[nearest])
        lonely = np.flatnonzero(nearest_distance > reach)
        if len(lonely):
            i = int(lonely[0])
            problems.append(
                f'atom {chemical_symbols[numbers[i]]}{i} is {nearest_distance[i]:.3g} Å from its nearest neighbour, '
                f'more than {DISSOCIATED_FACTOR} times the sum of their covalent radii: a dissociated atom '
                f'({len(lonely)} such atom(s)); decomposed clusters opt out with allow_broken_bonds'
            )
    return problems


def check_energy(energy: float, numbers: Sequence[int]) -> list[str]:
    """Problems with a total energy (eV) of a structure with atomic ``numbers``: non-finite or outside the window
    ``[-THOMAS_FERMI_HARTREE * sum(Z**(7/3)) Eh, MAX_ENERGY_PER_ATOM_EV * n_atoms]``."""
    numbers = np.asarray(numbers, dtype=np.int64)
    energy = float(energy)
    if not np.isfinite(energy):
        return [f'the energy is {energy}']
    n_atoms = len(numbers)
    highest = MAX_ENERGY_PER_ATOM_EV * n_atoms
    lowest = -THOMAS_FERMI_HARTREE * float(np.sum(numbers.astype(np.float64) ** (7.0 / 3.0))) * HARTREE_TO_EV
    if energy > highest:
        return [
            f'the energy {energy:.6g} eV ({energy / n_atoms:+.4g} eV per atom) is above {MAX_ENERGY_PER_ATOM_EV} eV '
            'per atom, higher than any bound state: fused atoms or an impossible charge'
        ]
    if energy < lowest:
        return [f'the energy {energy:.6g} eV is below the Thomas-Fermi bound {lowest:.6g} eV of these nuclei']
    return []
