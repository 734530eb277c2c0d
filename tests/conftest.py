"""The shared fixtures: a temporary AiiDA profile (``aiida.tools.pytest_fixtures``) and the package's own test
harness (:mod:`aiida_qrnn.testing.fixtures`: cluster sets, codes, stored job outputs, the local SLURM cluster).

Test modules import helpers from :mod:`aiida_qrnn.testing`, never from each other."""

from __future__ import annotations

pytest_plugins = ['aiida.tools.pytest_fixtures', 'aiida_qrnn.testing.fixtures']
