"""A polymer written once: repeat unit(s) as SMILES with two attachment points, two end groups, an optional
copolymer sequence; from it the SMILES of the oligomer of any length (``n`` repeat units).

A repeat unit marks its two bonds to the neighbouring units with ``[*]``: the first ``[*]`` in the SMILES bonds to
the unit before (or the head group), the second to the unit after (or the tail group), e.g. ``[*]CCO[*]`` for
ethylene oxide or ``[*]CC(C)O[*]`` for propylene oxide. An end group is one atom (``O``, ``C``, ``[H]``), bonded
by that atom, or a SMILES with one ``[*]`` marking its bond to the chain (``CO[*]`` for a methoxy head). The
chain is ``head - unit_1 - ... - unit_n - tail``; hydrogens are implicit (RDKit adds them when building atoms).

Examples (:data:`POLYMERS`): HO-(CH2CH2O)n-H is ``Polymer({'EO': '[*]CCO[*]'}, head='O', tail='[H]')`` and gives
``OCCO``, ``OCCOCCO``, ...; the glymes CH3O-(CH2CH2O)n-CH3 take ``head='CO[*]', tail='C'``.

Every definition is checked when it is made (:meth:`Polymer.__post_init__`); a bad one raises
:class:`PolymerDefinitionError` naming the parameter (``repeat_units['A']``, ``head``, ``sequence`` ...) and what
is wrong with it, from RDKit's own sanitisation message where RDKit refuses the chemistry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import numbers
import typing as t

__all__ = (
    'ETHYLENE_GLYCOL',
    'GLYME',
    'MAX_UNITS',
    'NYLON_6',
    'PIECE_PROPERTY',
    'POLYMERS',
    'PROPYLENE_GLYCOL',
    'SUPPORTED_ELEMENTS',
    'Polymer',
    'PolymerDefinitionError',
)

#: Longest chain a definition builds (the paper's longest is the 100-mer).
MAX_UNITS = 100
#: Elements the model, the D3 tables and the labelling support: ANI-2x's set.
SUPPORTED_ELEMENTS = ('H', 'C', 'N', 'O', 'F', 'S', 'Cl')
#: RDKit atom property of :meth:`Polymer.molecule`: which piece (head 0, units 1..n, tail n + 1) an atom is in.
PIECE_PROPERTY = 'polymer_piece'
_KEYS = ('name', 'repeat_units', 'head', 'tail', 'sequence', 'label')


class PolymerDefinitionError(ValueError):
    """A polymer definition that cannot describe a molecule; the message names the parameter at fault."""


def _parse(smiles: str, parameter: str):
    """RDKit molecule of ``smiles`` (sanitised), or :class:`PolymerDefinitionError` with RDKit's reason."""
    from rdkit import Chem

    if not isinstance(smiles, str) or not smiles.strip():
        raise PolymerDefinitionError(f'{parameter} must be a non-empty SMILES string, got {smiles!r}.')
    with _quiet_rdkit():
        molecule = Chem.MolFromSmiles(smiles, sanitize=False)
        if molecule is None:
            raise PolymerDefinitionError(
                f'{parameter} = {smiles!r} is not valid SMILES (unknown atom, unclosed ring or bracket?).')
        try:
            Chem.SanitizeMol(molecule)
        except Exception as exception:  # RDKit raises its own sanitisation exception types
            raise PolymerDefinitionError(f'{parameter} = {smiles!r} is not a valid molecule: {exception}.') from None
    unsupported = sorted({atom.GetSymbol() for atom in molecule.GetAtoms()
                          if atom.GetAtomicNum() and atom.GetSymbol() not in SUPPORTED_ELEMENTS})
    if unsupported:
        raise PolymerDefinitionError(
            f'{parameter} = {smiles!r} contains {unsupported}; supported elements are {list(SUPPORTED_ELEMENTS)}.')
    return molecule


@contextlib.contextmanager
def _quiet_rdkit() -> t.Iterator[None]:
    """RDKit's log off: its reasons go into this module's error messages instead."""
    from rdkit import RDLogger

    RDLogger.DisableLog('rdApp.*')
    try:
        yield
    finally:
        RDLogger.EnableLog('rdApp.*')


