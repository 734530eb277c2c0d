"""The polymer definition: EG reproduces today's molecules exactly, other families build, bad definitions fail
with messages that name the parameter."""

from __future__ import annotations

import numpy as np
import pytest

from aiida_qrnn.core.polymer import (
    ETHYLENE_GLYCOL,
    GLYME,
    MAX_UNITS,
    NYLON_6,
    POLYMERS,
    PROPYLENE_GLYCOL,
    Polymer,
    PolymerDefinitionError,
)
from aiida_qrnn.core.structures import (
    ethylene_glycol_oligomer,
    oligomer,
    oligomer_atom_count,
    oligomer_smiles,
)
from aiida_qrnn.core.topology import find_bonds, molecule_ids


def _formula(atoms) -> dict[str, int]:
    symbols = atoms.get_chemical_symbols()
    return {symbol: symbols.count(symbol) for symbol in sorted(set(symbols))}


def test_ethylene_glycol_smiles_are_todays_for_every_length():
    """The default definition writes HO-(CH2CH2O)n-H exactly as the hand-written 'O' + 'CCO' * n did."""
    for n_units in range(1, 101):
        assert ETHYLENE_GLYCOL.smiles(n_units) == 'O' + 'CCO' * n_units
        assert oligomer_smiles(n_units) == 'O' + 'CCO' * n_units
    assert [oligomer_atom_count(n) for n in (1, 2, 10)] == [10, 17, 73]  # 7n + 3


