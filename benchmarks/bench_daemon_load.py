"""Load on the production path: N small labelling work chains submitted to the daemon of a PostgreSQL + RabbitMQ
profile, each labelling one ethylene-glycol cluster with GFN2-xTB as its own SLURM job over SSH. They are submitted
in waves, at most ``--max-active`` unfinished at a time, as a submission controller does (``--max-active 0``: all at
once; on two cores, 1 000 at once kept the daemon workers so busy starting processes that sshd dropped their
stalled SSH handshakes and no job finished in 17 min: see docs/production.md).

Reports whether all finished and none was lost (every cluster labelled exactly once), the wall time from the
first submission to the last state change, and the engine time per process (that wall time divided by the number
of processes: work chains and CalcJobs). Needs root, PostgreSQL and RabbitMQ on 127.0.0.1 and the packages of
``scripts/local-cluster.sh``, which this script starts (and stops when it started it).

Every labelling work chain waits on two nested processes (XtbBaseWorkChain, XtbCalculation), and a waiting process
keeps its daemon-worker slot: with more top-level work chains than slots (200 per worker by default) the slots can
all hold parents whose children then wait in RabbitMQ forever. ``--slots`` therefore raises
``daemon.worker_process_slots`` on the benchmark's profile to cover three processes per job.

    .venv/bin/python benchmarks/bench_daemon_load.py --jobs 1000 --workers 2 --max-active 100
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from aiida_qrnn.testing.codes import BIN
from aiida_qrnn.testing.production import Production
from aiida_qrnn.testing.slurm import CLUSTER_DIR, CLUSTER_SCRIPT

REPOSITORY = Path(__file__).resolve().parent.parent

RESULTS = REPOSITORY / 'benchmarks' / 'results'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--jobs', type=int, default=1000)
    parser.add_argument('--workers', type=int, default=1, help='daemon workers')
    parser.add_argument('--slots', type=int, default=None,
                        help='daemon.worker_process_slots per worker (default: 3 * unfinished jobs / workers, >= 200)')
    parser.add_argument('--max-active', type=int, default=100,
                        help='submit in waves: at most this many unfinished labelling work chains (0: all at once)')
    parser.add_argument('--timeout', type=float, default=6 * 3600)
    arguments = parser.parse_args()
    in_flight = arguments.max_active or arguments.jobs
    slots = arguments.slots or max(200, -(-3 * in_flight // arguments.workers))

    environment = {**os.environ, 'QRNN_CLUSTER_DIR': str(CLUSTER_DIR), 'QRNN_CLUSTER_SSH_PORT': '2222'}
    controller = CLUSTER_DIR / 'slurmctld.pid'
    cluster_was_running = controller.exists() and Path('/proc', controller.read_text().strip()).exists()
    subprocess.run(['bash', str(CLUSTER_SCRIPT), 'start'], env=environment, check=True, capture_output=True)
    name = f'qrnn-bench-{secrets.token_hex(3)}'
    profile = Production(name, Path(tempfile.mkdtemp(prefix='aiida-bench-')), CLUSTER_DIR / f'work-{name}',
                         Path(tempfile.mkdtemp()))
    try:
        profile.run(BIN / 'aiida-qrnn', '-p', name, 'setup', '--production')
        profile.run(BIN / 'aiida-qrnn', '-p', name, 'computer', 'add-slurm', 'cluster', '--host', 'qrnn-local-slurm',
                    '--workdir', profile.workdir, '--partition', 'debug')
        setup = profile.aiida_path / 'poll.py'
        setup.write_text("from aiida import orm\norm.load_computer('cluster').set_minimum_job_poll_interval(1)\n")
        profile.verdi('run', str(setup))
        profile.verdi('config', 'set', 'daemon.worker_process_slots', str(slots))
        profile.verdi('config', 'set', 'daemon.timeout', '30')  # the default 2 s is short for a busy daemon
        profile.verdi('daemon', 'start', str(arguments.workers))
        pks = profile.aiida_path / 'pks.json'
        start = time.perf_counter()
        profile.driver('submit-many', arguments.jobs, 9001, pks, arguments.max_active, timeout=arguments.timeout)
        summary = profile.driver('wait-many', pks, arguments.timeout, timeout=arguments.timeout + 600)
        elapsed = time.perf_counter() - start
    finally:
        profile.stop_daemon()
        profile.run(BIN / 'verdi', 'profile', 'delete', name, '--delete-data', '--force', check=False)
        shutil.rmtree(profile.workdir, ignore_errors=True)
        if not cluster_was_running:
            subprocess.run(['bash', str(CLUSTER_SCRIPT), 'stop'], env=environment, capture_output=True)

    labelled = Counter(summary.pop('labelled_ids'))
    inputs = summary.pop('input_ids')
    result = {
        'machine': f'{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores '
                   '(shared with other work: wall times are upper bounds)',
        'jobs': arguments.jobs, 'max_active': arguments.max_active or None, 'daemon_workers': arguments.workers,
        'daemon_worker_process_slots': slots,
        'broker_and_storage': 'RabbitMQ + PostgreSQL (core.psql_dos)',
        'cluster': 'one-node SLURM over SSH (core.ssh_async), same machine',
        'all_finished_ok': summary['finished_ok'] == arguments.jobs,
        'none_lost': set(labelled) == set(inputs), 'none_twice': max(labelled.values(), default=0) == 1,
        'elapsed_seconds_with_submission': elapsed, **summary,
    }
    (RESULTS / f'daemon_load_{arguments.jobs}.json').write_text(json.dumps(result, indent=2) + '\n')
    print(json.dumps(result, indent=2))


if __name__ == '__main__':
    main()
