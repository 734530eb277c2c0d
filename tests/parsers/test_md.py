"""``MdParser`` on stored outputs of real ``aiida-qrnn-exec md`` runs (see ``fixtures/md/README.md``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from aiida import orm
from aiida.common.links import LinkType

from aiida_qrnn.core.md import MDSettings, MDStatus, read_committee_log, run_md
from aiida_qrnn.core.md.committee import first_exceedance
from aiida_qrnn.parsers.md import MdParser

FIXTURES = Path(__file__).parent / 'fixtures' / 'md'


def test_finished_run_gives_every_output(generate_calc_job_node):
    results, calcfunction = MdParser.parse_from_node(generate_calc_job_node('md', 'finished'), store_provenance=False)
    assert calcfunction.exit_status == 0, calcfunction.exit_message
    log = results['log']
    assert list(log.get_array('step')) == [0, 5, 10, 15, 20]
    # Numbers from finished/md_log.csv: total = potential + kinetic in every row.
    np.testing.assert_allclose(log.get_array('total_energy_eV'),
                               log.get_array('potential_energy_eV') + log.get_array('kinetic_energy_eV'), rtol=1e-12)
    assert results['output_parameters']['checkpoint_step'] == 20
    assert results['structure'].get_ase().get_volume() == pytest.approx(log.get_array('volume_A3')[-1])
    assert results['trajectory'].filename == 'trajectory.h5'


def test_walltime_stop_is_400_with_the_checkpoint_step(generate_calc_job_node):
    results, calcfunction = MdParser.parse_from_node(generate_calc_job_node('md', 'walltime'), store_provenance=False)
    assert calcfunction.exit_status == 400
    assert results['output_parameters']['checkpoint_step'] == 1


def test_killed_job_with_a_checkpoint_is_a_walltime_stop(generate_calc_job_node):
    """No status.json: the scheduler killed it; its structure is the checkpoint's configuration."""
    results, calcfunction = MdParser.parse_from_node(generate_calc_job_node('md', 'killed'), store_provenance=False)
    assert calcfunction.exit_status == 400
    assert results['output_parameters']['checkpoint_step'] == 1
    assert results['output_parameters']['status'] == 'stopped_walltime'
    walltime, _ = MdParser.parse_from_node(generate_calc_job_node('md', 'walltime'), store_provenance=False)
    np.testing.assert_allclose(results['structure'].get_ase().positions, walltime['structure'].get_ase().positions,
                               atol=1e-12)


def test_unstable_run_maps_its_status_onto_5xx(generate_calc_job_node):
    results, calcfunction = MdParser.parse_from_node(generate_calc_job_node('md', 'unstable'), store_provenance=False)
    assert calcfunction.exit_status == 510
    assert 'non-finite' in calcfunction.exit_message
    assert results['output_parameters']['checkpoint_step'] is None


def test_bad_input_is_410_naming_the_setting(generate_calc_job_node):
    _, calcfunction = MdParser.parse_from_node(generate_calc_job_node('md', 'bad_input'), store_provenance=False)
    assert calcfunction.exit_status == 410
    assert 'ensemble' in calcfunction.exit_message


@pytest.fixture(scope='module')
def committee_run(tmp_path_factory) -> Path:
    """Files of a real 20-step QRNN run with a committee (one ethylene glycol in a 9 Å box), as the job leaves them."""
    import torch
    from ase import Atoms

    from aiida_qrnn.core.model.calculator import QRNNCalculator
    from aiida_qrnn.core.model.committee import Committee
    from aiida_qrnn.core.structures import ethylene_glycol_oligomer
    from aiida_qrnn.testing.models import scaled_random_model

    torch.set_num_threads(1)
    molecule = ethylene_glycol_oligomer(1, seed=0)
    box = Atoms(molecule.numbers, molecule.positions - molecule.positions.mean(0) + 4.5, cell=np.eye(3) * 9.0,
                pbc=True)
    settings = MDSettings(n_steps=20, timestep_fs=0.25, trajectory_interval=5, log_interval=5, checkpoint_interval=5,
                          committee_interval=5, max_temperature_K=1e6)
    folder = tmp_path_factory.mktemp('committee_run')
    committee = Committee([scaled_random_model(seed=seed, scale=1.0, long_range=False) for seed in (1, 2)])
    result = run_md(settings, box, QRNNCalculator(scaled_random_model(seed=0, scale=1.0, long_range=False)), folder,
                    rng=np.random.default_rng(0), committee=committee)
    assert result.status == MDStatus.FINISHED
    return folder


def _job(aiida_localhost, folder: Path, monitors: dict[str, dict], skip: tuple[str, ...] = ()) -> orm.CalcJobNode:
    """A stored ``qrnn.md`` job node with ``monitors`` inputs whose retrieved files are ``folder`` less ``skip``."""
    node = orm.CalcJobNode(computer=aiida_localhost, process_type='aiida.calculations:qrnn.md')
    for key, monitor in monitors.items():
        node.base.links.add_incoming(orm.Dict(monitor).store(), LinkType.INPUT_CALC, f'monitors__{key}')
    node.store()
    retrieved = orm.FolderData()
    for path in sorted(folder.iterdir()):
        if path.name not in skip:
            retrieved.base.repository.put_object_from_file(path, path.name)
    retrieved.base.links.add_incoming(node, LinkType.CREATE, 'retrieved')
    retrieved.store()
    return node


