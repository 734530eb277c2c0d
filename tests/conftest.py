"""The shared fixtures: a temporary AiiDA profile (``aiida.tools.pytest_fixtures``) and the package's own test
harness (:mod:`aiida_qrnn.testing.fixtures`: cluster sets, codes, stored job outputs, the local SLURM cluster).

Test modules import helpers from :mod:`aiida_qrnn.testing`, never from each other."""

from __future__ import annotations

# Transitional, until the last two modules that import it from here (test_exec_inspect, test_active_learning_daemon)
# are committed with their new import; then removed.
from aiida_qrnn.testing.structures import make_water_clusters  # noqa: F401

pytest_plugins = ['aiida.tools.pytest_fixtures', 'aiida_qrnn.testing.fixtures']
