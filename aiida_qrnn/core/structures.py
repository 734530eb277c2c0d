"""Ethylene-glycol oligomers HO-(CH2CH2O)n-H and their amorphous periodic cells (paper: "Classical force field
molecular dynamics"): one molecule from ``n`` (RDKit, 3D conformer), cells packed by packmol at a target
density, and the bond graph and molecule ids that go with any cell or cluster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from ase import Atoms

from aiida_qrnn.core.units import AMU_PER_CUBIC_ANGSTROM_TO_G_PER_CM3

__all__ = (
    'PackingError',
    'density_g_cm3',
    'ethylene_glycol_oligomer',
    'find_bonds',
    'molecular_cluster',
    'molecule_ids',
    'molecules_for_atoms',
    'oligomer_atom_count',
    'oligomer_smiles',
    'pack_cell',
)

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
    # Random starting coordinates make the embedding of long chains (up to 100 units) robust and self-avoiding.
    parameters.useRandomCoords = n_units > 10
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


class PackingError(RuntimeError):
    """packmol could not pack the requested cell; the message names the molecule, the count and the density."""


def oligomer_atom_count(n_units: int) -> int:
    """Atoms in HO-(CH2CH2O)n-H: C(2n) H(4n+2) O(n+1)."""
    oligomer_smiles(n_units)
    return 7 * n_units + 3


def molecules_for_atoms(n_units: int, target_atoms: int) -> int:
    """How many n-mers make a cell closest to ``target_atoms`` atoms (at least one)."""
    return max(1, round(target_atoms / oligomer_atom_count(n_units)))


def density_g_cm3(atoms: Atoms) -> float:
    """Mass density of a periodic cell in g/cm^3."""
    return float(atoms.get_masses().sum() / atoms.get_volume() * AMU_PER_CUBIC_ANGSTROM_TO_G_PER_CM3)


def pack_cell(
    n_units: int, n_molecules: int, *, density_g_cm3: float = 0.5, seed: int = 0, tolerance: float = 2.0,
    packmol: str = 'packmol', timeout_s: float = 600.0,
) -> Atoms:
    """A cubic periodic cell of ``n_molecules`` HO-(CH2CH2O)n-H at ``density_g_cm3``, packed by packmol.

    Every molecule is a rigid copy (random orientation and position) of one RDKit conformer selected by ``seed``,
    so a replica is a different ``seed``. Atoms of different molecules are at least ``tolerance`` Å apart, also
    across the periodic boundaries: packmol fills the box shrunk by ``tolerance / 2`` on every side. Molecules
    are whole and contiguous; ``arrays['molecule']`` numbers them 0, 1, ...
    """
    if not isinstance(n_molecules, int | np.integer) or n_molecules < 1:
        raise ValueError(f'n_molecules must be a positive integer, got {n_molecules!r}.')
    if not density_g_cm3 > 0:
        raise ValueError(f'density_g_cm3 must be positive, got {density_g_cm3!r}.')
    template = ethylene_glycol_oligomer(n_units, seed=seed)
    mass_amu = template.get_masses().sum() * n_molecules
    length = (mass_amu * AMU_PER_CUBIC_ANGSTROM_TO_G_PER_CM3 / density_g_cm3) ** (1 / 3)
    centred = template.positions - template.positions.mean(axis=0)
    diameter = 2 * np.linalg.norm(centred, axis=1).max()
    if diameter > np.sqrt(3) * (length - tolerance):
        raise PackingError(
            f'HO-(CH2CH2O){n_units}-H (seed {seed}, {diameter:.1f} Å across) cannot fit in the {length:.1f} Å box of '
            f'{n_molecules} molecules at {density_g_cm3} g/cm^3 in any orientation; pack more molecules.'
        )
    executable = shutil.which(packmol)
    if executable is None:
        raise PackingError(f'packmol executable {packmol!r} not found on PATH; it packs the amorphous cells.')
    margin = tolerance / 2
    with tempfile.TemporaryDirectory(prefix='qrnn-packmol-') as folder:
        folder = Path(folder)
        _write_xyz(folder / 'molecule.xyz', template)
        (folder / 'pack.inp').write_text(
            f'tolerance {tolerance}\nfiletype xyz\noutput packed.xyz\nseed {int(seed) + 1}\n'
            f'structure molecule.xyz\n  number {int(n_molecules)}\n'
            f'  inside box {margin} {margin} {margin} {length - margin} {length - margin} {length - margin}\n'
            f'end structure\n'
        )
        with (folder / 'pack.inp').open() as stdin:
            result = subprocess.run(
                [executable], stdin=stdin, cwd=folder, capture_output=True, text=True, timeout=timeout_s,
                env={**os.environ, 'OMP_NUM_THREADS': '1'},
            )
        output = folder / 'packed.xyz'
        if result.returncode != 0 or not output.is_file() or 'Success!' not in result.stdout:
            tail = (result.stdout + result.stderr).strip().splitlines()[-3:]
            raise PackingError(
                f'packmol failed to pack {n_molecules} HO-(CH2CH2O){n_units}-H at {density_g_cm3} g/cm^3 '
                f'(box {length:.2f} Å, tolerance {tolerance} Å, seed {seed}): {" | ".join(tail)}'
            )
        positions = np.loadtxt(output, skiprows=2, usecols=(1, 2, 3))  # (n_atoms, 3)
    numbers = np.tile(template.numbers, n_molecules)
    atoms = Atoms(numbers=numbers, positions=positions, cell=np.eye(3) * length, pbc=True)
    atoms.arrays['molecule'] = np.repeat(np.arange(n_molecules, dtype=np.int32), len(template))
    atoms.info.update(n_units=int(n_units), n_molecules=int(n_molecules), seed=int(seed))
    return atoms


def _write_xyz(path: Path, atoms: Atoms) -> None:
    lines = [str(len(atoms)), 'template']
    lines += [f'{s:<2} {x:.8f} {y:.8f} {z:.8f}' for s, (x, y, z) in zip(atoms.get_chemical_symbols(), atoms.positions,
                                                                         strict=True)]
    path.write_text('\n'.join(lines) + '\n')


#: Two atoms are bonded when closer than this factor times the sum of their covalent radii (ASE's radii).
BOND_TOLERANCE = 1.2


def find_bonds(atoms: Atoms, *, scale: float = BOND_TOLERANCE) -> np.ndarray:
    """Bonds ``(n_bonds, 2)`` with ``i < j`` from covalent radii, across periodic boundaries for periodic cells.

    Reliable for whole, unperturbed organic molecules: covalent bonds of C, H, O are shorter than 1.2 times the
    sum of radii, hydrogen bonds (H...O ~ 1.8 Å) longer.
    """
    from ase.neighborlist import natural_cutoffs, neighbor_list

    first, second = neighbor_list('ij', atoms, natural_cutoffs(atoms, mult=scale))
    keep = first < second
    bonds = np.stack([first[keep], second[keep]], axis=1).astype(np.int64)  # (n_bonds, 2)
    return bonds[np.lexsort((bonds[:, 1], bonds[:, 0]))]


def molecule_ids(n_atoms: int, bonds: np.ndarray) -> np.ndarray:
    """Molecule index of every atom: connected components of the bond graph, numbered by their first atom."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(bonds)), (bonds[:, 0], bonds[:, 1])), shape=(n_atoms, n_atoms))
    _, labels = connected_components(graph, directed=False)
    # Renumber in order of first appearance, so that contiguous molecules get 0, 1, 2, ...
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(np.argsort(first))
    return order[labels].astype(np.int32)