def _monitor(threshold: float, quantity: str = 'max_force_deviation') -> dict:
    return {'entry_point': 'qrnn.committee_disagreement', 'kwargs': {'threshold': threshold, 'quantity': quantity}}


@pytest.mark.parametrize('quantity', ['max_force_deviation', 'rho_f'])
def test_job_killed_by_the_committee_monitor_is_a_committee_stop(aiida_localhost, committee_run, quantity):
    """Killed (no status.json) with a committee monitor whose rule holds on committee.csv: exit 0, every output,
    status 'committee_disagreement' at the first step above the threshold."""
    log = read_committee_log(committee_run / 'committee.csv')
    ordered = np.sort(log[quantity])
    threshold = float(ordered[1] + ordered[2]) / 2  # between two rows: exceeded by three of the five
    step, value = first_exceedance(log, quantity, threshold)
    node = _job(aiida_localhost, committee_run, {'committee': _monitor(threshold, quantity)}, skip=('status.json',))
    results, calcfunction = MdParser.parse_from_node(node, store_provenance=False)
    assert calcfunction.exit_status == 0, calcfunction.exit_message
    parameters = results['output_parameters'].get_dict()
    assert parameters['status'] == 'committee_disagreement' and parameters['stopped_by'] == 'monitor'
    assert (parameters['step'], parameters['quantity']) == (step, quantity)
    assert parameters['threshold'] == pytest.approx(threshold, rel=1e-12)
    assert parameters['value'] == pytest.approx(value, rel=1e-12) and parameters['checkpoint_step'] == 20
    assert set(results) == {'trajectory', 'log', 'committee', 'structure', 'output_parameters'}
    np.testing.assert_array_equal(results['committee'].get_array(quantity), log[quantity])


def test_killed_job_whose_committee_agreed_is_still_a_walltime_stop(aiida_localhost, committee_run):
    """The monitor's threshold lies above every row (or there is no monitor): the scheduler killed it, 400."""
    log = read_committee_log(committee_run / 'committee.csv')
    for monitors in ({}, {'committee': _monitor(2 * float(log['max_force_deviation'].max()))}):
        node = _job(aiida_localhost, committee_run, monitors, skip=('status.json',))
        results, calcfunction = MdParser.parse_from_node(node, store_provenance=False)
        assert calcfunction.exit_status == 400
        assert results['output_parameters']['status'] == 'stopped_walltime'


def test_driver_committee_stop_is_exit_status_zero(aiida_localhost, committee_run, tmp_path):
    """status.json of the driver's own stop (MDStatus.COMMITTEE_DISAGREEMENT): exit 0, stopped_by 'driver'."""
    folder = tmp_path / 'stopped'
    shutil.copytree(committee_run, folder)
    status = {'status': int(MDStatus.COMMITTEE_DISAGREEMENT), 'name': 'COMMITTEE_DISAGREEMENT', 'step': 20,
              'time_fs': 5.0, 'message': 'step 20: committee max force deviation exceeds ...'}
    (folder / 'status.json').write_text(json.dumps(status))
    results, calcfunction = MdParser.parse_from_node(_job(aiida_localhost, folder, {}), store_provenance=False)
    assert calcfunction.exit_status == 0
    parameters = results['output_parameters'].get_dict()
    assert parameters['status'] == 'committee_disagreement' and parameters['stopped_by'] == 'driver'
    assert parameters['status_code'] == 2 and parameters['step'] == 20


def test_run_unstable_at_step_zero_reaches_the_user_as_its_status(aiida_localhost, tmp_path):
    """A real run whose initial structure already violates the contact guard stops at step 0 and leaves a
    header-only md_log.csv; the parser exited 310 ("index 1 is out of bounds") on it. Now: 511 and an empty log."""
    from ase import Atoms
    from ase.calculators.lj import LennardJones

    from aiida_qrnn.core.structures import ethylene_glycol_oligomer

    molecule = ethylene_glycol_oligomer(1, seed=0)
    box = Atoms(molecule.numbers, molecule.positions - molecule.positions.mean(0) + 4.5, cell=np.eye(3) * 9.0,
                pbc=True)
    settings = MDSettings(n_steps=10, timestep_fs=0.5, log_interval=5, trajectory_interval=5, checkpoint_interval=5,
                          min_distance_A=1.2, engine='ase')  # C-H bonds (1.09 Å) are already closer
    result = run_md(settings, box, LennardJones(rc=4.0), tmp_path, rng=np.random.default_rng(0))
    assert (result.status, result.step) == (MDStatus.UNSTABLE_CLOSE_CONTACT, 0)
    assert len((tmp_path / 'md_log.csv').read_text().splitlines()) == 1  # the header only

    results, calcfunction = MdParser.parse_from_node(_job(aiida_localhost, tmp_path, {}), store_provenance=False)
    assert calcfunction.exit_status == 511, calcfunction.exit_message
    assert 'closer than 1.2 Å' in calcfunction.exit_message
    assert results['output_parameters']['step'] == 0
    assert results['log'].get_array('step').shape == (0,)


