"""The production path with real parts: a PostgreSQL + RabbitMQ profile, its daemon, and the local SLURM cluster
(:mod:`.slurm`). Everything AiiDA does runs in subprocesses (``aiida-qrnn``, ``verdi``, ``verdi run``
:mod:`.production_driver`) with their own ``AIIDA_PATH``, so the calling process never loads the profile."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import textwrap
import typing as t
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .codes import BIN
from .profiles import daemon_running
from .slurm import CLUSTER_DIR, wait_for_files

DRIVER = Path(__file__).with_name('production_driver.py')
#: Executables on the "remote" that stand in for heavier or misbehaving programs around the real xtb.
WRAPPERS = {
    # Jobs that stop at their third cluster while the file ``<wrapper>.stall`` beside the wrapper exists: two
    # clusters are done, one is in progress, the rest not started, whenever a failure is injected. Two of them, so
    # that a long-running injection (the walltime) can stall its job while other tests stall and release theirs.
    **{label: textwrap.dedent('''\
        case " $* " in *" --namespace c000002 "*)
          while [ -e "$0.stall" ]; do sleep 0.2; done ;;
        esac
        exec xtb "$@"''') for label in ('xtb-stalling', 'xtb-stalling-long')},
    # A full disk on the first cluster of the first job that runs it: xtb finishes, its gradient file is cut.
    'xtb-truncating': textwrap.dedent('''\
        xtb "$@"; status=$?
        case " $* " in *" --namespace c000001 "*)
          if mkdir "$(dirname "$0")/truncated.once" 2>/dev/null; then head -c 200 c000001.gradient > cut \\
            && mv cut c000001.gradient; fi ;;
        esac
        exit $status'''),
}


@dataclass
class StalledJob:
    """A labelling work chain whose first job is on SLURM with two clusters done and the third stalled."""

    pk: int
    job_id: str
    remote: Path
    stall: Path

    def release(self) -> None:
        self.stall.unlink(missing_ok=True)


@dataclass
class Production:
    """A production profile in its own ``AIIDA_PATH``, with the SLURM computer ``cluster`` and its codes."""

    name: str
    aiida_path: Path
    workdir: Path
    wrappers: Path

    @property
    def environment(self) -> dict[str, str]:
        return {**os.environ, 'AIIDA_PATH': str(self.aiida_path), 'PATH': f'{BIN}{os.pathsep}{os.environ["PATH"]}',
                'OMP_NUM_THREADS': '1', 'OPENBLAS_NUM_THREADS': '1'}

    def run(self, *arguments: str | Path, check: bool = True, timeout: float = 300,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run([str(argument) for argument in arguments], env=self.environment, capture_output=True,
                                text=True, timeout=timeout, cwd=cwd)
        if check and result.returncode != 0:
            raise AssertionError(f'{arguments} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}')
        return result

    def verdi(self, *arguments: str, **kwargs) -> subprocess.CompletedProcess:
        return self.run(BIN / 'verdi', '-p', self.name, *arguments, **kwargs)

    def driver(self, *arguments: str | int, timeout: float = 600) -> dict:
        """Run a command of :mod:`.production_driver` in ``verdi run``; its JSON result."""
        result = self.verdi('run', str(DRIVER), '--', *(str(argument) for argument in arguments), timeout=timeout)
        line = next(line for line in result.stdout.splitlines() if line.startswith('RESULT '))
        return json.loads(line.removeprefix('RESULT '))

    def start_daemon(self) -> None:
        self.verdi('daemon', 'start', '1')

    def stop_daemon(self) -> None:
        """``verdi daemon stop`` if the daemon runs (on a stopped one it waits the whole ``daemon.timeout``)."""
        if daemon_running(self.aiida_path, self.name):
            self.verdi('daemon', 'stop', check=False)

    def submit_xtb(self, n_clusters: int, seed: int, *, code: str = 'xtb@cluster', batch_size: int | None = None,
                   **options) -> dict:
        options = {'max_wallclock_seconds': 600, **options}
        return self.driver('submit', 'xtb', code, n_clusters, seed, batch_size or n_clusters, json.dumps(options))

    def stalled_job(self, seed: int, n_clusters: int = 4, *, wrapper: str = 'xtb-stalling', **options) -> StalledJob:
        """Submit ``n_clusters`` to ``<wrapper>@cluster`` and return once the first two have their output."""
        stall = self.wrappers / f'{wrapper}.stall'
        stall.touch()
        submitted = self.submit_xtb(n_clusters, seed, code=f'{wrapper}@cluster', **options)
        job = self.driver('wait-job', submitted['pk'], 120)
        remote = Path(job['remote'])
        wait_for_files(remote, 'c00000[01].gradient', 2)
        return StalledJob(submitted['pk'], job['job_id'], remote, stall)


@contextlib.contextmanager
def production_profile(host: str, aiida_path: Path) -> t.Iterator[Production]:
    """A production profile with the SLURM computer ``cluster`` on ``host`` (codes xtb, psi4, aiida-qrnn-exec and
    the wrappers of :data:`WRAPPERS`) and its daemon running; deleted afterwards with its database and queues."""
    name = f'qrnn-prod-{secrets.token_hex(3)}'
    wrappers = CLUSTER_DIR / f'bin-{name}'
    profile = Production(name, aiida_path, CLUSTER_DIR / f'work-{name}', wrappers)
    wrappers.mkdir(parents=True)
    for label, body in WRAPPERS.items():
        (wrappers / label).write_text(f'#!/bin/sh\n{body}\n')
        (wrappers / label).chmod(0o755)
    try:
        profile.run(BIN / 'aiida-qrnn', '-p', name, 'setup', '--production')
        profile.run(BIN / 'aiida-qrnn', '-p', name, 'computer', 'add-slurm', 'cluster', '--host', host,
                    '--workdir', profile.workdir, '--partition', 'debug',
                    '--code', f'aiida-qrnn-exec={BIN / "aiida-qrnn-exec"}')
        # Short transport retries (default: 20 s doubling, 5 attempts) keep the SSH-outage test short; the daemon
        # commands wait longer than their default 2 s for an answer from a daemon on a busy machine (as the docs say).
        profile.verdi('config', 'set', 'transport.task_retry_initial_interval', '2')
        profile.verdi('config', 'set', 'daemon.timeout', '30')
        setup = profile.aiida_path / 'setup_codes.py'
        setup.write_text(textwrap.dedent(f'''
            from aiida import orm
            computer = orm.load_computer('cluster')
            computer.set_minimum_job_poll_interval(1)
            for label in {sorted(WRAPPERS)!r}:
                orm.InstalledCode(label=label, computer=computer, filepath_executable='{wrappers}/' + label,
                                  default_calc_job_plugin='qrnn.xtb').store()
        '''))
        profile.verdi('run', str(setup))
        profile.start_daemon()
        yield profile
    finally:
        profile.stop_daemon()
        profile.run(BIN / 'verdi', 'profile', 'delete', name, '--delete-data', '--force', check=False)
        shutil.rmtree(profile.workdir, ignore_errors=True)
        shutil.rmtree(wrappers, ignore_errors=True)


def assert_nothing_lost(audit: dict, *, min_jobs: int = 1) -> None:
    """Finished; every input cluster labelled exactly once over all jobs; the output carries them all."""
    assert audit['state'] == 'finished' and audit['exit_status'] == 0, audit
    labelled = Counter(cluster_id for calcjob in audit['calcjobs'] for cluster_id in calcjob['labelled_ids'])
    assert set(labelled) == set(audit['input_ids']), 'a cluster was lost'
    assert max(labelled.values()) == 1, f'clusters labelled twice: {[i for i, n in labelled.items() if n > 1]}'
    assert sorted(audit['output_ids']) == sorted(audit['input_ids'])
    assert len(audit['calcjobs']) >= min_jobs, audit['calcjobs']


def assert_retry_in_provenance(audit: dict) -> None:
    """The second job got exactly the clusters the first left without labels, cut out by ``select_clusters``."""
    first, second = audit['calcjobs'][:2]
    assert first['exit_status'] != 0
    assert set(second['input_ids']) == set(first['input_ids']) - set(first['labelled_ids'])
    assert second['input_created_by'] == 'select_clusters'
