"""``TrainCalculation`` run for real (``aiida-qrnn-exec train``) on localhost through AiiDA."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_qrnn.calculations.train import TrainCalculation
from aiida_qrnn.core.training import InMemoryClusters, predict
from aiida_qrnn.core.training.trainer import error_metrics
from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.testing.models import TINY_CONFIG, teacher_labelled_clusters, tiny_model

TINY_TRAINING = {'max_epochs': 2, 'batch_size': 4, 'validation_fraction': 0.25, 'seed': 3}


@pytest.fixture(scope='module')
def datasets(aiida_profile) -> dict[str, ClusterSetData]:
    """Two teacher-labelled sets (12 + 8 clusters): the job concatenates them in key order."""
    arrays = teacher_labelled_clusters(20)
    return {'first': ClusterSetData.from_arrays(arrays.select(range(12)), level_of_theory='teacher'),
            'second': ClusterSetData.from_arrays(arrays.select(range(12, 20)), level_of_theory='teacher')}


def test_model_node_reproduces_its_metrics(train_code, datasets):
    """The stored model, evaluated on the validation clusters the job reports, gives the model's metrics."""
    parameters = orm.Dict({'model': TINY_CONFIG.to_dict(), 'training': TINY_TRAINING})
    results, node = run_get_node(TrainCalculation, code=train_code, datasets=datasets, parameters=parameters)
    assert node.exit_status == 0, node.exit_message
    model_node = results['model']
    assert {link.link_label for link in node.base.links.get_incoming().all()} >= {'datasets__first',
                                                                                    'datasets__second'}
    assert results['output_parameters']['epochs'] == 2
    assert list(results['metrics'].get_array('epoch')) == [0.0, 1.0]
    assert set(results['plots']) == {'learning_curves', 'parity'}

    from aiida_qrnn.core.model.calculator import load_model

    arrays = teacher_labelled_clusters(20)  # the same clusters, in the order the job concatenated them
    validation = results['split'].get_array('validation')
    assert len(validation) == 5 and len(results['split'].get_array('train')) == 15
    recomputed = error_metrics(predict(load_model(model_node), InMemoryClusters(arrays), validation))
    for name in ('energy_mae', 'forces_rmse', 'charges_mae', 'dipole_rmse'):
        assert recomputed[name] == pytest.approx(model_node.metrics[name], rel=1e-9), name
    assert model_node.metrics == results['output_parameters']['validation']


@pytest.mark.slow
def test_transfer_learning_and_bad_input(train_code, datasets):
    """A parent model is staged (its config wins); unknown settings are refused before submission."""
    from aiida_qrnn.data.model import ModelData

    parent = tiny_model(5)
    parent_node = ModelData(parent.state_dict(), config=TINY_CONFIG.to_dict(), elements=list(TINY_CONFIG.elements))
    parameters = orm.Dict({'training': {**TINY_TRAINING, 'max_epochs': 1}})
    results, node = run_get_node(TrainCalculation, code=train_code, datasets={'first': datasets['first']},
                                 parameters=parameters, parent_model=parent_node)
    assert node.exit_status == 0, node.exit_message
    assert results['output_parameters']['transfer_learning'] is True
    assert results['model'].config == parent_node.config
    with pytest.raises(ValueError, match='unknown training setting'):
        run_get_node(TrainCalculation, code=train_code, datasets=datasets,
                     parameters=orm.Dict({'training': {'epochs': 3}}))


@pytest.mark.slow
def test_trains_on_xtb_labelled_ethylene_glycol_clusters(train_code, aiida_code_installed):
    """The demo's path: xtb labels (XtbCalculation) -> TrainCalculation with a small model; elements from the data."""
    from aiida_qrnn.calculations.xtb import XtbCalculation
    from aiida_qrnn.testing.structures import build_ethylene_glycol_clusters

    xtb = aiida_code_installed(default_calc_job_plugin='qrnn.xtb', filepath_executable=shutil.which('xtb'))
    labelled, node = run_get_node(XtbCalculation, code=xtb,
                                  clusters=ClusterSetData.from_atoms(build_ethylene_glycol_clusters(8, seed=0)))
    assert node.exit_status == 0, node.exit_message
    parameters = {'model': {'charge_hidden': [16], 'energy_hidden': [16], 'dispersion': None},
                  'training': {'max_epochs': 3, 'batch_size': 4, 'validation_fraction': 0.25}}
    results, job = run_get_node(TrainCalculation, code=train_code, datasets={'demo': labelled['clusters']},
                                parameters=orm.Dict(parameters))
    assert job.exit_status == 0, job.exit_message
    assert results['model'].elements == ['H', 'C', 'O']
    assert results['model'].metrics['forces_mae'] > 0


