"""``MdBaseWorkChain``: handlers called directly on stored job nodes, and a real unstable run that is restarted."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import ProcessHandlerReport, run_get_node
from aiida.engine.utils import instantiate_process
from aiida.manage import get_manager

from aiida_qrnn.core.structures import pack_cell
from aiida_qrnn.testing.inputs import ENDLESS_MD, SHORT_MD, committee_inputs, committee_monitor
from aiida_qrnn.workchains.md import MdBaseWorkChain, continued_settings


@pytest.fixture(scope='module')
def tiny_structure(aiida_profile) -> orm.StructureData:
    return orm.StructureData(ase=pack_cell(1, 10, density_g_cm3=0.9, seed=1))


def _failed_job(code, exit_status: int, output_parameters: dict) -> orm.CalcJobNode:
    """A finished ``qrnn.md`` job node with a remote folder and output parameters, as the engine would leave it."""
    node = orm.CalcJobNode(computer=code.computer, process_type='aiida.calculations:qrnn.md')
    node.set_option('resources', {'num_machines': 1})
    node.set_process_state('finished')
    node.set_exit_status(exit_status)
    node.store()
    remote = orm.RemoteData(computer=code.computer, remote_path='/tmp/job')
    remote.base.links.add_incoming(node, LinkType.CREATE, 'remote_folder')
    remote.store()
    parameters = orm.Dict(output_parameters)
    parameters.base.links.add_incoming(node, LinkType.CREATE, 'output_parameters')
    parameters.store()
    return node


def _work_chain(code, structure, settings: dict) -> MdBaseWorkChain:
    inputs = {'md': {'code': code, 'structure': structure, 'parameters': orm.Dict(settings)}}
    process = instantiate_process(get_manager().get_runner(), MdBaseWorkChain, **inputs)
    process.setup()
    return process


def test_continued_settings_keep_the_simulated_time():
    settings = {'n_steps': 100, 'timestep_fs': 2.0}
    continued = continued_settings(settings, step=40, factor=0.5)
    assert continued == {'n_steps': 160, 'timestep_fs': 1.0}
    assert 40 * 2.0 + (continued['n_steps'] - 40) * continued['timestep_fs'] == 100 * 2.0
    assert continued_settings(settings, step=0, factor=0.3)['n_steps'] == 334  # ceil(100 / 0.3)


def test_walltime_handler_continues_from_the_checkpoint(md_code, tiny_structure):
    process = _work_chain(md_code, tiny_structure, SHORT_MD)
    node = _failed_job(md_code, 400, {'status': 1, 'step': 7, 'checkpoint_step': 7})
    report = process.handle_walltime(node)
    assert isinstance(report, ProcessHandlerReport) and report.do_break
    assert process.ctx.inputs.parent_folder.uuid == node.outputs.remote_folder.uuid
    assert process.ctx.inputs.parameters.get_dict() == SHORT_MD


@pytest.mark.parametrize('checkpoint_step', [10, None])
def test_unstable_handler_shrinks_the_timestep(md_code, tiny_structure, checkpoint_step):
    process = _work_chain(md_code, tiny_structure, SHORT_MD)
    node = _failed_job(md_code, 512, {'status': 12, 'step': 13, 'checkpoint_step': checkpoint_step})
    process.handle_unstable(node)
    settings = process.ctx.inputs.parameters.get_dict()
    assert settings['timestep_fs'] == SHORT_MD['timestep_fs'] / 2
    if checkpoint_step is None:  # nothing to continue from: start again, whole run at the smaller step
        assert 'parent_folder' not in process.ctx.inputs and settings['n_steps'] == 2 * SHORT_MD['n_steps']
    else:
        assert process.ctx.inputs.parent_folder.uuid == node.outputs.remote_folder.uuid
        assert settings['n_steps'] == 10 + 2 * (SHORT_MD['n_steps'] - 10)


def test_unstable_run_is_restarted_with_a_smaller_timestep(md_code, tiny_structure):
    """OPLS-AA at 20 fs runs away (X-H vibrations have ~10 fs periods); at 1 fs it finishes the same 200 fs."""
    settings = {**SHORT_MD, 'ensemble': 'nvt', 'timestep_fs': 20.0, 'n_steps': 10, 'trajectory_interval': 100,
                'log_interval': 10, 'checkpoint_interval': 2}
    results, node = run_get_node(MdBaseWorkChain, md={'code': md_code, 'structure': tiny_structure,
                                                      'parameters': orm.Dict(settings)},
                                 timestep_factor=orm.Float(0.05))
    assert node.is_finished_ok, node.exit_message
    jobs = sorted(node.called, key=lambda job: job.ctime)
    assert len(jobs) == 2
    assert 510 <= jobs[0].exit_status <= 512 and jobs[1].exit_status == 0
    assert jobs[1].inputs.parameters['timestep_fs'] == pytest.approx(1.0)
    final = results['output_parameters']
    assert final['time_fs'] == pytest.approx(200.0)
    step = jobs[0].outputs.output_parameters['checkpoint_step']
    if step is not None:
        assert jobs[1].inputs.parent_folder.uuid == jobs[0].outputs.remote_folder.uuid
        assert final['step'] == step + (10 - step) * 20


def test_committee_stop_finishes_ok_without_a_restart(md_code):
    """The monitor kills the first job for committee disagreement: the work chain runs no second job, finishes OK
    and exposes the job's outputs with output_parameters['status'] == 'committee_disagreement'."""
    cell = pack_cell(1, 10, density_g_cm3=0.9, seed=1)
    results, node = run_get_node(MdBaseWorkChain, md={**committee_inputs(md_code, cell, ENDLESS_MD),
                                                      'monitors': committee_monitor(1e-9)})
    assert node.is_finished_ok, node.exit_message
    assert len(node.called) == 1
    assert results['output_parameters']['status'] == 'committee_disagreement'
    assert results['output_parameters']['stopped_by'] == 'monitor'
    assert {'trajectory', 'structure', 'log', 'committee'} <= set(results)
    with pytest.raises(ValueError, match='needs a committee'):
        run_get_node(MdBaseWorkChain, md={'code': md_code, 'structure': orm.StructureData(ase=cell),
                                          'parameters': orm.Dict(SHORT_MD), 'monitors': committee_monitor(0.5)})