def test_batch_status_rule():
    """Walltime first (the batch must be continued), then any usable replica, else the first instability."""
    from aiida_qrnn.jobs.md import batch_status

    finished, walltime, committee = MDStatus.FINISHED, MDStatus.STOPPED_WALLTIME, MDStatus.COMMITTEE_DISAGREEMENT
    contact, hot = MDStatus.UNSTABLE_CLOSE_CONTACT, MDStatus.UNSTABLE_TEMPERATURE
    assert batch_status([finished, walltime, contact]) == walltime
    assert batch_status([contact, finished, hot]) == finished
    assert batch_status([contact, committee]) == committee
    assert batch_status([committee, finished]) == finished
    assert batch_status([hot, contact]) == hot


def _batch_job(aiida_localhost, folder: Path, skip: tuple[str, ...] = ()) -> orm.CalcJobNode:
    """A stored ``qrnn.md`` job node whose retrieved ``replicas/`` are the replica folders in ``folder``."""
    node = orm.CalcJobNode(computer=aiida_localhost, process_type='aiida.calculations:qrnn.md')
    node.store()
    retrieved = orm.FolderData()
    for path in sorted(folder.rglob('*')):
        relative = path.relative_to(folder).as_posix()
        if path.is_file() and relative not in skip:
            retrieved.base.repository.put_object_from_file(path, f'replicas/{relative}')
    retrieved.base.links.add_incoming(node, LinkType.CREATE, 'retrieved')
    retrieved.store()
    return node


@pytest.fixture(scope='module')
def batch_run(tmp_path_factory) -> Path:
    """A real batch of two argon boxes (Lennard-Jones, torch engine): 'a' finishes 10 steps, 'b' starts with a
    0.3 Å contact and stops at step 0."""
    from ase.build import bulk
    from ase.calculators.lj import LennardJones

    from aiida_qrnn.core.md import run_md_replicas

    sound = bulk('Ar', 'fcc', a=5.26, cubic=True).repeat(2)
    broken = sound.copy()
    broken.positions[1] = broken.positions[0] + [0.3, 0.0, 0.0]
    folder = tmp_path_factory.mktemp('batch_run')
    settings = MDSettings(n_steps=10, timestep_fs=5.0, temperature_K=80.0, log_interval=5, trajectory_interval=5,
                          checkpoint_interval=5)
    results = run_md_replicas(settings, [sound, broken], LennardJones(sigma=3.4, epsilon=0.0104, rc=8.0),
                              [folder / 'a', folder / 'b'], rngs=[np.random.default_rng(0), np.random.default_rng(1)])
    assert [result.status for result in results] == [MDStatus.FINISHED, MDStatus.UNSTABLE_CLOSE_CONTACT]
    return folder


def test_batch_with_a_finished_and_an_unstable_replica_is_zero(aiida_localhost, batch_run):
    results, calcfunction = MdParser.parse_from_node(_batch_job(aiida_localhost, batch_run), store_provenance=False)
    assert calcfunction.exit_status == 0, calcfunction.exit_message
    summary = results['output_parameters'].get_dict()
    assert summary['replicas'] == {'a': 'finished', 'b': 'unstable_close_contact'}
    assert summary['finished'] == ['a'] and summary['unstable'] == ['b'] and summary['checkpoint_step'] is None
    replicas = results['replicas']
    assert set(replicas['a']) == {'trajectory', 'log', 'structure', 'output_parameters'}
    assert list(replicas['a']['log'].get_array('step')) == [0, 5, 10]
    assert replicas['a']['output_parameters']['checkpoint_step'] == 10
    assert replicas['b']['output_parameters']['step'] == 0 and 'structure' not in replicas['b']


def test_killed_batch_is_a_walltime_stop_and_a_replica_without_files_is_300(aiida_localhost, batch_run):
    """No status.json but a checkpoint: the replica was killed by the scheduler, so the job is 400 even though
    another replica is unstable; a replica with neither file makes the job 300, naming it."""
    node = _batch_job(aiida_localhost, batch_run, skip=('a/status.json',))
    results, calcfunction = MdParser.parse_from_node(node, store_provenance=False)
    assert calcfunction.exit_status == 400
    assert results['output_parameters']['stopped_walltime'] == ['a']
    assert results['replicas']['a']['output_parameters']['status'] == 'stopped_walltime'
    node = _batch_job(aiida_localhost, batch_run, skip=('a/status.json', 'a/checkpoint.npz'))
    _, calcfunction = MdParser.parse_from_node(node, store_provenance=False)
    assert calcfunction.exit_status == 300 and "['a']" in calcfunction.exit_message