def _single_process_metrics(config: dict) -> dict[str, float]:
    """Validation metrics of the model one process trains in-process, as the job would (seed, split, data)."""
    import tempfile

    import torch

    from aiida_qrnn.core.model.qrnn import QRNN
    from aiida_qrnn.core.training import Trainer, TrainingConfig, split_indices

    settings = TrainingConfig.from_dict(config)
    source = InMemoryClusters(teacher_labelled_clusters(20))  # the datasets in key order
    train, validation = split_indices(len(source), settings.validation_fraction, settings.seed)
    torch.manual_seed(settings.seed)
    with tempfile.TemporaryDirectory() as directory:
        trainer = Trainer(QRNN(TINY_CONFIG), source, train, validation, settings, directory)
        trainer.fit()
    return error_metrics(predict(trainer.trained_model(), source, validation))


def _assert_metrics_match(actual: dict, expected: dict) -> None:
    for name in ('energy_mae', 'forces_rmse', 'charges_mae', 'dipole_rmse'):
        assert actual[name] == pytest.approx(expected[name], rel=1e-9), name


@pytest.mark.slow
def test_two_processes_on_localhost_train_the_model_of_one(train_code, datasets):
    """resources with 2 MPI processes: the job starts 2 ranks with torchrun and ends with the single-process model."""
    parameters = orm.Dict({'model': TINY_CONFIG.to_dict(), 'training': TINY_TRAINING})
    options = {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 2}}
    results, node = run_get_node(TrainCalculation, code=train_code, datasets=datasets, parameters=parameters,
                                 metadata={'options': options})
    assert node.exit_status == 0, node.exit_message
    assert results['output_parameters']['processes'] == 2
    _assert_metrics_match(results['model'].metrics, _single_process_metrics(TINY_TRAINING))


@pytest.mark.slow
def test_two_tasks_through_srun_on_the_local_slurm_cluster(local_cluster, datasets):
    """A SLURM computer (SSH + sbatch, one node): 2 tasks, ranks started by srun, the single-process model."""
    from aiida_qrnn.computers import add_slurm_computer
    from aiida_qrnn.testing.slurm import CLUSTER_DIR

    executable = shutil.which('aiida-qrnn-exec', path=str(Path(sys.executable).parent))
    computer, _ = add_slurm_computer('slurm-train', local_cluster, str(CLUSTER_DIR / 'work'), partition='debug',
                                     executables={'aiida-qrnn-exec': executable}, detect_executables=False)
    code = orm.load_code(f'aiida-qrnn-exec@{computer.label}')
    parameters = orm.Dict({'model': TINY_CONFIG.to_dict(), 'training': TINY_TRAINING})
    options = {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 2}, 'max_wallclock_seconds': 600}
    results, node = run_get_node(TrainCalculation, code=code, datasets=datasets, parameters=parameters,
                                 metadata={'options': options})
    assert node.exit_status == 0, node.exit_message
    assert node.get_job_id().isdigit()  # a real SLURM job
    assert results['output_parameters']['processes'] == 2
    _assert_metrics_match(results['model'].metrics, _single_process_metrics(TINY_TRAINING))


def test_processes_from_the_resources_reach_the_command_line(train_code, datasets, tmp_path, monkeypatch):
    """A dry run: 2 MPI processes on a direct-scheduler computer start the job with torchrun, 1 with nothing."""
    monkeypatch.chdir(tmp_path)  # the dry run writes submit_test/ here
    parameters = orm.Dict({'model': TINY_CONFIG.to_dict(), 'training': TINY_TRAINING})
    scripts = {}
    for processes in (1, 2):
        options = {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': processes}}
        run_get_node(TrainCalculation, code=train_code, datasets=datasets, parameters=parameters,
                     metadata={'options': options, 'dry_run': True, 'store_provenance': False})
        (folder,) = set((tmp_path / 'submit_test').iterdir()) - set(scripts.values())
        scripts[processes] = folder
    assert "'--processes' '2' '--launcher' 'torchrun'" in (scripts[2] / '_aiidasubmit.sh').read_text()
    assert '--processes' not in (scripts[1] / '_aiidasubmit.sh').read_text()
