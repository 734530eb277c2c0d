"""docs/production.md, followed verbatim: its ``bash`` blocks run in order, in one shell, against the local cluster:
set-up, daemon, labelling, training and MD on SLURM over SSH.

The page's four settings come from the environment, as the page says (``QRNN_PROFILE``, ``QRNN_SSH_HOST``,
``QRNN_WORKDIR``, ``QRNN_REMOTE_EXEC``); nothing else is substituted.
"""

from __future__ import annotations

import re
import secrets
import shutil

import pytest

from aiida_qrnn.testing.codes import BIN
from aiida_qrnn.testing.production import Production
from aiida_qrnn.testing.profiles import reachable
from aiida_qrnn.testing.slurm import CLUSTER_DIR, REPOSITORY

PAGE = REPOSITORY / 'docs' / 'production.md'


def shell_blocks(text: str) -> list[str]:
    return re.findall(r'^```bash\n(.*?)^```', text, flags=re.MULTILINE | re.DOTALL)


def test_production_page_verbatim(local_cluster, tmp_path):
    if not (reachable(5432) and reachable(5672)):
        pytest.skip('the page sets up PostgreSQL + RabbitMQ: needs them on 127.0.0.1:5432 and :5672')
    blocks = shell_blocks(PAGE.read_text())
    assert len(blocks) >= 4 and any('daemon start' in block for block in blocks)
    name = f'qrnn-docs-{secrets.token_hex(3)}'
    docs = Production(name, tmp_path / 'aiida', CLUSTER_DIR / f'work-{name}', tmp_path)
    environment = {'QRNN_PROFILE': name, 'QRNN_SSH_HOST': local_cluster, 'QRNN_WORKDIR': str(docs.workdir),
                   'QRNN_REMOTE_EXEC': str(BIN / 'aiida-qrnn-exec')}
    script = tmp_path / 'page.sh'
    script.write_text('set -euo pipefail\n' + '\n'.join(blocks))
    try:
        result = docs.run('env', *(f'{key}={value}' for key, value in environment.items()), 'bash', script,
                          check=False, timeout=600, cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert 'Success: all' in result.stdout and 'code xtb@cluster created' in result.stdout
        finished = re.findall(r'^state +Finished \[0\]', result.stdout, flags=re.MULTILINE)
        assert len(finished) == 3, result.stdout  # labelling, training, MD
        assert 'validation metrics:' in result.stdout and 'trained on:' in result.stdout  # aiida-qrnn model show
    finally:
        docs.stop_daemon()
        docs.run(BIN / 'verdi', 'profile', 'delete', name, '--delete-data', '--force', check=False)
        shutil.rmtree(docs.workdir, ignore_errors=True)
