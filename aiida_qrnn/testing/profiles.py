"""``aiida-qrnn`` and ``verdi`` run as a user runs them: in subprocesses with their own ``AIIDA_PATH``, so the
pytest process never loads the profile they make. :class:`EmbeddedProfile` adds the daemon tests' routine."""

from __future__ import annotations

import os
import socket
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

from .codes import BIN


def run(arguments: list[str | Path], aiida_path: Path, check: bool = True,
        timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``arguments`` with ``AIIDA_PATH=aiida_path`` and this venv first on ``PATH``; raise on failure if
    ``check``, with the command's output in the message."""
    environment = {**os.environ, 'AIIDA_PATH': str(aiida_path), 'PATH': f'{BIN}{os.pathsep}{os.environ["PATH"]}'}
    result = subprocess.run(arguments, env=environment, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f'{arguments} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}')
    return result


def reachable(port: int) -> bool:
    """Whether a service listens on 127.0.0.1:``port`` (PostgreSQL 5432, RabbitMQ 5672)."""
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(('127.0.0.1', port)) == 0


def daemon_running(aiida_path: Path, profile: str = 'qrnn') -> bool:
    """Whether the daemon of ``profile`` in ``aiida_path`` has its PID file, AiiDA's own test of a running daemon.

    ``verdi daemon stop`` and ``verdi daemon status`` on a stopped daemon wait the whole ``daemon.timeout`` (30 s
    on profiles of ``aiida-qrnn setup``) for an answer from it before they look at this file and say so."""
    return (aiida_path / '.aiida' / 'daemon' / f'circus-{profile}.pid').is_file()


def stop_daemon(aiida_path: Path, check: bool = True) -> None:
    """``verdi daemon stop`` with a generous timeout, tried again once: on a loaded 2-core machine the daemon's
    answer can take longer than verdi's default 5 s. Nothing to do (and no 30 s wait) when it is not running."""
    if not daemon_running(aiida_path):
        return
    for _ in range(2):
        result = run([BIN / 'verdi', 'daemon', 'stop', '--timeout', '60'], aiida_path, check=False, timeout=180)
        if result.returncode == 0:
            return
    if check:
        raise AssertionError(f'the daemon did not stop after two attempts:\n{result.stdout}{result.stderr}')


@dataclass
class EmbeddedProfile:
    """An embedded profile made by ``aiida-qrnn setup`` in ``folder / 'aiida'``, with two scripts run by
    ``verdi run``: ``submit.py`` (prints ``PK <pk>``) and ``state.py PK`` (prints ``STATE <fields...>``)."""

    folder: Path

    @property
    def aiida_path(self) -> Path:
        return self.folder / 'aiida'

    @classmethod
    def create(cls, folder: Path, submit: str, state: str) -> EmbeddedProfile:
        """Write the two scripts (dedented) and set the profile up; the daemon is not started."""
        profile = cls(folder)
        profile.aiida_path.mkdir()
        (folder / 'submit.py').write_text(textwrap.dedent(submit))
        (folder / 'state.py').write_text(textwrap.dedent(state))
        run([BIN / 'aiida-qrnn', 'setup'], profile.aiida_path)
        return profile

    def verdi(self, *arguments: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        return run([BIN / 'verdi', *arguments], self.aiida_path, check=check, timeout=timeout)

    def start_daemon(self) -> None:
        self.verdi('daemon', 'start', '1')

    def stop_daemon(self, check: bool = True) -> None:
        stop_daemon(self.aiida_path, check=check)

    def submit(self) -> int:
        """Run ``submit.py``; the pk it printed."""
        output = self.verdi('run', str(self.folder / 'submit.py'), timeout=300).stdout
        return int(next(line.split()[1] for line in output.splitlines() if line.startswith('PK')))

    def state(self, pk: int) -> list[str]:
        """The fields ``state.py`` printed after ``STATE`` for process ``pk``."""
        output = self.verdi('run', str(self.folder / 'state.py'), str(pk)).stdout
        return next(line.split()[1:] for line in output.splitlines() if line.startswith('STATE'))
