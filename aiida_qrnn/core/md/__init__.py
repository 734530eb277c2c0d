"""Molecular dynamics with any ASE calculator: NVE, Nosé-Hoover-chain NVT, MTK NPT; restartable, guarded;
on a device-resident torch engine with batched replicas (default) or on ASE's integrators (the reference).

See ``docs/md-and-analysis.md`` for the ensembles, units, the checkpoint contract and the status codes.
"""

from ..topology import make_molecules_whole
from .committee import COMMITTEE_COLUMNS, COMMITTEE_FILE, read_committee_log
from .outputs import LOG_COLUMNS, MDResult, read_log
from .replicas import run_md_replicas
from .runner import run_md
from .settings import MDSettings
from .status import MDStatus
from .trajectory import TrajectoryArrays, TrajectoryWriter, read_trajectory, unwrap_trajectory

__all__ = ['COMMITTEE_COLUMNS', 'COMMITTEE_FILE', 'LOG_COLUMNS', 'MDResult', 'MDSettings', 'MDStatus',
           'TrajectoryArrays', 'TrajectoryWriter', 'make_molecules_whole', 'read_committee_log', 'read_log',
           'read_trajectory', 'run_md', 'run_md_replicas', 'unwrap_trajectory']
