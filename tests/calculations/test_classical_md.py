"""``ClassicalMdCalculation`` run for real (``aiida-qrnn-exec classical-md`` with OpenMM) on localhost."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase import Atoms

from aiida_qrnn.calculations.classical_md import ClassicalMdCalculation, validate_parameters, validate_structure
from aiida_qrnn.core.md.trajectory import read_trajectory
from aiida_qrnn.core.structures import density_g_cm3, pack_cell

TINY = {
    'minimize_iterations': 100, 'relax_nvt_steps': 100, 'relax_npt_steps': 300, 'npt_steps': 200, 'nvt_steps': 200,
    'report_interval': 100, 'relax_pressure_bar': 5000.0, 'seed': 3,
}


def test_tiny_cell_gives_trajectories_final_cell_and_summary(classical_md_code, tmp_path):
    cell = pack_cell(1, 20, density_g_cm3=0.5, seed=1)
    results, node = run_get_node(
        ClassicalMdCalculation, code=classical_md_code, structure=orm.StructureData(ase=cell),
        parameters=orm.Dict(TINY),
    )
    assert node.exit_status == 0, node.exit_message
    summary = results['output_parameters'].get_dict()
    final = results['structure'].get_ase()
    assert density_g_cm3(final) == pytest.approx(summary['final_density_g_cm3'])
    assert summary['final_density_g_cm3'] > 0.5
    for link, stage in (('npt_trajectory', 'npt'), ('trajectory', 'nvt')):
        assert results[link].filename == f'{stage}.h5'
        target = tmp_path / f'{stage}.h5'
        with results[link].open(mode='rb') as source:
            target.write_bytes(source.read())
        frames = read_trajectory(target).frames()
        assert len(frames) == 2 and {frame.info['stage'] for frame in frames} == {stage}
    assert np.allclose(frames[-1].positions, final.positions)


def test_chemistry_outside_opls_aa_is_refused_with_410(classical_md_code):
    """A box of methanol: C, H, O pass the validator, the job's typing names the methyl carbon."""
    from ase.build import molecule

    methanol = molecule('CH3OH')
    box = Atoms(cell=np.eye(3) * 12.0, pbc=True)
    for index in range(4):
        copy = methanol.copy()
        copy.positions += 3.0 * np.array([index % 2, index // 2, 1]) + 1.5
        box += copy
    _, node = run_get_node(
        ClassicalMdCalculation, code=classical_md_code, structure=orm.StructureData(ase=box),
        parameters=orm.Dict(TINY),
    )
    assert node.exit_status == ClassicalMdCalculation.exit_codes.ERROR_INVALID_INPUT.status
    assert 'a carbon must be a CH2' in node.exit_message


def test_blow_up_is_exit_500(classical_md_code):
    cell = pack_cell(1, 8, density_g_cm3=0.5, seed=0)
    parameters = {'minimize_iterations': 0, 'relax_nvt_steps': 400, 'relax_npt_steps': 0, 'npt_steps': 0,
                  'nvt_steps': 0, 'timestep_fs': 20.0, 'report_interval': 20, 'cutoff_nm': 0.4}
    _, node = run_get_node(
        ClassicalMdCalculation, code=classical_md_code, structure=orm.StructureData(ase=cell),
        parameters=orm.Dict(parameters),
    )
    assert node.exit_status == ClassicalMdCalculation.exit_codes.ERROR_MD_UNSTABLE.status
    assert 'relax-nvt stage unstable' in node.exit_message


def test_validators_name_the_problem():
    assert 'temperature' in validate_parameters(orm.Dict({'temperature': 300}), None)
    assert validate_parameters(orm.Dict(TINY), None) is None
    open_cluster = orm.StructureData(ase=Atoms('OH2', positions=np.eye(3), cell=np.eye(3) * 5, pbc=False))
    assert 'periodic' in validate_structure(open_cluster, None)
    sodium = orm.StructureData(ase=Atoms('Na', cell=np.eye(3) * 5, pbc=True))
    assert "['Na']" in validate_structure(sodium, None)


def test_a_cell_not_made_of_the_polymer_is_refused():
    """With a polymer input the cell's elements must be the polymer's; the message names the polymer."""
    from aiida_qrnn.calculations.classical_md import validate_inputs, validate_polymer
    from aiida_qrnn.core.polymer import NYLON_6, PROPYLENE_GLYCOL

    nylon = orm.StructureData(ase=pack_cell(1, 2, density_g_cm3=0.3, seed=0, polymer=NYLON_6))
    message = validate_inputs({'structure': nylon, 'polymer': orm.Dict(PROPYLENE_GLYCOL.to_dict())}, None)
    assert "['N']" in message and "'propylene glycol'" in message
    assert validate_inputs({'structure': nylon, 'polymer': orm.Dict(NYLON_6.to_dict())}, None) is None
    assert "['N']" in validate_inputs({'structure': nylon}, None)  # no polymer: ethylene glycol, C, H, O
    assert 'head' in validate_polymer(orm.Dict({'repeat_units': {'PO': '[*]CC(C)O[*]'}, 'tail': '[H]'}), None)
