"""Molecular dynamics with any ASE calculator: NVE, Nosé-Hoover-chain NVT, MTK NPT; restartable, guarded;
on a device-resident torch engine with batched replicas (default) or on ASE's integrators (the reference).

See ``docs/md-and-analysis.md`` for the ensembles, units, the checkpoint contract and the status codes.

Names are imported on first use (PEP 562), so that ``aiida_qrnn.core.md.trajectory`` (the H5MD format, also
written by the classical OpenMM run) can be used without importing torch.
"""

from __future__ import annotations

import importlib
import typing as t

_WHERE = {
    'COMMITTEE_COLUMNS': '.committee', 'COMMITTEE_FILE': '.committee', 'read_committee_log': '.committee',
    'LOG_COLUMNS': '.outputs', 'MDResult': '.outputs', 'read_log': '.outputs',
    'run_md_replicas': '.replicas', 'run_md': '.runner', 'MDSettings': '.settings', 'MDStatus': '.status',
    'TrajectoryArrays': '.trajectory', 'TrajectoryWriter': '.trajectory', 'read_trajectory': '.trajectory',
    'unwrap_trajectory': '.trajectory',
}

__all__ = ['COMMITTEE_COLUMNS', 'COMMITTEE_FILE', 'LOG_COLUMNS', 'MDResult', 'MDSettings', 'MDStatus',
           'TrajectoryArrays', 'TrajectoryWriter', 'read_committee_log', 'read_log',
           'read_trajectory', 'run_md', 'run_md_replicas', 'unwrap_trajectory']

if t.TYPE_CHECKING:
    from .committee import COMMITTEE_COLUMNS, COMMITTEE_FILE, read_committee_log
    from .outputs import LOG_COLUMNS, MDResult, read_log
    from .replicas import run_md_replicas
    from .runner import run_md
    from .settings import MDSettings
    from .status import MDStatus
    from .trajectory import TrajectoryArrays, TrajectoryWriter, read_trajectory, unwrap_trajectory


def __getattr__(name: str) -> t.Any:
    if name not in _WHERE:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
