"""Small structures with known composition for tests and benchmarks: water and ethylene-glycol clusters, single
molecules, and a quick periodic ethylene-glycol liquid. Seeded; none of them is an equilibrated structure."""

from __future__ import annotations

import math

import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator

from aiida_qrnn.core.structures import ethylene_glycol_oligomer, molecular_cluster

#: Rigid water (O, H, H) in Å.
WATER_POSITIONS = np.array([[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]])


def make_water_clusters(n_clusters: int = 4, *, labelled: bool = False, seed: int = 0) -> list[Atoms]:
    """Clusters of 1..3 water molecules with random rigid placements; random labels when ``labelled``."""
    rng = np.random.default_rng(seed)
    images = []
    for index in range(n_clusters):
        n_molecules = index % 3 + 1
        positions = np.concatenate(
            [WATER_POSITIONS + rng.normal(scale=2.0, size=3) + 3.0 * m for m in range(n_molecules)])
        atoms = Atoms('OH2' * n_molecules, positions=positions)
        atoms.arrays['molecule'] = np.repeat(np.arange(n_molecules, dtype=np.int32), 3)
        atoms.info.update(kind='conformational', source=f'synthetic seed={seed} index={index}')
        if labelled:
            atoms.calc = SinglePointCalculator(
                atoms, energy=rng.normal(), forces=rng.normal(size=(len(atoms), 3)), dipole=rng.normal(size=3),
                charges=rng.normal(size=len(atoms)),
            )
        images.append(atoms)
    return images


def build_ethylene_glycol_clusters(n_clusters: int, seed: int) -> list[Atoms]:
    """Clusters of 1-3 ethylene-glycol molecules (RDKit conformers, random placements, 0.02 Å rattle), seeded."""
    rng = np.random.default_rng(seed)
    images = []
    for index in range(n_clusters):
        n_molecules = index % 3 + 1
        molecules = [ethylene_glycol_oligomer(1, seed=int(rng.integers(1 << 30))) for _ in range(n_molecules)]
        atoms = molecular_cluster(molecules, rng=rng)
        atoms.positions += rng.normal(scale=0.02, size=atoms.positions.shape)
        atoms.info.update(kind='conformational', source=f'demo seed={seed} cluster={index} molecules={n_molecules}')
        images.append(atoms)
    return images


def ethylene_glycol() -> Atoms:
    """HO-CH2-CH2-OH, an MMFF-optimised conformer (RDKit, seed 7)."""
    atoms = Atoms(
        'OCCOHHHHHH',
        positions=[
            (1.2939, -0.7009, 0.1838), (0.5323, 0.4795, -0.0774), (-0.9094, 0.0743, -0.3576),
            (-1.4310, -0.6272, 0.7698), (2.2035, -0.4108, 0.3737), (0.5880, 1.1151, 0.8117),
            (0.9659, 1.0014, -0.9350), (-1.5361, 0.9503, -0.5448), (-0.9654, -0.5982, -1.2192),
            (-0.7417, -1.2835, 0.9950),
        ],
    )
    atoms.info.update(kind='user', source='ethylene glycol')
    return atoms


def hydronium() -> Atoms:
    """H3O+ (total charge +1): a charged cluster for the label engines."""
    atoms = Atoms('OHHH', positions=[(0, 0, 0.1), (0.94, 0, -0.25), (-0.47, 0.814, -0.25), (-0.47, -0.814, -0.25)])
    atoms.info.update(kind='user', source='hydronium', total_charge=1)
    return atoms


def ethylene_glycol_liquid(n_molecules: int, *, density_g_cm3: float = 1.1, seed: int = 0) -> Atoms:
    """``n_molecules`` EG molecules with random orientations on a simple cubic grid in a periodic cubic box sized
    for ``density_g_cm3``: a quick liquid for model tests and benchmarks (the sampling module builds real cells)."""
    if n_molecules < 1:
        raise ValueError(f'n_molecules must be positive, got {n_molecules}.')
    if density_g_cm3 <= 0:
        raise ValueError(f'density_g_cm3 must be positive, got {density_g_cm3}.')
    rng = np.random.default_rng(seed)
    molecule = ethylene_glycol_oligomer(1, seed=seed)
    mass_amu = molecule.get_masses().sum() * n_molecules
    grams = mass_amu * units._amu * 1e3  # ase.units._amu is kg
    length = (grams / density_g_cm3 * 1e24) ** (1.0 / 3.0)  # cm^3 -> Å^3
    per_side = math.ceil(n_molecules ** (1.0 / 3.0))
    spacing = length / per_side
    sites = np.stack(np.meshgrid(*[np.arange(per_side)] * 3, indexing='ij'), axis=-1).reshape(-1, 3)
    sites = sites[rng.permutation(len(sites))[:n_molecules]]
    liquid = Atoms(cell=np.eye(3) * length, pbc=True)
    for index, site in enumerate(sites):
        copy = molecule.copy()
        copy.rotate(rng.uniform(0, 360), rng.normal(size=3), center='COM')
        copy.positions += (site + 0.5) * spacing - copy.get_center_of_mass()
        copy.arrays['molecule'] = np.full(len(copy), index, dtype=np.int32)
        liquid += copy
    return liquid


def close_contact(cell: Atoms) -> Atoms:
    """``cell`` with the first atom of its second molecule 0.3 Å from its first atom: the contact guard fires.

    Meant for ethylene-glycol cells (10 atoms per molecule)."""
    broken = cell.copy()
    broken.positions[10] = broken.positions[0] + [0.3, 0.0, 0.0]
    return broken
