"""Failure injection on the production path: each failure ends with every cluster labelled exactly once.

Each test stalls a real xtb job on the local SLURM cluster at its third cluster (two clusters finished, one in
progress, one not started), injects the failure, lets the job go on, and audits the work chain: finished, every
input cluster labelled by exactly one job, and, where the job was lost, a second job on exactly the clusters the
first left without labels, cut out of the input set by the ``select_clusters`` calcfunction.

SLURM enforces time limits in whole minutes, checked every 30 s, so a job with the shortest limit (1 min) is
killed 60-90 s after it starts. That job is started by a module fixture before the first test and checked by
``test_walltime_mid_batch`` after the tests that leave the compute node alone; the ones that take the node down
come after it. Run alone, the walltime test simply waits for its job.
"""

from __future__ import annotations

import re
import time

import pytest

from aiida_qrnn.testing.production import StalledJob, assert_nothing_lost, assert_retry_in_provenance
from aiida_qrnn.testing.slurm import cluster_command, slurm, wait_until_left_the_queue, wait_until_no_process

#: What AiiDA logs on a process when a transport task (upload, update, retrieve) fails and is retried.
TRANSPORT_RETRY = re.compile(r'iteration \d+ of do_\w+ excepted, retrying after \d+ seconds')


@pytest.fixture(scope='module', autouse=True)
def walltime_job(production):
    """A job with a 1 min limit stalled at its third cluster, started first so that its minute overlaps tests."""
    job = production.stalled_job(seed=202, wrapper='xtb-stalling-long', max_wallclock_seconds=60)
    yield job
    job.release()


def test_scancel_mid_batch(production):
    job = production.stalled_job(seed=201)
    slurm('scancel', job.job_id)
    wait_until_left_the_queue(job.job_id)  # released earlier, the stalled cluster could finish before the signal
    wait_until_no_process(str(production.wrappers / 'xtb-stalling '))  # nor while the cancelled job still dies
    job.release()
    audit = production.driver('wait', job.pk, 300)
    assert_nothing_lost(audit, min_jobs=2)
    assert_retry_in_provenance(audit)
    first = audit['calcjobs'][0]
    compact = {key: first[key] for key in ('job_id', 'exit_status', 'scheduler_state', 'labelled_ids', 'failed')}
    # The two clusters done before the cancel are kept, not labelled again (assert_nothing_lost); the rest is
    # resubmitted. In two full-suite runs (not alone) the cancelled job also delivered the stalled third cluster
    # although no process of the wrapper was left before the release; until that race is understood the test
    # accepts both outcomes, which lose and repeat nothing either way.
    assert set(first['input_ids'][:2]) <= set(first['labelled_ids']), compact
    assert len(first['labelled_ids']) in (2, 3) and first['scheduler_state'] == 'done', compact
    assert {failure['reason'] for failure in first['failed']} <= {'interrupted', 'missing_output'}, compact


def test_truncated_output_resubmits_only_that_cluster(production):
    submitted = production.submit_xtb(3, seed=207, code='xtb-truncating@cluster')
    audit = production.driver('wait', submitted['pk'], 300)
    assert_nothing_lost(audit, min_jobs=2)
    assert_retry_in_provenance(audit)
    first, second = audit['calcjobs'][:2]
    assert [failure['reason'] for failure in first['failed']] == ['unreadable_output']
    assert second['input_ids'] == [submitted['input_ids'][1]]


def test_daemon_stopped_while_work_chains_wait(production):
    job = production.stalled_job(seed=205)
    production.stop_daemon()
    job.release()  # the job finishes on the cluster while no daemon watches it
    wait_until_left_the_queue(job.job_id)
    production.start_daemon()
    audit = production.driver('wait', job.pk, 300)
    assert_nothing_lost(audit, min_jobs=1)
    assert [calcjob['job_id'] for calcjob in audit['calcjobs']] == [job.job_id]


def test_ssh_server_down_for_a_while(production):
    """sshd (and its sessions) down while the job runs and ends: AiiDA's transport tasks fail and are retried with
    exponential back-off (2, 4, 8, ... s here); SSH comes back after the first retry is logged and the work chain
    finishes with the one job it had."""
    job = production.stalled_job(seed=206)
    cluster_command('stop-sshd')
    try:
        job.release()
        first_retry = production.driver('wait-report', job.pk, 'excepted, retrying after', 60)['report']
    finally:
        cluster_command('start-sshd')
    assert TRANSPORT_RETRY.search(first_retry), first_retry
    audit = production.driver('wait', job.pk, 300)
    assert_nothing_lost(audit, min_jobs=1)
    assert [calcjob['job_id'] for calcjob in audit['calcjobs']] == [job.job_id]
    assert any(TRANSPORT_RETRY.search(report) for report in audit['reports'])  # the retry, in the process log


def test_walltime_mid_batch(production, walltime_job: StalledJob):
    """SLURM kills the job of the module fixture at its 1 min limit (TIMEOUT); a second job labels the rest."""
    wait_until_left_the_queue(walltime_job.job_id, timeout=240)
    walltime_job.release()
    audit = production.driver('wait', walltime_job.pk, 300)
    assert_nothing_lost(audit, min_jobs=2)
    assert_retry_in_provenance(audit)
    assert audit['calcjobs'][0]['exit_status'] == 410


def test_slurmd_stopped_and_restarted(production):
    """slurmd goes away while the job runs and comes back: the job survives, nothing is recomputed."""
    job = production.stalled_job(seed=203)
    cluster_command('stop-slurmd')
    assert slurm('squeue', '-h', '-j', job.job_id, '-o', '%T').strip() == 'RUNNING'  # slurmctld still says so
    time.sleep(3)  # AiiDA polls squeue (every second here) meanwhile
    cluster_command('start-slurmd')
    job.release()
    audit = production.driver('wait', job.pk, 300)
    assert_nothing_lost(audit, min_jobs=1)
    assert [calcjob['job_id'] for calcjob in audit['calcjobs']] == [job.job_id]


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