@pytest.mark.parametrize('n_units', [1, 3])
def test_ethylene_glycol_atoms_are_todays(n_units):
    """Same atoms, same order, same conformer as the RDKit recipe of the hand-written SMILES."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    molecule = Chem.AddHs(Chem.MolFromSmiles('O' + 'CCO' * n_units))
    parameters = AllChem.ETKDGv3()
    parameters.randomSeed = 5
    assert AllChem.EmbedMolecule(molecule, parameters) == 0
    AllChem.MMFFOptimizeMolecule(molecule, maxIters=500)
    reference = molecule.GetConformer().GetPositions()
    atoms = ethylene_glycol_oligomer(n_units, seed=5)
    assert atoms.numbers.tolist() == [atom.GetAtomicNum() for atom in molecule.GetAtoms()]
    centred = atoms.positions - atoms.positions[0]
    assert np.allclose(centred, reference - reference[0], atol=1e-8)


@pytest.mark.parametrize(('polymer', 'n_units', 'smiles', 'formula'), [
    (PROPYLENE_GLYCOL, 1, 'OCC(C)O', {'C': 3, 'H': 8, 'O': 2}),  # propylene glycol
    (PROPYLENE_GLYCOL, 2, 'OCC(C)OCC(C)O', {'C': 6, 'H': 14, 'O': 3}),  # dipropylene glycol
    (GLYME, 1, 'COCCOC', {'C': 4, 'H': 10, 'O': 2}),  # monoglyme (DME)
    (GLYME, 4, 'COCCOCCOCCOCCOC', {'C': 10, 'H': 22, 'O': 5}),  # tetraglyme
    (NYLON_6, 2, 'NCCCCCC(=O)NCCCCCC(=O)O', {'C': 12, 'H': 24, 'N': 2, 'O': 3}),  # a short polyamide
])
def test_other_families_build_whole_molecules(polymer, n_units, smiles, formula):
    assert polymer.smiles(n_units) == smiles
    atoms = oligomer(n_units, polymer, seed=1)
    assert _formula(atoms) == formula
    assert len(atoms) == oligomer_atom_count(n_units, polymer)
    bonds = find_bonds(atoms)
    assert len(bonds) == len(atoms) - 1  # acyclic, every atom bonded
    assert set(molecule_ids(len(atoms), bonds)) == {0}


def test_copolymer_sequence_repeats_its_pattern():
    polymer = Polymer({'EO': '[*]CCO[*]', 'PO': '[*]CC(C)O[*]'}, head='O', tail='[H]', sequence=('EO', 'PO', 'PO'))
    assert polymer.units(5) == ('EO', 'PO', 'PO', 'EO', 'PO')
    assert polymer.smiles(4) == 'OCCOCC(C)OCC(C)OCCO'


def test_definition_round_trips_through_a_dict_and_elements_follow_composition():
    for polymer in POLYMERS.values():
        assert Polymer.from_dict(polymer.to_dict()) == polymer
    assert ETHYLENE_GLYCOL.elements == ('H', 'C', 'O')
    assert NYLON_6.elements == ('H', 'C', 'N', 'O')


@pytest.mark.parametrize(('values', 'message'), [
    ({'repeat_units': {'A': '[*]CCO'}}, r"repeat_units\['A'\] = '\[\*\]CCO' has 1 attachment point"),
    ({'repeat_units': {'A': '[*]C[*]C[*]'}}, r"has 3 attachment point"),
    ({'repeat_units': {'A': '[*]CXO[*]'}}, r"repeat_units\['A'\] = '\[\*\]CXO\[\*\]' is not valid SMILES"),
    ({'repeat_units': {'A': '[*]C(=O)(=O)O[*]'}}, r"repeat_units\['A'\].*Explicit valence"),
    ({'repeat_units': {'A': '[*]CC[Si]O[*]'}}, r"contains \['Si'\]; supported elements"),
    ({'repeat_units': {'A': '[*]=CCO[*]'}}, r'single bond'),
    ({'head': 'CO'}, r"head = 'CO': an end group is one atom"),
    ({'tail': '[*]C[*]'}, r'tail'),
    ({'head': '[O-2]'}, r'impossible molecule: Explicit valence'),
    ({'sequence': ('B',)}, r"sequence \['B'\].*unknown: \['B'\]"),
    ({'repeat_units': {'A': '[*]CCO[*]', 'B': '[*]CC(C)O[*]'}}, r'sequence is required'),
])
def test_bad_definitions_name_the_parameter(values, message):
    definition = {'repeat_units': {'A': '[*]CCO[*]'}, 'head': 'O', 'tail': '[H]', **values}
    with pytest.raises(PolymerDefinitionError, match=message):
        Polymer.from_dict(definition)


def test_bad_definition_files_and_lengths_are_refused():
    with pytest.raises(PolymerDefinitionError, match=r"unknown key\(s\) \['end'\], missing key\(s\) \['tail'\]"):
        Polymer.from_dict({'repeat_units': {'A': '[*]CCO[*]'}, 'head': 'O', 'end': 'C'})
    with pytest.raises(ValueError, match='n_units'):
        GLYME.smiles(0)
    with pytest.raises(ValueError, match='n_units'):
        GLYME.smiles(101)


def test_equal_definitions_hash_equal():
    assert len({GLYME, ETHYLENE_GLYCOL, Polymer.from_dict(GLYME.to_dict())}) == 2



@pytest.mark.parametrize('polymer', list(POLYMERS.values()), ids=list(POLYMERS))
def test_chain_length_is_read_back_from_the_atom_count(polymer):
    for n_units in (1, 2, 3, 17, MAX_UNITS):
        assert polymer.n_units_for_atoms(polymer.atom_count(n_units)) == n_units
    with pytest.raises(ValueError, match=polymer.name):
        polymer.n_units_for_atoms(polymer.atom_count(2) + 1)
    with pytest.raises(ValueError, match=polymer.name):
        polymer.n_units_for_atoms(1)


def test_copolymer_chain_length_from_atom_count():
    copolymer = Polymer({'EO': '[*]CCO[*]', 'PO': '[*]CC(C)O[*]'}, head='O', tail='[H]', sequence=('EO', 'PO'))
    assert [copolymer.n_units_for_atoms(copolymer.atom_count(n)) for n in (1, 2, 3, 4)] == [1, 2, 3, 4]
