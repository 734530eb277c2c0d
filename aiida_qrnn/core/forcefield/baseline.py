"""Which classical baseline a polymer gets: OPLS-AA for ethylene glycol (the paper's), GAFF2 for any other.

:func:`polymer_system` is what the classical-MD job calls with the cell and the polymer definition: ``None`` for
ethylene glycol (``run_classical_md`` builds its OPLS-AA system itself, as it always has), otherwise the GAFF2
``System`` of the cell (:mod:`.gaff`), one AM1-BCC template fit per polymer and one parameter set per chain length
found in the cell.
"""

from __future__ import annotations

import typing as t
from pathlib import Path

import numpy as np
from ase import Atoms

from aiida_qrnn.core.polymer import ETHYLENE_GLYCOL, Polymer
from aiida_qrnn.core.topology import find_bonds, molecule_ids

if t.TYPE_CHECKING:
    import openmm

__all__ = ('GAFF2', 'OPLS_AA', 'baseline_name', 'polymer_system')

OPLS_AA = 'OPLS-AA'
GAFF2 = 'GAFF2'


def baseline_name(polymer: Polymer) -> str:
    """``'OPLS-AA'`` for ethylene glycol, ``'GAFF2'`` for any other polymer."""
    return OPLS_AA if polymer == ETHYLENE_GLYCOL else GAFF2


def polymer_system(
    atoms: Atoms, polymer: Polymer, *, folder: str | Path, cutoff_nm: float, bonds: np.ndarray | None = None,
) -> openmm.System | None:
    """``None`` for ethylene glycol (OPLS-AA, built by ``run_classical_md``); the GAFF2 system of ``atoms`` otherwise.

    Every molecule of the cell must be an n-mer of ``polymer`` with its atoms in the order of
    ``Chem.AddHs(polymer.molecule(n))`` (what the cell builders of :mod:`aiida_qrnn.core.structures` write); the
    chain length of each molecule is read from its atom count. ``folder`` receives the AmberTools files.

    :raises ValueError: a molecule of the cell is no n-mer of ``polymer`` (the message names the polymer).
    """
    from aiida_qrnn.core.forcefield.gaff import build_gaff2_system, fit_chain_charges, parameterise_chain

    if baseline_name(polymer) == OPLS_AA:
        return None
    bonds = find_bonds(atoms) if bonds is None else bonds
    ids = atoms.arrays['molecule'] if 'molecule' in atoms.arrays else molecule_ids(len(atoms), bonds)
    sizes = np.bincount(np.asarray(ids, dtype=np.int64))
    try:
        lengths = [polymer.n_units_for_atoms(int(size)) for size in sizes]
    except ValueError as exception:
        raise ValueError(f'the cell is not made of {polymer.name} chains: {exception}') from None
    folder = Path(folder)
    # chains of up to 3 units are fitted whole; longer ones take the templates of one trimer fit
    templates = fit_chain_charges(polymer.molecule, folder=folder / 'charges') if max(lengths) > 3 else None
    kinds = {n_units: parameterise_chain(polymer.molecule, n_units, templates=templates if n_units > 3 else None,
                                         folder=folder / f'n{n_units}')
             for n_units in sorted(set(lengths))}
    return build_gaff2_system(atoms, [kinds[n_units] for n_units in lengths], folder=folder / 'cell', bonds=bonds,
                              cutoff_nm=cutoff_nm)
