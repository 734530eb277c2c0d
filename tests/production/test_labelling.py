"""Labelling through the daemon of a PostgreSQL + RabbitMQ profile on the local SLURM cluster over SSH."""

from __future__ import annotations

import json

from aiida_qrnn.testing.production import assert_nothing_lost


def test_xtb_labelling_end_to_end(production):
    submitted = production.submit_xtb(4, seed=101, batch_size=2)
    audit = production.driver('wait', submitted['pk'], 300)
    assert_nothing_lost(audit, min_jobs=2)
    assert all(calcjob['job_id'].isdigit() for calcjob in audit['calcjobs'])  # real SLURM jobs
    assert all(calcjob['scheduler_state'] == 'done' for calcjob in audit['calcjobs'])


def test_psi4_labelling_end_to_end(production):
    parameters = {'method': 'wb97x-d3bj', 'basis': 'sto-3g'}
    submitted = production.driver('submit', 'psi4', 'psi4@cluster', 1, 7, 1,
                                  json.dumps({'max_wallclock_seconds': 600}), json.dumps(parameters))
    audit = production.driver('wait', submitted['pk'], 300)
    assert_nothing_lost(audit, min_jobs=1)
