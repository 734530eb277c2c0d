"""``MdCalculation`` run for real (``aiida-qrnn-exec md``) on localhost, with the OPLS-AA baseline and a QRNN."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase import Atoms

from aiida_qrnn.calculations.md import MdCalculation
from aiida_qrnn.core.structures import density_g_cm3, pack_cell
from aiida_qrnn.testing.inputs import ENDLESS_MD, SHORT_MD, committee_inputs, committee_monitor
from aiida_qrnn.testing.models import small_qrnn_node
from aiida_qrnn.testing.structures import close_contact


@pytest.fixture(scope='module')
def tiny_cell() -> Atoms:
    """Ten ethylene glycol molecules (100 atoms) at 0.9 g/cm³."""
    return pack_cell(1, 10, density_g_cm3=0.9, seed=1)


@pytest.mark.slow  # ~20 s; the tiny PropertiesWorkChain runs classical NPT jobs in CI
def test_classical_npt_gives_trajectory_log_and_final_cell(md_code, tiny_cell):
    results, node = run_get_node(
        MdCalculation, code=md_code, structure=orm.StructureData(ase=tiny_cell),
        parameters=orm.Dict({**SHORT_MD, 'ensemble': 'npt', 'barostat_tau_fs': 500.0}),
    )
    assert node.exit_status == 0, node.exit_message
    log = results['log']
    assert list(log.get_array('step')) == [0, 5, 10, 15, 20]
    final = results['structure'].get_ase()
    assert density_g_cm3(final) == pytest.approx(log.get_array('density_g_cm3')[-1], rel=1e-9)
    assert log.get_array('density_g_cm3')[-1] != pytest.approx(0.9, abs=1e-6)  # the barostat moved the cell
    assert results['output_parameters']['name'] == 'FINISHED'
    with results['trajectory'].as_path() as path:
        from aiida_qrnn.core.md import read_trajectory

        frames = read_trajectory(path)
    assert list(frames.steps) == [0, 10, 20]
    assert np.allclose(frames.positions[-1], final.positions)


def test_qrnn_walltime_stop_then_continue_from_the_parent_folder(md_code, tiny_cell):
    """walltime_s = 0 stops after one step (400, checkpoint); the child continues to n_steps with the same files."""
    structure = orm.StructureData(ase=tiny_cell)
    model = small_qrnn_node()
    stopped, first = run_get_node(
        MdCalculation, code=md_code, structure=structure, model=model,
        parameters=orm.Dict({**SHORT_MD, 'walltime_s': 0.0}),
    )
    assert first.exit_status == 400, first.exit_message
    assert stopped['output_parameters']['checkpoint_step'] == 1
    results, second = run_get_node(
        MdCalculation, code=md_code, structure=structure, model=model, parameters=orm.Dict(SHORT_MD),
        parent_folder=first.outputs.remote_folder,
    )
    assert second.exit_status == 0, second.exit_message
    assert list(results['log'].get_array('step')) == [0, 5, 10, 15, 20]
    assert np.isfinite(results['log'].get_array('potential_energy_eV')).all()


@pytest.mark.slow  # ~20 s; the 410 mapping is also tested on a stored output (tests/parsers/test_md.py)
def test_bad_input_is_refused(md_code):
    """Methanol passes the AiiDA validators; the job's OPLS-AA typing refuses it (410). Unknown settings: validator."""
    from ase.build import molecule

    box = Atoms(cell=np.eye(3) * 12.0, pbc=True)
    for index in range(4):
        copy = molecule('CH3OH')
        copy.positions += 3.0 * np.array([index % 2, index // 2, 1]) + 1.5
        box += copy
    _, node = run_get_node(MdCalculation, code=md_code, structure=orm.StructureData(ase=box),
                           parameters=orm.Dict(SHORT_MD))
    assert node.exit_status == 410, node.exit_message
    with pytest.raises(ValueError, match='timestep'):
        run_get_node(MdCalculation, code=md_code, structure=orm.StructureData(ase=box),
                     parameters=orm.Dict({'timestep': 1.0}))


def test_monitor_kills_a_disagreeing_run_which_is_parsed_as_a_committee_stop(md_code, tiny_cell):
    """The qrnn.committee_disagreement monitor with a threshold every row exceeds kills the job within seconds; the
    parser still gives trajectory, log, structure, committee and output_parameters, and exit status 0."""
    results, node = run_get_node(MdCalculation, **committee_inputs(md_code, tiny_cell, ENDLESS_MD),
                                 monitors=committee_monitor(1e-9))
    assert node.exit_status == 0, node.exit_message
    assert 'status.json' not in node.outputs.retrieved.base.repository.list_object_names()  # killed, not finished
    parameters = results['output_parameters'].get_dict()
    assert parameters['status'] == 'committee_disagreement' and parameters['stopped_by'] == 'monitor'
    assert parameters['step'] == 0 and parameters['threshold'] == 1e-9 and parameters['value'] > 1e-9
    committee = results['committee']
    assert committee.get_array('step')[0] == 0 and committee.get_array('step')[-1] < ENDLESS_MD['n_steps'] // 100
    assert parameters['value'] == pytest.approx(committee.get_array('max_force_deviation')[0], rel=1e-12)
    assert len(results['structure'].sites) == len(tiny_cell)
    assert results['log'].get_array('step')[0] == 0
    with results['trajectory'].as_path() as path:
        from aiida_qrnn.core.md import read_trajectory

        assert read_trajectory(path).steps[0] == 0


def test_driver_stops_on_committee_disagreement_without_a_monitor(md_code, tiny_cell):
    """committee_max_force_deviation below every deviation: the job itself stops at step 0 with a checkpoint."""
    settings = {**ENDLESS_MD, 'committee_max_force_deviation': 1e-9}
    results, node = run_get_node(MdCalculation, **committee_inputs(md_code, tiny_cell, settings))
    assert node.exit_status == 0, node.exit_message
    parameters = results['output_parameters'].get_dict()
    assert parameters['status'] == 'committee_disagreement' and parameters['stopped_by'] == 'driver'
    assert parameters['step'] == 0 and parameters['checkpoint_step'] == 0
    assert list(results['committee'].get_array('step')) == [0]
    with results['trajectory'].as_path() as path:
        from aiida_qrnn.core.md import read_trajectory

        frames = read_trajectory(path)
    assert list(frames.steps) == [0]
    np.testing.assert_allclose(results['structure'].get_ase().positions, frames.positions[0], atol=1e-12)


def test_committee_inputs_are_validated(md_code, tiny_cell):
    inputs = committee_inputs(md_code, tiny_cell, {**SHORT_MD, 'committee_interval': 5})
    with pytest.raises(ValueError, match='at least two'):
        run_get_node(MdCalculation, **{**inputs, 'committee': {'only': small_qrnn_node(1)}})
    with pytest.raises(ValueError, match='needs a QRNN model'):
        run_get_node(MdCalculation, **{key: value for key, value in inputs.items() if key != 'model'})
    with pytest.raises(ValueError, match='committee_interval > 0'):
        run_get_node(MdCalculation, **{**inputs, 'parameters': orm.Dict(SHORT_MD)})
    with pytest.raises(ValueError, match='threshold'):
        run_get_node(MdCalculation, **inputs, monitors=committee_monitor(-1.0))


def test_continued_committee_run_appends_to_the_parent_committee_log(md_code, tiny_cell):
    """A walltime stop (after step 1) continued from its remote folder: committee.csv of the child has every row."""
    settings = {**SHORT_MD, 'committee_interval': 5}
    stopped, first = run_get_node(MdCalculation,
                                  **committee_inputs(md_code, tiny_cell, {**settings, 'walltime_s': 0.0}))
    assert first.exit_status == 400, first.exit_message
    assert list(stopped['committee'].get_array('step')) == [0]
    results, second = run_get_node(MdCalculation, **committee_inputs(md_code, tiny_cell, settings),
                                   parent_folder=first.outputs.remote_folder)
    assert second.exit_status == 0, second.exit_message
    assert results['output_parameters']['status'] == 'finished'
    assert list(results['committee'].get_array('step')) == [0, 5, 10, 15, 20]
    assert results['committee'].get_array('rho_f')[0] == stopped['committee'].get_array('rho_f')[0]


@pytest.fixture(scope='module')
def replica_cells(tiny_cell) -> dict[str, Atoms]:
    """Two sound 100-atom EG cells and one with a close contact."""
    return {'r00': tiny_cell, 'r01': pack_cell(1, 10, density_g_cm3=0.9, seed=2), 'r02': close_contact(tiny_cell)}


def test_batched_replicas_each_get_their_outputs_and_one_unstable_replica_stops_alone(md_code, replica_cells):
    """Three replicas in one job: r02 (close contact) ends unstable at step 0, r00 and r01 finish; the job is 0
    (its finished replicas are usable). r01 equals the same cell run alone with seed + 1, its seed in the batch."""
    from aiida_qrnn.core.md import read_trajectory

    model = small_qrnn_node()
    structures = {label: orm.StructureData(ase=cell) for label, cell in replica_cells.items()}
    results, node = run_get_node(MdCalculation, code=md_code, structures=structures, model=model,
                                 parameters=orm.Dict(SHORT_MD), seed=orm.Int(7))
    assert node.exit_status == 0, node.exit_message
    summary = results['output_parameters'].get_dict()
    assert summary['status'] == 'finished' and summary['n_replicas'] == 3
    assert summary['finished'] == ['r00', 'r01'] and summary['unstable'] == ['r02']
    assert summary['replicas'] == {'r00': 'finished', 'r01': 'finished', 'r02': 'unstable_close_contact'}
    assert 'trajectory' not in results and 'log' not in results
    replicas = results['replicas']
    broken = replicas['r02']['output_parameters'].get_dict()
    assert broken['status'] == 'unstable_close_contact' and broken['step'] == 0 and broken['checkpoint_step'] is None
    assert 'closer than' in broken['message']
    for label in ('r00', 'r01'):
        cell = replica_cells[label]
        outputs = replicas[label]
        assert outputs['output_parameters']['status'] == 'finished'
        assert outputs['output_parameters']['checkpoint_step'] == SHORT_MD['n_steps']
        assert list(outputs['log'].get_array('step')) == [0, 5, 10, 15, 20]
        final = outputs['structure'].get_ase()
        assert list(final.numbers) == list(cell.numbers)
        np.testing.assert_allclose(final.cell.array, cell.cell.array, atol=1e-12)  # NVT keeps the cell
        with outputs['trajectory'].as_path() as path:
            frames = read_trajectory(path)
        assert list(frames.steps) == [0, 10, 20]
        np.testing.assert_allclose(frames.positions[-1], final.positions, atol=1e-9)
        # Frame 0 is the replica's own input cell (molecules made whole: shifts by whole cell vectors only).
        shifts = (frames.positions[0] - cell.positions) @ np.linalg.inv(cell.cell.array)
        np.testing.assert_allclose(shifts, np.round(shifts), atol=1e-9)
    assert not np.allclose(replicas['r00']['log'].get_array('potential_energy_eV'),
                           replicas['r01']['log'].get_array('potential_energy_eV'))

    alone, single = run_get_node(MdCalculation, code=md_code, structure=structures['r01'], model=model,
                                 parameters=orm.Dict(SHORT_MD), seed=orm.Int(8))
    assert single.exit_status == 0, single.exit_message
    for column in ('potential_energy_eV', 'kinetic_energy_eV', 'conserved_energy_eV'):
        np.testing.assert_allclose(replicas['r01']['log'].get_array(column), alone['log'].get_array(column),
                                   rtol=1e-8, atol=1e-8)


def test_batched_replicas_all_unstable_is_the_first_unstable_code(md_code, tiny_cell):
    structures = {'a': orm.StructureData(ase=close_contact(tiny_cell)),
                  'b': orm.StructureData(ase=close_contact(pack_cell(1, 10, density_g_cm3=0.9, seed=2)))}
    results, node = run_get_node(MdCalculation, code=md_code, structures=structures, model=small_qrnn_node(),
                                 parameters=orm.Dict(SHORT_MD))
    assert node.exit_status == 511, node.exit_message
    assert node.exit_message.startswith('Unstable, atoms too close: a: ') and '; b: ' in node.exit_message
    assert results['output_parameters']['unstable'] == ['a', 'b'] and results['output_parameters']['step'] == 0


def test_batched_inputs_are_validated(md_code, tiny_cell):
    structure = orm.StructureData(ase=tiny_cell)
    model = small_qrnn_node()
    with pytest.raises(ValueError, match='either structure'):
        run_get_node(MdCalculation, code=md_code, structure=structure, structures={'a': structure}, model=model,
                     parameters=orm.Dict(SHORT_MD))
    with pytest.raises(ValueError, match='either structure'):
        run_get_node(MdCalculation, code=md_code, model=model, parameters=orm.Dict(SHORT_MD))
    with pytest.raises(ValueError, match='need a QRNN model'):
        run_get_node(MdCalculation, code=md_code, structures={'a': structure}, parameters=orm.Dict(SHORT_MD))
    open_cell = tiny_cell.copy()
    open_cell.pbc = False
    with pytest.raises(ValueError, match=r'structures\.b: the cell must be periodic'):
        run_get_node(MdCalculation, code=md_code, structures={'a': structure, 'b': orm.StructureData(ase=open_cell)},
                     model=model, parameters=orm.Dict(SHORT_MD))


def test_batched_replicas_with_a_committee_each_log_their_disagreement(md_code, replica_cells):
    inputs = committee_inputs(md_code, replica_cells['r00'], {**SHORT_MD, 'committee_interval': 5})
    del inputs['structure']
    structures = {label: orm.StructureData(ase=replica_cells[label]) for label in ('r00', 'r01')}
    results, node = run_get_node(MdCalculation, **inputs, structures=structures)
    assert node.exit_status == 0, node.exit_message
    rho_f = []
    for label in ('r00', 'r01'):
        committee = results['replicas'][label]['committee']
        assert list(committee.get_array('step')) == [0, 5, 10, 15, 20]
        rho_f.append(committee.get_array('rho_f'))
    assert not np.allclose(rho_f[0], rho_f[1])  # each replica's own configurations
    with pytest.raises(ValueError, match='monitor watches one run'):
        run_get_node(MdCalculation, **inputs, structures=structures, monitors=committee_monitor(0.5))
