"""The production path with real parts (:mod:`aiida_qrnn.testing.production`): a PostgreSQL + RabbitMQ profile, its
daemon, and the local SLURM cluster, for the session; deleted at its end with its database and RabbitMQ queues."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiida_qrnn.testing.production import production_profile
from aiida_qrnn.testing.profiles import reachable

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test of this folder is marked ``production`` (select with ``-m production``, leave out with ``-m 'not
    production'``)."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.production)


@pytest.fixture(scope='session')
def production(local_cluster, tmp_path_factory):
    """The production profile with the SLURM computer ``cluster``, its codes and wrappers, and its daemon running."""
    if not (reachable(5432) and reachable(5672)):
        pytest.skip('the production profile needs PostgreSQL on 127.0.0.1:5432 and RabbitMQ on 127.0.0.1:5672')
    with production_profile(local_cluster, tmp_path_factory.mktemp('aiida-production')) as profile:
        yield profile


@pytest.fixture(autouse=True)
def release_stalled_jobs(request):
    """A failed test must not leave the next one's jobs stalled."""
    yield
    if 'production' in request.fixturenames:
        (request.getfixturevalue('production').wrappers / 'xtb-stalling.stall').unlink(missing_ok=True)
