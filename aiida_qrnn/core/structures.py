"""Ethylene-glycol oligomers HO-(CH2CH2O)n-H as ASE ``Atoms``, built with RDKit.

The sampling issue extends this module with long chains and periodic cells; the functions here are what the
demo and the tests need now: one molecule from ``n``, and small molecular clusters around it.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

__all__ = ('ethylene_glycol_oligomer', 'molecular_cluster', 'oligomer_smiles')

MAX_UNITS = 100


def oligomer_smiles(n_units: int) -> str:
    """SMILES of HO-(CH2CH2O)n-H: ``OCCO`` for n = 1, ``OCCOCCO`` for n = 2, ..."""
    if not isinstance(n_units, int | np.integer) or not 1 <= n_units <= MAX_UNITS:
        raise ValueError(f'n_units must be an integer in 1..{MAX_UNITS}, got {n_units!r}.')
    return 'O' + 'CCO' * n_units


def ethylene_glycol_oligomer(n_units: int = 1, *, seed: int = 0) -> Atoms:
    """One HO-(CH2CH2O)n-H molecule with hydrogens, a 3D conformer from RDKit's ETKDG and an MMFF relaxation.

    ``seed`` selects the conformer reproducibly. ``arrays['molecule']`` is all zeros (one molecule).
    """
    from rdkit import Chem
    from rdkit.Chem import AllChem

    molecule = Chem.AddHs(Chem.MolFromSmiles(oligomer_smiles(n_units)))
    parameters = AllChem.ETKDGv3()
    parameters.randomSeed = int(seed)
    if AllChem.EmbedMolecule(molecule, parameters) != 0:
        raise RuntimeError(f'RDKit could not embed HO-(CH2CH2O){n_units}-H with seed {seed}.')
    AllChem.MMFFOptimizeMolecule(molecule, maxIters=500)
    positions = molecule.GetConformer().GetPositions()
    atoms = Atoms(numbers=[atom.GetAtomicNum() for atom in molecule.GetAtoms()], positions=positions)
    atoms.positions -= atoms.get_center_of_mass()
    atoms.arrays['molecule'] = np.zeros(len(atoms), dtype=np.int32)
    return atoms


def molecular_cluster(
    molecules: list[Atoms], *, min_distance: float = 2.0, spread: float = 4.0, rng: np.random.Generator,
    max_tries: int = 1000,
) -> Atoms:
    """Place ``molecules`` with random rotations around the first one, no two atoms closer than ``min_distance`` Å.

    Each molecule is placed at a random direction at growing distance until it clashes with nothing; the
    ``molecule`` array numbers the molecules 0, 1, ...
    """
    placed = molecules[0].copy()
    placed.arrays['molecule'] = np.zeros(len(placed), dtype=np.int32)
    for index, molecule in enumerate(molecules[1:], start=1):
        for attempt in range(max_tries):
            candidate = molecule.copy()
            candidate.rotate(rng.uniform(0, 360), rng.normal(size=3), center='COM')
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            distance = spread + 0.1 * attempt
            candidate.positions += placed.get_center_of_mass() + direction * distance - candidate.get_center_of_mass()
            gaps = np.linalg.norm(candidate.positions[:, None, :] - placed.positions[None, :, :], axis=-1)
            if gaps.min() >= min_distance:
                candidate.arrays['molecule'] = np.full(len(candidate), index, dtype=np.int32)
                placed += candidate
                break
        else:
            raise RuntimeError(f'could not place molecule {index} without a clash in {max_tries} tries.')
    return placed