def _attachments(molecule) -> list[int]:
    """Indices of the ``[*]`` atoms, each bonded by one single bond to one real atom."""
    return [atom.GetIdx() for atom in molecule.GetAtoms() if atom.GetAtomicNum() == 0]


@dataclasses.dataclass(frozen=True)
class Polymer:
    """Repeat units, end groups and sequence of a (co)polymer; :meth:`smiles` gives the n-mer.

    :param repeat_units: label -> SMILES with exactly two ``[*]``, e.g. ``{'EO': '[*]CCO[*]'}``.
    :param head: end group bonded to the first unit: one atom, or SMILES with one ``[*]``.
    :param tail: end group bonded to the last unit, likewise.
    :param sequence: labels of ``repeat_units`` in chain order, repeated to the chain length (``('A', 'B')``:
        alternating, ``('A',)*5 + ('B',)*5``: blocks of five); ``None`` for a homopolymer (one repeat unit).
    :param name: short name used in messages and files, e.g. ``'ethylene glycol'``.
    :param label: how messages write the n-mer, with ``{n}`` for the length, e.g. ``'HO-(CH2CH2O){n}-H'``.
    """

    repeat_units: t.Mapping[str, str]
    head: str
    tail: str
    sequence: tuple[str, ...] | None = None
    name: str = 'polymer'
    label: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.repeat_units, t.Mapping) or not self.repeat_units:
            raise PolymerDefinitionError(
                f"repeat_units must map a label to a SMILES with two '[*]', got {self.repeat_units!r}.")
        object.__setattr__(self, 'repeat_units', dict(self.repeat_units))
        for label, smiles in self.repeat_units.items():
            parameter = f'repeat_units[{label!r}]'
            molecule = _parse(smiles, parameter)
            count = len(_attachments(molecule))
            if count != 2:
                raise PolymerDefinitionError(
                    f"{parameter} = {smiles!r} has {count} attachment point(s) '[*]'; a repeat unit needs exactly "
                    f"two (one to the unit before, one to the unit after), e.g. '[*]CCO[*]'.")
            self._check_attachment_bonds(molecule, parameter, smiles)
        for parameter in ('head', 'tail'):
            smiles = getattr(self, parameter)
            molecule = _parse(smiles, parameter)
            count = len(_attachments(molecule))
            if count > 1 or (count == 0 and molecule.GetNumAtoms() != 1):
                raise PolymerDefinitionError(
                    f"{parameter} = {smiles!r}: an end group is one atom ('O', 'C', '[H]') or a SMILES with one "
                    f"'[*]' marking its bond to the chain (e.g. 'CO[*]'); it has {count} '[*]'.")
            self._check_attachment_bonds(molecule, parameter, smiles)
        if self.sequence is None:
            if len(self.repeat_units) != 1:
                raise PolymerDefinitionError(
                    f'sequence is required for a copolymer of {sorted(self.repeat_units)}: the unit labels in chain '
                    f'order, repeated to the chain length.')
        else:
            sequence = (self.sequence,) if isinstance(self.sequence, str) else tuple(self.sequence)
            unknown = sorted({label for label in sequence if label not in self.repeat_units})
            if not sequence or unknown:
                raise PolymerDefinitionError(
                    f'sequence {list(sequence)} must be a non-empty list of repeat-unit labels '
                    f'{sorted(self.repeat_units)}' + (f'; unknown: {unknown}.' if unknown else '.'))
            object.__setattr__(self, 'sequence', sequence)
        if self.label is not None and '{n}' not in self.label:
            raise PolymerDefinitionError(f"label {self.label!r} must contain '{{n}}' for the chain length.")
        period = len(self.sequence) if self.sequence is not None else 1
        self.molecule(min(period, MAX_UNITS))  # valences across every junction: RDKit checks one whole period

    def __hash__(self) -> int:
        """Definitions are values: equal definitions hash equal (usable as cache keys)."""
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    @staticmethod
    def _check_attachment_bonds(molecule, parameter: str, smiles: str) -> None:
        for index in _attachments(molecule):
            atom = molecule.GetAtomWithIdx(index)
            bonds = atom.GetBonds()
            if len(bonds) != 1 or bonds[0].GetOtherAtom(atom).GetAtomicNum() == 0:
                raise PolymerDefinitionError(f"{parameter} = {smiles!r}: each '[*]' must be bonded to one atom.")
            if bonds[0].GetBondTypeAsDouble() != 1.0:
                raise PolymerDefinitionError(f"{parameter} = {smiles!r}: each '[*]' must be joined by a single bond.")

    # -- what the definition builds ------------------------------------------------------------------------------
    def units(self, n_units: int) -> tuple[str, ...]:
        """Labels of the ``n_units`` repeat units in chain order."""
        if not isinstance(n_units, numbers.Integral) or isinstance(n_units, bool) or not 1 <= n_units <= MAX_UNITS:
            raise ValueError(f'n_units must be an integer in 1..{MAX_UNITS}, got {n_units!r}.')
        pattern = self.sequence if self.sequence is not None else tuple(self.repeat_units)
        return tuple(pattern[index % len(pattern)] for index in range(int(n_units)))

    def describe(self, n_units: int) -> str:
        """The n-mer in words, for messages: ``HO-(CH2CH2O)3-H`` or ``poly(propylene glycol) 3-mer``."""
        return self.label.format(n=n_units) if self.label else f'{self.name} {n_units}-mer'

    def smiles(self, n_units: int) -> str:
        """SMILES of the n-mer, atoms written in chain order (head, unit 1, ..., unit n, tail).

        The string is RDKit's non-canonical SMILES of the assembled molecule, so that the atom order of the
        molecule RDKit reads back follows the chain: for ethylene glycol it is ``'O' + 'CCO' * n``.
        """
        from rdkit import Chem

        molecule = self.molecule(n_units)
        return Chem.MolToSmiles(molecule, canonical=False)

    def molecule(self, n_units: int):
        """The n-mer as an RDKit molecule without explicit hydrogens (sanitised), atoms in chain order.

        Each atom carries the integer property :data:`PIECE_PROPERTY`: 0 for the head, k for repeat unit k, n + 1
        for the tail (the builder of long chains places the molecule piece by piece).
        """
        from rdkit import Chem

        labels = self.units(n_units)
        pieces = [self.head, *(self.repeat_units[label] for label in labels), self.tail]
        chain = Chem.RWMol()
        attachments: list[int] = []  # the [*] atoms, removed once the bonds are made
        previous_exit = -1
        for position, smiles in enumerate(pieces):
            piece = Chem.MolFromSmiles(smiles, sanitize=False)  # keeps a '[H]' end group as an atom
            offset = chain.GetNumAtoms()
            for atom in piece.GetAtoms():
                atom.SetIntProp(PIECE_PROPERTY, position)
            chain.InsertMol(piece)
            stars = [offset + index for index in _attachments(piece)]
            attachments += stars
            bonded = [offset + _neighbour(piece, star - offset) for star in stars] or [offset]  # one-atom end group
            if position > 0:  # the first [*] (or the one atom) bonds to the chain so far
                chain.AddBond(previous_exit, bonded[0], Chem.BondType.SINGLE)
            previous_exit = bonded[-1]
        for index in sorted(attachments, reverse=True):
            chain.RemoveAtom(index)
        molecule = chain.GetMol()
        # a '[H]' end group becomes an implicit hydrogen of its neighbour, as in 'OCCO'
        try:
            with _quiet_rdkit():
                molecule = Chem.RemoveHs(molecule, sanitize=False)
                Chem.SanitizeMol(molecule)
        except Exception as exception:  # RDKit raises its own sanitisation exception types
            raise PolymerDefinitionError(
                f'{self.name}: joining head {self.head!r}, units {list(labels)} and tail {self.tail!r} gives an '
                f'impossible molecule: {exception}.') from None
        return molecule

    def atom_count(self, n_units: int) -> int:
        """Atoms of the n-mer with its hydrogens."""
        from rdkit import Chem

        return Chem.AddHs(self.molecule(n_units)).GetNumAtoms()

    def n_units_for_atoms(self, n_atoms: int) -> int:
        """The chain length whose n-mer has ``n_atoms`` atoms (with hydrogens); ``ValueError`` naming the polymer
        when no length 1..MAX_UNITS has exactly that many."""
        first = self.atom_count(1)
        if self.sequence is None or len(set(self.sequence)) == 1:  # homopolymer: atoms grow linearly with n
            per_unit = self.atom_count(2) - first
            n_units, remainder = divmod(int(n_atoms) - first, per_unit)
            if remainder == 0 and 0 <= n_units < MAX_UNITS:
                return n_units + 1
        else:
            for n_units in range(1, MAX_UNITS + 1):
                count = self.atom_count(n_units)
                if count == n_atoms:
                    return n_units
                if count > n_atoms:
                    break
        raise ValueError(f'{self.name}: no chain of 1..{MAX_UNITS} units has {n_atoms} atoms (a molecule of another '
                         f'polymer, or a broken one?).')

    @property
    def elements(self) -> tuple[str, ...]:
        """Chemical symbols of the polymer (with hydrogen), in :data:`SUPPORTED_ELEMENTS` order."""
        from rdkit import Chem

        pattern = self.sequence if self.sequence is not None else tuple(self.repeat_units)
        molecule = Chem.AddHs(self.molecule(len(pattern)))
        present = {atom.GetSymbol() for atom in molecule.GetAtoms()}
        return tuple(symbol for symbol in SUPPORTED_ELEMENTS if symbol in present)

    # -- storage ---------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON/YAML-ready dict; :meth:`from_dict` reads it back."""
        values = {'name': self.name, 'repeat_units': dict(self.repeat_units), 'head': self.head, 'tail': self.tail}
        if self.sequence is not None:
            values['sequence'] = list(self.sequence)
        if self.label is not None:
            values['label'] = self.label
        return values

    @classmethod
    def from_dict(cls, values: t.Mapping) -> Polymer:
        """A definition from a dict (a YAML file, an AiiDA ``Dict``); unknown or missing keys are named."""
        if not isinstance(values, t.Mapping):
            raise PolymerDefinitionError(f'a polymer definition is a mapping of {list(_KEYS)}, got {values!r}.')
        unknown = sorted(set(values) - set(_KEYS))
        missing = [key for key in ('repeat_units', 'head', 'tail') if key not in values]
        if unknown or missing:
            raise PolymerDefinitionError(
                f'polymer definition: unknown key(s) {unknown}, missing key(s) {missing}; known: {list(_KEYS)}.')
        values = dict(values)
        if values.get('sequence') is not None and not isinstance(values['sequence'], str):
            values['sequence'] = tuple(values['sequence'])
        return cls(**values)


