"""The files of an MD run folder, shared by both engines: names, the log, the outcome, the checkpoint checks.

Both :func:`~.runner.run_md` on ASE's integrators and :func:`~.replicas.run_md_replicas` on the torch engine
write exactly these files, so the parser, the restart logic and the analyses do not know which engine ran.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
from ase import Atoms

from .checkpoint import Checkpoint
from .settings import MDSettings
from .status import MDStatus

__all__ = ('CHECKPOINT_FILE', 'LOG_COLUMNS', 'LOG_FILE', 'STATUS_FILE', 'TRAJECTORY_FILE', 'UNSTABLE_FILE', 'CsvLog',
           'MDResult', 'check_compatible', 'molecular_charge_statistics', 'read_log', 'write_status', 'write_unstable')

CHECKPOINT_FILE = 'checkpoint.npz'
TRAJECTORY_FILE = 'trajectory.h5'
LOG_FILE = 'md_log.csv'
STATUS_FILE = 'status.json'
UNSTABLE_FILE = 'unstable.extxyz'
#: The last two: root mean square and largest absolute net charge of the molecules (e), from the model's charges
#: (charge equilibration is global, so charge can move between molecules); NaN without charges or molecule ids.
LOG_COLUMNS = ('step', 'time_fs', 'potential_energy_eV', 'kinetic_energy_eV', 'total_energy_eV',
               'conserved_energy_eV', 'enthalpy_eV', 'temperature_K', 'pressure_bar', 'volume_A3', 'density_g_cm3',
               'molecular_charge_rms_e', 'molecular_charge_max_abs_e')


@dataclass(frozen=True)
class MDResult:
    """Outcome of a run: status, where it stopped, and a sentence for humans."""

    status: MDStatus
    step: int
    time_fs: float
    message: str

    def to_dict(self) -> dict:
        return {'status': int(self.status), 'name': self.status.name, 'step': self.step, 'time_fs': self.time_fs,
                'message': self.message}


def write_status(workdir: Path, result: MDResult) -> MDResult:
    """Write ``status.json`` (the outcome the parser reads) and return ``result``."""
    (Path(workdir) / STATUS_FILE).write_text(json.dumps(result.to_dict(), indent=2) + '\n')
    return result


def check_compatible(checkpoint: Checkpoint, settings: MDSettings, atoms: Atoms, path: Path) -> None:
    """Refuse a checkpoint of another structure, another ensemble or beyond ``n_steps``."""
    if not np.array_equal(checkpoint.numbers, atoms.numbers):
        raise ValueError(f'Checkpoint {path} is for {len(checkpoint.numbers)} atoms with other atomic numbers than '
                         f'the {len(atoms)}-atom structure given; use a fresh folder for a new structure.')
    if (checkpoint.ensemble, checkpoint.cell_fluctuations) != (settings.ensemble, settings.cell_fluctuations):
        raise ValueError(f'Checkpoint {path} is a {checkpoint.ensemble} run ({checkpoint.cell_fluctuations} cell), '
                         f'the settings ask for {settings.ensemble} ({settings.cell_fluctuations}); an ensemble '
                         'change is a new run in a fresh folder.')
    if checkpoint.step > settings.n_steps:
        raise ValueError(f'Checkpoint {path} is at step {checkpoint.step}, beyond n_steps={settings.n_steps}.')


def write_unstable(workdir: Path, atoms: Atoms) -> None:
    """The structure a guard stopped on, for a human to look at."""
    from ase.io import write

    snapshot = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    write(workdir / UNSTABLE_FILE, snapshot, format='extxyz')


class CsvLog:
    """Append-only CSV (first column the step) with full float precision, cut back to a checkpoint's step on
    restart. Each row is flushed: a job killed by a monitor or the scheduler leaves every row it wrote."""

    def __init__(self, path: Path, columns: tuple[str, ...], keep_until_step: int | None) -> None:
        kept = [','.join(columns)]
        if keep_until_step is not None and path.is_file():
            lines = path.read_text().splitlines()
            kept += [line for line in lines[1:] if line and int(line.split(',', 1)[0]) <= keep_until_step]
        path.write_text('\n'.join(kept) + '\n')
        self._handle = path.open('a')

    def write(self, row: tuple[float, ...]) -> None:
        self._handle.write(','.join(repr(float(value)) if i else str(int(value)) for i, value in enumerate(row)))
        self._handle.write('\n')
        self._handle.flush()

    def flush(self) -> None:
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def read_log(source: Path | str | TextIO) -> dict[str, np.ndarray]:
    """The MD log (a path or an open text stream) as columns (``LOG_COLUMNS``), for the analyses; columns a log
    written before they existed lacks (the molecular charges) are NaN."""
    name = getattr(source, 'name', source)
    try:
        lines = (source.read() if hasattr(source, 'read') else Path(source).read_text()).splitlines()
        header = lines[0].strip().split(',') if lines else []
        table = np.loadtxt(lines[1:], delimiter=',', ndmin=2) if len(lines) > 1 else np.zeros((0, len(header)))
    except (OSError, ValueError) as exception:
        raise ValueError(f'{name} is not an MD log: {exception}') from exception
    if not header or header != list(LOG_COLUMNS[:len(header)]) or table.shape[1] != len(header):
        raise ValueError(f'{name} is not an MD log: its columns {header} are not {list(LOG_COLUMNS)}.')
    return {column_name: table[:, column] if column < len(header) else np.full(len(table), np.nan)
            for column, column_name in enumerate(LOG_COLUMNS)}


def molecular_charge_statistics(charges: np.ndarray | None, molecule_ids: np.ndarray | None) -> tuple[float, float]:
    """RMS and largest absolute net charge over the molecules, NaN without charges or molecule ids."""
    if charges is None or molecule_ids is None:
        return math.nan, math.nan
    _, index = np.unique(molecule_ids, return_inverse=True)
    net = np.bincount(index, weights=np.asarray(charges, dtype=np.float64))
    return float(np.sqrt(np.mean(net**2))), float(np.abs(net).max())
