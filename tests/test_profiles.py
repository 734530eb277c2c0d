"""``aiida-qrnn setup``: embedded and production profiles, idempotent, with clear errors for missing services.

Each test runs the real command in a subprocess with its own ``AIIDA_PATH``, as a user would.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess

import pytest

from aiida_qrnn.testing.codes import BIN
from aiida_qrnn.testing.profiles import reachable, run

pytestmark = pytest.mark.integration  # `aiida-qrnn setup` and verdi in subprocesses


def test_embedded_profile_twice_changes_nothing(tmp_path):
    first = run([BIN / 'aiida-qrnn', 'setup'], tmp_path)
    assert "Profile 'qrnn': storage core.sqlite_dos, broker core.zeromq" in first.stdout
    assert 'created   profile qrnn' in first.stdout
    assert 'created   computer localhost' in first.stdout
    assert 'created   code xtb@localhost' in first.stdout
    assert 'created   daemon.timeout 30 s' in first.stdout
    config = (tmp_path / '.aiida' / 'config.json').read_text()
    second = run([BIN / 'aiida-qrnn', 'setup'], tmp_path)
    assert 'created' not in second.stdout
    assert 'exists    profile qrnn' in second.stdout
    assert 'exists    code xtb@localhost' in second.stdout
    assert (tmp_path / '.aiida' / 'config.json').read_text() == config
    codes = run([BIN / 'verdi', 'code', 'list', '-a'], tmp_path).stdout
    assert codes.count('xtb@localhost') == 1


def test_existing_profile_of_another_kind_is_not_touched(tmp_path):
    run([BIN / 'verdi', 'presto', '--profile-name', 'qrnn', '--no-broker'], tmp_path)
    result = run([BIN / 'aiida-qrnn', 'setup'], tmp_path, check=False)
    assert result.returncode != 0
    assert "profile 'qrnn' exists with storage 'core.sqlite_dos' and broker None" in result.stderr
    assert 'Traceback' not in result.stderr


def test_missing_postgres_gives_a_clear_message(tmp_path):
    result = run([BIN / 'aiida-qrnn', '-p', 'nowhere', 'setup', '--production', '--postgres-port', '1'], tmp_path,
                 check=False)
    assert result.returncode != 0
    assert 'PostgreSQL is not reachable at 127.0.0.1:1' in result.stderr
    assert 'Traceback' not in result.stderr
    assert 'nowhere' not in run([BIN / 'verdi', 'profile', 'list'], tmp_path).stdout


@pytest.mark.skipif(not (reachable(5432) and reachable(5672)), reason='needs PostgreSQL :5432 and RabbitMQ :5672')
def test_production_profile_twice(tmp_path):
    name = f'prod-{secrets.token_hex(4)}'
    try:
        first = run([BIN / 'aiida-qrnn', '-p', name, 'setup', '--production'], tmp_path)
        assert f"Profile '{name}': storage core.psql_dos, broker core.rabbitmq" in first.stdout
        second = run([BIN / 'aiida-qrnn', '-p', name, 'setup', '--production'], tmp_path)
        assert 'created' not in second.stdout
        # verdi status asks the (stopped) daemon too and waits daemon.timeout (30 s) for its answer: 1 s is enough
        run([BIN / 'verdi', '-p', name, 'config', 'set', 'daemon.timeout', '1'], tmp_path)
        status = run([BIN / 'verdi', '-p', name, 'status'], tmp_path, check=False).stdout
        assert f'postgresql+psycopg://aiida-qrnn-{name}:' in status
    finally:
        run([BIN / 'verdi', 'profile', 'delete', name, '--delete-data', '--force'], tmp_path, check=False)


def test_moved_executable_gets_a_new_code_and_the_old_one_is_kept(tmp_path):
    """A second checkout (another venv) must not run the first one's aiida-qrnn-exec: the code is replaced, and the
    old one, which earlier calculations point to, is kept under another label."""
    aiida_path = tmp_path / 'aiida'
    run([BIN / 'aiida-qrnn', 'setup'], aiida_path)
    elsewhere = tmp_path / 'bin'
    elsewhere.mkdir()
    (elsewhere / 'xtb').symlink_to(shutil.which('xtb'))
    environment_path = f'{elsewhere}{os.pathsep}{os.environ["PATH"]}'
    result = subprocess.run(
        [BIN / 'aiida-qrnn', 'setup'], capture_output=True, text=True, timeout=120,
        env={**os.environ, 'AIIDA_PATH': str(aiida_path), 'PATH': f'{BIN}{os.pathsep}{environment_path}'},
    )
    assert result.returncode == 0, result.stderr
    assert f'now {elsewhere / "xtb"}' in result.stdout and 'created   code xtb@localhost' in result.stdout
    codes = run([BIN / 'verdi', 'code', 'list', '-a', '-A'], aiida_path).stdout
    assert 'xtb@localhost' in codes and re.search(r'xtb-\d+@localhost', codes)


def test_daemon_stop_on_the_embedded_profile_reports_no_timeout(tmp_path):
    """``verdi daemon stop`` waited 2 s (AiiDA's default daemon.timeout) for workers that take longer to exit on a
    loaded machine, and printed "Critical: Connection to the daemon timed out." although the daemon stopped."""
    run([BIN / 'aiida-qrnn', 'setup'], tmp_path)
    assert run([BIN / 'verdi', 'config', 'get', 'daemon.timeout'], tmp_path).stdout.strip() == '30'
    run([BIN / 'verdi', 'daemon', 'start', '1'], tmp_path)
    stopped = run([BIN / 'verdi', 'daemon', 'stop'], tmp_path, check=False, timeout=180)
    assert stopped.returncode == 0 and 'Critical' not in stopped.stdout + stopped.stderr, stopped
    # --timeout: on a stopped daemon `status` waits that long for an answer before it reads the (absent) PID file
    status = run([BIN / 'verdi', 'daemon', 'status', '--timeout', '5'], tmp_path, check=False)
    assert 'The daemon is not running' in status.stderr
