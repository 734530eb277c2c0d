"""Failure injection on the production path: each failure ends with every cluster labelled exactly once.

Each test stalls a real xtb job on the local SLURM cluster at its third cluster (two clusters finished, one in
progress, one not started), injects the failure, lets the job go on, and audits the work chain: finished, every
input cluster labelled by exactly one job, and, where the job was lost, a second job on exactly the clusters the
first left without labels, cut out of the input set by the ``select_clusters`` calcfunction.
"""

from __future__ import annotations

import time

import pytest

from tests.production.conftest import assert_nothing_lost, assert_retry_in_provenance, cluster_command, slurm


def test_scancel_mid_batch(production):
    job = production.stalled_job(seed=201)
    slurm('scancel', job.job_id)
    job.release()
    audit = production.driver('wait', job.pk, 300)
    assert_nothing_lost(audit, min_jobs=2)
    assert_retry_in_provenance(audit)
    first = audit['calcjobs'][0]
    assert len(first['labelled_ids']) == 2 and first['scheduler_state'] == 'done'
    assert {failure['reason'] for failure in first['failed']} <= {'interrupted', 'missing_output'}


@pytest.mark.slow
def test_walltime_mid_batch(production):
    job = production.stalled_job(seed=202, max_wallclock_seconds=60)
    deadline = time.monotonic() + 240
    while slurm('squeue', '-h', '-j', job.job_id).strip():
        assert time.monotonic() < deadline, 'SLURM never enforced the 1 min time limit'
        time.sleep(2)
    job.release()
    audit = production.driver('wait', job.pk, 300)
    assert_nothing_lost(audit, min_jobs=2)
    assert_retry_in_provenance(audit)
    assert audit['calcjobs'][0]['exit_status'] == 410


@pytest.mark.slow
def test_slurmd_stopped_and_restarted(production):
    """slurmd goes away while the job runs and comes back: the job survives, nothing is recomputed."""
    job = production.stalled_job(seed=203)
    cluster_command('stop-slurmd')
    time.sleep(5)  # AiiDA polls squeue meanwhile: slurmctld still reports the job as running
    cluster_command('start-slurmd')
    job.release()
    audit = production.driver('wait', job.pk, 300)
    assert_nothing_lost(audit, min_jobs=1)
    assert [calcjob['job_id'] for calcjob in audit['calcjobs']] == [job.job_id]


@pytest.mark.slow
def test_compute_node_fails(production):
    """slurmd dies and the node is declared down (what slurmctld does after SlurmdTimeout): the job is lost with
    NODE_FAIL; once the node is back, the clusters without labels, and only those, run again."""
    job = production.stalled_job(seed=204)
    node = slurm('squeue', '-h', '-j', job.job_id, '-o', '%N').strip()
    cluster_command('stop-slurmd')
    slurm('scontrol', 'update', f'nodename={node}', 'state=down', 'reason=qrnn-failure-injection')
    cluster_command('start-slurmd')
    audit = production.driver('wait', job.pk, 300)
    job.release()
    assert_nothing_lost(audit, min_jobs=2)
    assert_retry_in_provenance(audit)


@pytest.mark.slow
def test_daemon_stopped_while_work_chains_wait(production):
    job = production.stalled_job(seed=205)
    production.stop_daemon()
    job.release()  # the job finishes on the cluster while no daemon watches it
    deadline = time.monotonic() + 120
    while slurm('squeue', '-h', '-j', job.job_id).strip():
        assert time.monotonic() < deadline
        time.sleep(1)
    production.start_daemon()
    audit = production.driver('wait', job.pk, 300)
    assert_nothing_lost(audit, min_jobs=1)
    assert [calcjob['job_id'] for calcjob in audit['calcjobs']] == [job.job_id]


@pytest.mark.slow
def test_ssh_server_down_for_a_while(production):
    """sshd (and its sessions) down for 12 s while the job runs: the transport retries with exponential back-off
    (2, 4, 8 s here) and the work chain finishes with the one job it had."""
    job = production.stalled_job(seed=206)
    cluster_command('stop-sshd')
    job.release()
    time.sleep(12)
    cluster_command('start-sshd')
    audit = production.driver('wait', job.pk, 300)
    if audit['state'] == 'waiting':  # paused after task_maximum_attempts failures: what a user does
        production.verdi('process', 'play', '--all')
        audit = production.driver('wait', job.pk, 300)
    assert_nothing_lost(audit, min_jobs=1)
    assert [calcjob['job_id'] for calcjob in audit['calcjobs']] == [job.job_id]


def test_truncated_output_resubmits_only_that_cluster(production):
    submitted = production.submit_xtb(3, seed=207, code='xtb-truncating@cluster')
    audit = production.driver('wait', submitted['pk'], 300)
    assert_nothing_lost(audit, min_jobs=2)
    assert_retry_in_provenance(audit)
    first, second = audit['calcjobs'][:2]
    assert [failure['reason'] for failure in first['failed']] == ['unreadable_output']
    assert second['input_ids'] == [submitted['input_ids'][1]]
