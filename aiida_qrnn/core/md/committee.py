"""Committee disagreement along an MD run: the file ``committee.csv`` and the rule that stops a run on it.

Every ``committee_interval`` steps :func:`~aiida_qrnn.core.md.run_md` evaluates the committee members (models
other than the one driving the dynamics) on the current configuration and appends one row
``step, time_fs, rho_f, max_force_deviation``:

* ``rho_f``: the paper's eq. 2, Σ_i Σ_xyz σ²(f_i,x) / √N_a in (eV/Å)², from
  :meth:`~aiida_qrnn.core.model.committee.Committee.evaluate`;
* ``max_force_deviation``: max_i √(Σ_xyz σ²(f_i,x)) in eV/Å, the per-atom deviation that
  :func:`~aiida_qrnn.core.selection.committee_scores` reports for open clusters, here for the periodic cell.

Each row is flushed when written, so a CalcJob monitor can read the file while the job runs; a partial last line
(read while it was being written) is skipped by :func:`read_committee_log`.
"""

from __future__ import annotations

import io
import math
import typing as t
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

if t.TYPE_CHECKING:
    from ..model.committee import Committee

__all__ = ('COMMITTEE_COLUMNS', 'COMMITTEE_FILE', 'COMMITTEE_QUANTITIES', 'committee_disagreement',
           'first_exceedance', 'read_committee_log')

COMMITTEE_FILE = 'committee.csv'
COMMITTEE_COLUMNS = ('step', 'time_fs', 'rho_f', 'max_force_deviation')
#: Columns a threshold may apply to.
COMMITTEE_QUANTITIES = ('rho_f', 'max_force_deviation')


def committee_disagreement(committee: Committee, atoms: Atoms) -> tuple[float, float]:
    """``(rho_f, max_force_deviation)`` of the committee on one configuration (periodic or open)."""
    reference = next(committee.models[0].parameters())
    dtype, device = reference.dtype, reference.device
    periodic = bool(atoms.pbc.any())
    total_charge = float(atoms.info.get('total_charge', atoms.info.get('charge', 0.0)))
    statistics = committee.evaluate(
        torch.as_tensor(atoms.positions, dtype=dtype, device=device),  # (atoms, 3)
        torch.as_tensor(atoms.numbers, dtype=torch.long, device=device),  # (atoms,)
        torch.zeros(len(atoms), dtype=torch.long, device=device),  # (atoms,) one system
        torch.as_tensor(atoms.cell.array if periodic else np.zeros((3, 3)), dtype=dtype, device=device)[None],
        torch.as_tensor(atoms.pbc, device=device)[None],  # (1, 3)
        torch.tensor([total_charge], dtype=dtype, device=device),  # (1,)
    )
    deviation = statistics['force_variance'].sum(1).sqrt()  # (atoms,) eV/Å
    return float(statistics['rho_f'][0]), float(deviation.max())


def read_committee_log(source: Path | str | io.TextIOBase) -> dict[str, np.ndarray]:
    """The columns of a ``committee.csv`` (path or open text), skipping a partial last line of a running job (an
    empty file or a partial header, caught while the job creates the file, has no rows)."""
    text = source.read() if isinstance(source, io.TextIOBase) else Path(source).read_text()
    lines = text.split('\n') if '\n' in text else [','.join(COMMITTEE_COLUMNS), '']  # header not written yet
    if lines[0].strip() != ','.join(COMMITTEE_COLUMNS):
        raise ValueError(f'{source} is not a committee log: its header is {lines[0]!r}.')
    rows = []
    for line in lines[1:-1]:  # the last element is '' after a complete line, or a line still being written
        values = line.split(',')
        if len(values) != len(COMMITTEE_COLUMNS):
            raise ValueError(f'{source}: malformed committee log row {line!r}.')
        rows.append([float(value) for value in values])
    table = np.array(rows, dtype=float).reshape(-1, len(COMMITTEE_COLUMNS))  # (rows, columns)
    columns = {name: table[:, index] for index, name in enumerate(COMMITTEE_COLUMNS)}
    columns['step'] = columns['step'].astype(np.int64)
    return columns


def first_exceedance(columns: dict[str, np.ndarray], quantity: str, threshold: float) -> tuple[int, float] | None:
    """``(step, value)`` of the first row whose ``quantity`` exceeds ``threshold``, or None."""
    check_threshold(quantity, threshold)
    above = np.flatnonzero(columns[quantity] > threshold)
    if len(above) == 0:
        return None
    return int(columns['step'][above[0]]), float(columns[quantity][above[0]])


def check_threshold(quantity: str, threshold: float) -> None:
    """Raise a ``ValueError`` naming the argument unless ``quantity`` is a committee column and ``threshold`` > 0."""
    if quantity not in COMMITTEE_QUANTITIES:
        raise ValueError(f'quantity must be one of {COMMITTEE_QUANTITIES}, got {quantity!r}.')
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold) \
            or threshold <= 0:
        raise ValueError(f'threshold must be a positive number, got {threshold!r}.')
