"""The one-node SLURM cluster with SSH (munged, slurmctld, slurmd, sshd on 127.0.0.1:2222) that
``scripts/local-cluster.sh`` starts from a checkout of the repository, as root."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import typing as t
from pathlib import Path

#: The checkout this package was imported from (the cluster script and the docs live there, not in the wheel).
REPOSITORY = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = REPOSITORY / 'scripts' / 'local-cluster.sh'
CLUSTER_DIR = Path('/tmp/qrnn-cluster-tests')
CLUSTER_HOST = 'qrnn-local-slurm'
SSH_PORT = '2222'


def why_no_cluster() -> str | None:
    """Why the cluster cannot start on this machine (not root, programs missing), or None if it can."""
    if os.geteuid() != 0:
        return 'the local SLURM cluster needs root to start munged, slurmctld, slurmd and sshd'
    missing = [name for name in ('munged', 'slurmctld', 'slurmd', 'sshd')
               if not (shutil.which(name) or Path('/usr/sbin', name).exists())]
    if missing:
        return f'{missing} not installed (scripts/install.sh installs slurm-wlm, munge, openssh-server as root)'
    if not CLUSTER_SCRIPT.is_file():
        return f'{CLUSTER_SCRIPT} not found: the cluster starts from a checkout of the repository'
    return None


def cluster_command(*arguments: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``scripts/local-cluster.sh ARGUMENTS`` with the test cluster's folder and SSH port; raise on failure."""
    environment = {**os.environ, 'QRNN_CLUSTER_DIR': str(CLUSTER_DIR), 'QRNN_CLUSTER_SSH_PORT': SSH_PORT}
    result = subprocess.run(['bash', str(CLUSTER_SCRIPT), *arguments], env=environment, capture_output=True,
                            text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f'local-cluster.sh {" ".join(arguments)} failed:\n{result.stdout}{result.stderr}')
    return result


@contextlib.contextmanager
def local_cluster() -> t.Iterator[str]:
    """Start the cluster, yield its SSH host name, stop it afterwards."""
    cluster_command('start')
    try:
        yield CLUSTER_HOST
    finally:
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            cluster_command('stop', timeout=60)


def slurm(*arguments: str) -> str:
    """Run a SLURM client command (``squeue``, ``scontrol`` ...) against the test cluster; its stdout."""
    environment = {**os.environ, 'SLURM_CONF': str(CLUSTER_DIR / 'slurm' / 'slurm.conf')}
    return subprocess.run(list(arguments), env=environment, capture_output=True, text=True, check=True,
                          timeout=60).stdout


def wait_until_left_the_queue(job_id: str, timeout: float = 120) -> None:
    """Wait until SLURM no longer lists job ``job_id`` (cancelled, timed out, failed or done)."""
    deadline = time.monotonic() + timeout
    while slurm('squeue', '-h', '-j', job_id).strip():
        assert time.monotonic() < deadline, f'SLURM job {job_id} still queued after {timeout} s'
        time.sleep(0.5)


def wait_until_no_process(command_line: str, timeout: float = 120) -> None:
    """Wait until no process whose command line contains ``command_line`` runs: a cancelled job's processes can
    outlive its entry in the queue by a few seconds (SIGTERM, then SIGKILL after SLURM's KillWait)."""
    deadline = time.monotonic() + timeout
    while any(command_line in text for text in _command_lines()):
        assert time.monotonic() < deadline, f'processes of {command_line!r} still run after {timeout} s'
        time.sleep(0.5)


def _command_lines() -> list[str]:
    """The command lines of this machine's processes (the local cluster runs here), arguments joined by spaces."""
    lines = []
    for path in Path('/proc').glob('[0-9]*/cmdline'):
        if path.parent.name == str(os.getpid()):
            continue
        try:
            lines.append(path.read_bytes().replace(b'\0', b' ').decode(errors='replace'))
        except OSError:  # the process ended meanwhile
            continue
    return lines


def wait_for_files(folder: Path, pattern: str, count: int, timeout: float = 120) -> None:
    """Wait until ``folder`` holds ``count`` files matching ``pattern`` (the job's progress on the cluster)."""
    deadline = time.monotonic() + timeout
    while len(list(folder.glob(pattern))) < count:
        assert time.monotonic() < deadline, f'{folder} never held {count} files {pattern}'
        time.sleep(0.2)
