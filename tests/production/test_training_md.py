"""Training and MD through the daemon of a PostgreSQL + RabbitMQ profile on the local SLURM cluster over SSH.

One chain as a user runs it: xtb labels a small set, ``TrainWorkChain`` trains a tiny QRNN on it (the trainer
stops at its time budget after one batch and the work chain continues the job from its checkpoint), and
``MdBaseWorkChain`` runs a few dozen steps with the trained model; the OPLS-AA baseline runs alongside. Every job
is a real SLURM job of ``aiida-qrnn-exec@cluster``.
"""

from __future__ import annotations

import itertools
import json

import pytest

from aiida_qrnn.testing.production import assert_nothing_lost

#: Tiny model; batches of 8 over the 8 training clusters: one batch per epoch. ``max_time_s`` = 0 stops every
#: job after one batch with a checkpoint, as the scheduler's walltime would, so each epoch is its own job.
TRAINING = {'model': {'charge_hidden': [8], 'energy_hidden': [8], 'dispersion': None},
            'training': {'max_epochs': 2, 'batch_size': 8, 'validation_fraction': 0.2, 'max_time_s': 0.0}}
MD = {'ensemble': 'nvt', 'n_steps': 30, 'timestep_fs': 0.5, 'trajectory_interval': 10, 'log_interval': 10,
      'checkpoint_interval': 10}
OPTIONS = json.dumps({'max_wallclock_seconds': 600})


def assert_slurm_jobs(process: dict) -> None:
    assert process['jobs'], process
    for job in process['jobs']:
        assert job['computer'] == 'cluster' and job['job_id'].isdigit(), job  # a real SLURM job over SSH
        assert job['scheduler_state'] == 'done', job


def assert_md_finished(process: dict, *, model_pk: int | None) -> None:
    assert process['state'] == 'finished' and process['exit_status'] == 0, process
    assert_slurm_jobs(process)
    job = process['jobs'][-1]
    assert job['input_pks'].get('model') == model_pk
    assert process['details']['output_parameters']['step'] == MD['n_steps']
    assert process['details']['log_steps'] == list(range(0, MD['n_steps'] + 1, MD['log_interval']))
    assert all(abs(energy) < 1e9 for energy in process['details']['log_potential_energy_eV'])
    assert {'structure', 'trajectory', 'log', 'output_parameters'} <= set(process['outputs'])


@pytest.fixture(scope='module')
def trained(production) -> dict:
    """Label ten clusters with xtb and train the tiny model on them; the OPLS-AA MD runs meanwhile."""
    labelling = production.submit_xtb(10, seed=401)
    baseline = production.driver('submit-md', 'none', json.dumps(MD), OPTIONS)
    labelled = production.driver('wait', labelling['pk'], 300)
    assert_nothing_lost(labelled)
    training = production.driver('submit-train', labelled['output_pk'], json.dumps(TRAINING), OPTIONS)
    return {'labelled': labelled, 'baseline': production.driver('wait-process', baseline['pk'], 420),
            'training': production.driver('wait-process', training['pk'], 420)}


def test_training_continues_from_its_checkpoint_on_slurm(trained):
    training, labelled_pk = trained['training'], trained['labelled']['output_pk']
    assert training['state'] == 'finished' and training['exit_status'] == 0, training
    assert_slurm_jobs(training)
    jobs = training['jobs']
    assert [job['exit_status'] for job in jobs] == [400] * (len(jobs) - 1) + [0] and len(jobs) >= 2, jobs
    assert jobs[0]['parent_folder'] is None
    for stopped, continued in itertools.pairwise(jobs):
        assert continued['parent_folder'] == stopped['remote_folder']  # the retry, in the provenance
    assert all(job['input_pks']['datasets__labelled'] == labelled_pk for job in jobs)
    assert sum('stopped at the walltime; continuing from its checkpoint' in report
               for report in training['reports']) == len(jobs) - 1
    model = training['details']['model']
    assert set(model['elements']) == {'H', 'C', 'O'} and model['metrics']
    assert training['outputs']['model'] == jobs[-1]['output_pks']['model']


def test_md_with_the_opls_baseline_on_slurm(trained):
    assert_md_finished(trained['baseline'], model_pk=None)


def test_md_with_the_trained_model_on_slurm(production, trained):
    model_pk = trained['training']['outputs']['model']
    submitted = production.driver('submit-md', model_pk, json.dumps(MD), OPTIONS)
    assert_md_finished(production.driver('wait-process', submitted['pk'], 420), model_pk=model_pk)