def _neighbour(molecule, index: int) -> int:
    """The one atom bonded to atom ``index`` (an attachment point)."""
    return molecule.GetAtomWithIdx(index).GetNeighbors()[0].GetIdx()


#: HO-(CH2CH2O)n-H, the paper's polymer and the package's default.
ETHYLENE_GLYCOL = Polymer({'EO': '[*]CCO[*]'}, head='O', tail='[H]', name='ethylene glycol', label='HO-(CH2CH2O){n}-H')
#: HO-(CH2CH(CH3)O)n-H: n = 1 propylene glycol, 2 dipropylene glycol (one of its isomers), 3 tripropylene glycol.
PROPYLENE_GLYCOL = Polymer({'PO': '[*]CC(C)O[*]'}, head='O', tail='[H]', name='propylene glycol',
                           label='HO-(CH2CH(CH3)O){n}-H')
#: CH3O-(CH2CH2O)n-CH3: n = 1 monoglyme (DME), 2 diglyme, 3 triglyme, 4 tetraglyme.
GLYME = Polymer({'EO': '[*]CCO[*]'}, head='CO[*]', tail='C', name='glyme', label='CH3O-(CH2CH2O){n}-CH3')
#: H-[NH-(CH2)5-CO]n-OH: n = 1 is 6-aminohexanoic acid; a polyamide with nitrogen.
NYLON_6 = Polymer({'CL': '[*]NCCCCCC(=O)[*]'}, head='[H]', tail='O', name='nylon-6', label='H-[NH(CH2)5CO]{n}-OH')
#: Built-in definitions by name.
POLYMERS: dict[str, Polymer] = {polymer.name: polymer for polymer in (ETHYLENE_GLYCOL, PROPYLENE_GLYCOL, GLYME,
                                                                     NYLON_6)}