def test_unstable_at_step_zero_ends_with_the_unstable_status(md_code, tiny_structure):
    """The input cell already violates the contact guard (C-H bonds closer than min_distance_A): no timestep helps,
    so the work chain stops after one job with its 511 and message (before: 402, an unhandled failure)."""
    settings = {**SHORT_MD, 'min_distance_A': 1.2}
    _, node = run_get_node(MdBaseWorkChain, md={'code': md_code, 'structure': tiny_structure,
                                                'parameters': orm.Dict(settings)})
    assert node.exit_status == MdBaseWorkChain.exit_codes.ERROR_UNSTABLE_CLOSE_CONTACT.status == 511
    assert node.exit_message.startswith('At step 0, before any timestep: Unstable, atoms too close: ')
    assert 'closer than 1.2 Å' in node.exit_message
    assert len(node.called) == 1


def test_walltime_stopped_batch_continues_every_replica_from_its_checkpoint(md_code):
    """walltime_s = 0: each job of three replicas stops after one step (400) and the work chain continues the batch
    from the replicas' checkpoints until step 3; the close-contact replica ends unstable in every job and does not
    keep the others from finishing. The continued replicas equal one uninterrupted batched job."""
    from aiida_qrnn.calculations.md import MdCalculation
    from aiida_qrnn.core.md import read_trajectory
    from aiida_qrnn.testing.models import small_qrnn_node
    from aiida_qrnn.testing.structures import close_contact

    cells = {'r00': pack_cell(1, 10, density_g_cm3=0.9, seed=1), 'r01': pack_cell(1, 10, density_g_cm3=0.9, seed=2)}
    cells['r02'] = close_contact(cells['r00'])
    structures = {label: orm.StructureData(ase=cell) for label, cell in cells.items()}
    model = small_qrnn_node()
    settings = {**SHORT_MD, 'n_steps': 3, 'log_interval': 1, 'trajectory_interval': 1}
    results, node = run_get_node(MdBaseWorkChain, md={'code': md_code, 'structures': structures, 'model': model,
                                                      'parameters': orm.Dict({**settings, 'walltime_s': 0.0})})
    assert node.is_finished_ok, node.exit_message
    jobs = sorted(node.called, key=lambda job: job.ctime)
    assert [job.exit_status for job in jobs] == [400, 400, 0]
    assert jobs[0].outputs.output_parameters['stopped_walltime'] == ['r00', 'r01']
    assert jobs[1].inputs.parent_folder.uuid == jobs[0].outputs.remote_folder.uuid
    summary = results['output_parameters'].get_dict()
    assert summary['finished'] == ['r00', 'r01'] and summary['unstable'] == ['r02']
    assert results['replicas']['r02']['output_parameters']['step'] == 0

    uninterrupted, single = run_get_node(MdCalculation, code=md_code, structures=structures, model=model,
                                         parameters=orm.Dict(settings))
    assert single.exit_status == 0, single.exit_message
    for label in ('r00', 'r01'):
        log, reference = results['replicas'][label]['log'], uninterrupted['replicas'][label]['log']
        assert list(log.get_array('step')) == [0, 1, 2, 3]
        for column in ('potential_energy_eV', 'kinetic_energy_eV', 'conserved_energy_eV'):
            np.testing.assert_allclose(log.get_array(column), reference.get_array(column), rtol=1e-8, atol=1e-8)
        with results['replicas'][label]['trajectory'].as_path() as path:
            frames = read_trajectory(path)
        assert list(frames.steps) == [0, 1, 2, 3]
        np.testing.assert_allclose(frames.positions[-1], results['replicas'][label]['structure'].get_ase().positions,
                                   atol=1e-9)


def test_batch_unstable_everywhere_at_step_zero_is_not_restarted(md_code):
    from aiida_qrnn.testing.models import small_qrnn_node
    from aiida_qrnn.testing.structures import close_contact

    structures = {label: orm.StructureData(ase=close_contact(pack_cell(1, 10, density_g_cm3=0.9, seed=seed)))
                  for label, seed in (('a', 1), ('b', 2))}
    _, node = run_get_node(MdBaseWorkChain, md={'code': md_code, 'structures': structures, 'model': small_qrnn_node(),
                                                'parameters': orm.Dict(SHORT_MD)})
    assert node.exit_status == 511 and len(node.called) == 1
    assert 'a: ' in node.exit_message and 'b: ' in node.exit_message
