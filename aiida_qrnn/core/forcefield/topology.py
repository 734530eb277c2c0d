"""OPLS-AA typing of HO-(CH2CH2O)n-H from the bond graph, and the bonded terms with their parameters.

Typing is by chemical environment, which is what foyer's SMARTS do for these molecules: an O with one H and one C
is a hydroxyl O, an O with two C an ether O, a CH2 carbon is an alcohol C (opls_157) or an ether C (opls_182)
by the O it carries, and a C-H hydrogen is alpha to an ether O (opls_185) or not (opls_140). Any other
environment (a methyl, a carbonyl, a charged atom, another element) is outside the supported chemistry and
raises :class:`UnsupportedChemistryError` naming the atom, never a guessed parameter.

Hydroxyl types: foyer types every hydroxyl as the mono-alcohol opls_154/155 because opls_169/170 (diols) have no
SMARTS in its file (science.md §5.3, "gotcha"); OPLS-AA itself assigns 169/170 to diols, which all
HO-(CH2CH2O)n-H are. ``hydroxyl='diol'`` (default) follows OPLS-AA, ``'alcohol'`` reproduces foyer. Both keep
every HOCH2- group neutral.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aiida_qrnn.core.forcefield.parameters import (
    ATOM_TYPES,
    angle_parameters,
    bond_parameters,
    torsion_parameters,
)
from aiida_qrnn.core.topology import molecule_ids

__all__ = ('HYDROXYL_TYPES', 'OplsTopology', 'UnsupportedChemistryError', 'assign_atom_types', 'build_topology')

#: hydroxyl choice -> (O type, H type)
HYDROXYL_TYPES = {'diol': ('opls_169', 'opls_170'), 'alcohol': ('opls_154', 'opls_155')}
_SYMBOLS = {1: 'H', 6: 'C', 8: 'O'}


class UnsupportedChemistryError(ValueError):
    """The molecule is not an HO-(CH2CH2O)n-H oligomer that these OPLS-AA parameters cover."""


@dataclass(frozen=True)
class OplsTopology:
    """Atom types and bonded terms of a system, each term with its parameters (OpenMM units)."""

    types: tuple[str, ...]  # (n_atoms,)
    bonds: np.ndarray  # (n_bonds, 2)
    bond_parameters: np.ndarray  # (n_bonds, 2): r0 nm, k kJ/mol/nm^2
    angles: np.ndarray  # (n_angles, 3), centre in the middle
    angle_parameters: np.ndarray  # (n_angles, 2): theta0 rad, k kJ/mol/rad^2
    torsions: np.ndarray  # (n_torsions, 4)
    torsion_parameters: np.ndarray  # (n_torsions, 6): RB c0..c5 kJ/mol
    pairs_14: np.ndarray  # (n_pairs, 2) atoms three bonds apart

    @property
    def charges(self) -> np.ndarray:
        return np.array([ATOM_TYPES[name].charge for name in self.types])

    @property
    def sigmas(self) -> np.ndarray:
        return np.array([ATOM_TYPES[name].sigma for name in self.types])

    @property
    def epsilons(self) -> np.ndarray:
        return np.array([ATOM_TYPES[name].epsilon for name in self.types])

    @property
    def masses(self) -> np.ndarray:
        return np.array([ATOM_TYPES[name].mass for name in self.types])


def _neighbours(n_atoms: int, bonds: np.ndarray) -> list[list[int]]:
    neighbours: list[list[int]] = [[] for _ in range(n_atoms)]
    for i, j in bonds:
        neighbours[i].append(int(j))
        neighbours[j].append(int(i))
    return neighbours


def assign_atom_types(numbers: np.ndarray, bonds: np.ndarray, *, hydroxyl: str = 'diol') -> tuple[str, ...]:
    """OPLS-AA type of every atom of HO-(CH2CH2O)n-H molecules, from elements and bonds."""
    if hydroxyl not in HYDROXYL_TYPES:
        raise ValueError(f'hydroxyl must be one of {sorted(HYDROXYL_TYPES)}, got {hydroxyl!r}.')
    hydroxyl_o, hydroxyl_h = HYDROXYL_TYPES[hydroxyl]
    numbers = np.asarray(numbers)
    neighbours = _neighbours(len(numbers), np.asarray(bonds).reshape(-1, 2))

    def environment(atom: int) -> str:
        around = sorted(_SYMBOLS.get(int(numbers[k]), f'Z{int(numbers[k])}') for k in neighbours[atom])
        return f'{_SYMBOLS.get(int(numbers[atom]), f"Z{int(numbers[atom])}")}({"".join(around)})'

    def unsupported(atom: int, why: str) -> UnsupportedChemistryError:
        return UnsupportedChemistryError(
            f'atom {atom} ({environment(atom)}): {why}; the OPLS-AA baseline covers HO-(CH2CH2O)n-H only '
            f'(hydroxyl O-H, CH2 and ether O).'
        )

    def is_hydroxyl_oxygen(atom: int) -> bool:
        return numbers[atom] == 8 and sorted(numbers[neighbours[atom]].tolist()) == [1, 6]

    def is_ether_oxygen(atom: int) -> bool:
        return numbers[atom] == 8 and numbers[neighbours[atom]].tolist() == [6, 6]

    types = []
    for atom, number in enumerate(numbers):
        around = sorted(numbers[neighbours[atom]].tolist())
        if number == 8:
            if is_hydroxyl_oxygen(atom):
                types.append(hydroxyl_o)
            elif is_ether_oxygen(atom):
                types.append('opls_180')
            else:
                raise unsupported(atom, 'an oxygen must be a hydroxyl O (bonded to C and H) or an ether O (C, C)')
        elif number == 6:
            if around != [1, 1, 6, 8]:
                raise unsupported(atom, 'a carbon must be a CH2 bonded to one C and one O')
            oxygen = next(k for k in neighbours[atom] if numbers[k] == 8)
            types.append('opls_157' if is_hydroxyl_oxygen(oxygen) else 'opls_182')
        elif number == 1:
            if len(around) != 1:
                raise unsupported(atom, 'a hydrogen must have exactly one bond')
            partner = neighbours[atom][0]
            if numbers[partner] == 8:
                if not is_hydroxyl_oxygen(partner):
                    raise unsupported(atom, 'a hydrogen on O must belong to a hydroxyl group')
                types.append(hydroxyl_h)
            elif numbers[partner] == 6:
                alpha_ether = any(is_ether_oxygen(k) for k in neighbours[partner])
                types.append('opls_185' if alpha_ether else 'opls_140')
            else:
                raise unsupported(atom, 'a hydrogen must be bonded to C or O')
        else:
            raise unsupported(atom, 'only H, C and O are parametrised')
    return tuple(types)


def build_topology(numbers: np.ndarray, bonds: np.ndarray, *, hydroxyl: str = 'diol') -> OplsTopology:
    """Types, angles, proper torsions and 1-4 pairs of an acyclic bond graph, with OPLS-AA parameters."""
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    types = assign_atom_types(numbers, bonds, hydroxyl=hydroxyl)
    n_molecules = len(np.unique(molecule_ids(len(types), bonds)))
    if len(bonds) != len(types) - n_molecules:
        raise UnsupportedChemistryError(
            f'the bond graph has rings ({len(bonds)} bonds for {len(types)} atoms in {n_molecules} molecules); '
            f'HO-(CH2CH2O)n-H chains are acyclic.'
        )
    classes = [ATOM_TYPES[name].bond_class for name in types]
    neighbours = _neighbours(len(types), bonds)

    angles = [(i, j, k) for j in range(len(types)) for a, i in enumerate(neighbours[j]) for k in neighbours[j][a + 1:]]
    torsions = [
        (i, j, k, m)
        for j, k in bonds
        for i in neighbours[j] if i != k
        for m in neighbours[k] if m not in (j, i)
    ]

    def lookup(table, terms, atoms_of) -> np.ndarray:
        values = []
        for term in terms:
            found = table(*atoms_of(term))
            if found is None:
                names = '-'.join(f'{types[a]}({classes[a]})' for a in term)
                raise UnsupportedChemistryError(f'atoms {list(map(int, term))}: no OPLS-AA parameters for {names}.')
            values.append(found)
        return np.array(values, dtype=np.float64)

    bond_values = lookup(bond_parameters, bonds, lambda t: (classes[t[0]], classes[t[1]]))
    angle_values = lookup(angle_parameters, angles, lambda t: tuple(classes[a] for a in t))
    torsion_values = lookup(lambda *c: torsion_parameters(c), torsions, lambda t: tuple(classes[a] for a in t))
    # Acyclic molecules: every torsion end pair is a distinct 1-4 pair, never also 1-2 or 1-3.
    pairs = sorted({(min(t[0], t[3]), max(t[0], t[3])) for t in torsions})
    return OplsTopology(
        types=types,
        bonds=bonds,
        bond_parameters=bond_values.reshape(-1, 2),
        angles=np.array(angles, dtype=np.int64).reshape(-1, 3),
        angle_parameters=angle_values.reshape(-1, 2),
        torsions=np.array(torsions, dtype=np.int64).reshape(-1, 4),
        torsion_parameters=torsion_values.reshape(-1, 6),
        pairs_14=np.array(pairs, dtype=np.int64).reshape(-1, 2),
    )
