"""OPLS-AA typing of HO-(CH2CH2O)n-H: types, neutral molecules, and a clear error outside the chemistry."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule

from aiida_qrnn.core.forcefield.parameters import ATOM_TYPES
from aiida_qrnn.core.forcefield.topology import UnsupportedChemistryError, assign_atom_types, build_topology
from aiida_qrnn.core.structures import ethylene_glycol_oligomer
from aiida_qrnn.core.topology import find_bonds


@pytest.mark.parametrize('n_units', range(1, 11))
@pytest.mark.parametrize('hydroxyl', ['diol', 'alcohol'])
def test_types_counts_and_zero_total_charge(n_units, hydroxyl):
    """Two hydroxyls, n-1 ether O, 4 CH2-OH hydrogens, 4(n-1) ether-alpha H; total charge exactly 0."""
    atoms = ethylene_glycol_oligomer(n_units, seed=0)
    topology = build_topology(atoms.numbers, find_bonds(atoms), hydroxyl=hydroxyl)
    types = list(topology.types)
    hydroxyl_o, hydroxyl_h = ('opls_169', 'opls_170') if hydroxyl == 'diol' else ('opls_154', 'opls_155')
    expected = {
        hydroxyl_o: 2, hydroxyl_h: 2, 'opls_157': 2, 'opls_140': 4,
        'opls_180': n_units - 1, 'opls_182': 2 * (n_units - 1), 'opls_185': 4 * (n_units - 1),
    }
    assert {name: types.count(name) for name in expected} == expected
    assert len(types) == sum(expected.values())
    assert topology.charges.sum() == pytest.approx(0.0, abs=1e-12)
    # acyclic chain: angles = sum over atoms of C(degree, 2); 1-4 pairs one per torsion
    degree = np.bincount(topology.bonds.ravel(), minlength=len(atoms))
    assert len(topology.angles) == int((degree * (degree - 1) // 2).sum())
    assert len(topology.pairs_14) == len(topology.torsions)


def test_every_type_is_in_the_table():
    assert all(name in ATOM_TYPES for name in assign_atom_types(*_ethylene_glycol_graph()))


def _ethylene_glycol_graph():
    atoms = ethylene_glycol_oligomer(1)
    return atoms.numbers, find_bonds(atoms)


@pytest.mark.parametrize(
    ('name', 'message'),
    [
        ('CH3OH', 'a carbon must be a CH2'),  # methyl group
        ('CH3CH2OCH3', 'a carbon must be a CH2'),
        ('H2O', 'hydroxyl'),
        ('CH3COOH', 'carbon'),
    ],
)
def test_other_molecules_are_refused_with_the_atom_named(name, message):
    atoms = molecule(name)
    with pytest.raises(UnsupportedChemistryError, match=rf'atom \d+ .*{message}'):
        build_topology(atoms.numbers, find_bonds(atoms))


def test_other_elements_and_rings_are_refused():
    atoms = ethylene_glycol_oligomer(1)
    atoms.numbers[0] = 16  # the hydroxyl O becomes S
    with pytest.raises(UnsupportedChemistryError, match='only H, C and O'):
        build_topology(atoms.numbers, find_bonds(atoms))
    dioxane = _from_smiles('C1COCCO1')  # every atom has a supported environment, but it is a ring
    with pytest.raises(UnsupportedChemistryError, match='rings'):
        build_topology(dioxane.numbers, find_bonds(dioxane))


def _from_smiles(smiles: str) -> Atoms:
    from rdkit import Chem
    from rdkit.Chem import AllChem

    rdkit_molecule = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(rdkit_molecule, randomSeed=1)
    return Atoms(
        numbers=[atom.GetAtomicNum() for atom in rdkit_molecule.GetAtoms()],
        positions=rdkit_molecule.GetConformer().GetPositions(),
    )


def test_unknown_hydroxyl_choice_is_refused():
    with pytest.raises(ValueError, match='hydroxyl'):
        assign_atom_types(np.array([8]), np.zeros((0, 2)), hydroxyl='water')


def test_sodium_ion_named():
    with pytest.raises(UnsupportedChemistryError, match=r'atom 0 \(Z11\(\)\)'):
        build_topology(Atoms('Na').numbers, np.zeros((0, 2), dtype=int))
