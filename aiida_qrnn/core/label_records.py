"""Per-cluster result records of a labelling job, and why a cluster got no labels.

A labelling job (Psi4, PySCF) writes one JSON record per cluster, ``c<index>.json``, as soon as that cluster is
done, by writing a temporary file and renaming it; a job killed at any moment therefore leaves complete records
for every finished cluster and none for the others. A record is either ``status: ok`` with the raw labels in
atomic units and the geometry the program used, or ``status: failed`` with a :class:`FailureReason` and a
message. The D3(BJ) step writes ``c<index>.d3bj.json`` in the same way. Parsers turn records into labels with
:func:`labels_from_record`; restart work chains choose their remedy by the reason.

Pure functions: no AiiDA. Psi4's input file writes the same format without importing this module, because it
runs under Psi4's own Python.
"""

from __future__ import annotations

import json
import os
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from aiida_qrnn.core.units import (
    BOHR_TO_ANGSTROM,
    E_BOHR_TO_E_ANGSTROM,
    HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM,
    HARTREE_TO_EV,
)

__all__ = (
    'RECORD_FORMAT',
    'RESUBMIT_REASONS',
    'STABILISE_REASONS',
    'FailureReason',
    'RecordError',
    'labels_from_record',
    'record_name',
    'write_record',
)

RECORD_FORMAT = 'qrnn-label-record-v1'
#: Largest distance (Å) between an input position and the one the program reports before the record is refused.
GEOMETRY_TOLERANCE_ANGSTROM = 1e-5


class FailureReason(StrEnum):
    """Why a cluster got no labels; a restart chooses its remedy by this."""

    MISSING_OUTPUT = 'missing_output'
    INTERRUPTED = 'interrupted'
    UNREADABLE_OUTPUT = 'unreadable_output'
    ABNORMAL_TERMINATION = 'abnormal_termination'
    SCF_NOT_CONVERGED = 'scf_not_converged'
    ATOM_COUNT_MISMATCH = 'atom_count_mismatch'
    GEOMETRY_MISMATCH = 'geometry_mismatch'
    NON_FINITE = 'non_finite'
    #: The labels or the structure are physically impossible (``core.sanity``): fused atoms, an electron count
    #: the spin state cannot have, an energy outside the sane window. Never retried, never reused.
    UNPHYSICAL = 'unphysical'


#: The program never finished the cluster (job killed, out of walltime, node lost): run it again unchanged.
RESUBMIT_REASONS = frozenset({FailureReason.MISSING_OUTPUT, FailureReason.INTERRUPTED, FailureReason.UNREADABLE_OUTPUT})
#: The SCF did not converge: run it again with stabilised settings.
STABILISE_REASONS = frozenset({FailureReason.SCF_NOT_CONVERGED})


class RecordError(ValueError):
    """A record that cannot give labels, with the reason that classifies the failure."""

    def __init__(self, reason: FailureReason, message: str):
        super().__init__(message)
        self.reason = reason


def record_name(index: int, kind: str = '') -> str:
    """Record file of cluster ``index``: ``c000012.json``, or with ``kind='d3bj'`` ``c000012.d3bj.json``."""
    return f'c{index:06d}' + (f'.{kind}' if kind else '') + '.json'


def write_record(folder: str | os.PathLike, name: str, record: dict[str, Any]) -> Path:
    """Write ``record`` as JSON to ``folder/name`` atomically (temporary file, then rename)."""
    folder = Path(folder)
    descriptor, temporary = tempfile.mkstemp(prefix=f'.{name}.', suffix='.partial', dir=folder)
    with os.fdopen(descriptor, 'w') as stream:
        json.dump({'format': RECORD_FORMAT, **record}, stream)
    os.replace(temporary, folder / name)
    return folder / name


def _load(content: str, what: str) -> dict[str, Any]:
    try:
        record = json.loads(content)
    except ValueError as exception:
        raise RecordError(FailureReason.UNREADABLE_OUTPUT, f'{what} is not JSON ({exception}).') from None
    if not isinstance(record, dict) or record.get('format') != RECORD_FORMAT:
        raise RecordError(FailureReason.UNREADABLE_OUTPUT, f'{what} is not a {RECORD_FORMAT} record.')
    return record


def _array(record: dict[str, Any], key: str, shape: tuple[int, ...], what: str) -> np.ndarray:
    try:
        values = np.asarray(record[key], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        raise RecordError(FailureReason.UNREADABLE_OUTPUT, f'{what} has no readable {key!r}.') from None
    if values.shape != shape:
        raise RecordError(
            FailureReason.ATOM_COUNT_MISMATCH, f'{what}: {key!r} has shape {values.shape}, expected {shape}.'
        )
    return values


def labels_from_record(
    content: str, *, cluster_id: str, numbers: np.ndarray, positions: np.ndarray, d3bj_content: str | None = None,
    d3bj_expected: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Labels in package units from the record of one cluster (and its D3(BJ) record when ``d3bj_expected``).

    Checks that the record belongs to ``cluster_id`` and that the program computed exactly the input geometry
    (``numbers``, ``positions`` in Å), so that a label can never be attached to the wrong cluster.

    :returns: ``energy`` (eV), ``dipole`` (3,) e·Å and, when the record has a gradient, ``forces`` (atoms, 3) eV/Å.
    :raises RecordError: with the reason the cluster got no labels.
    """
    record = _load(content, 'the record')
    if record.get('id') != cluster_id:
        raise RecordError(
            FailureReason.GEOMETRY_MISMATCH, f'the record is for cluster id {record.get("id")!r}, not {cluster_id!r}.'
        )
    if record.get('status') != 'ok':
        known = {str(reason) for reason in FailureReason}
        reason = record.get('reason')
        reason = FailureReason(reason) if reason in known else FailureReason.ABNORMAL_TERMINATION
        raise RecordError(reason, str(record.get('message', 'the program reported a failure without a message.')))
    n_atoms = len(numbers)
    returned_numbers = _array(record, 'numbers', (n_atoms,), 'the record')
    returned_positions = _array(record, 'positions_bohr', (n_atoms, 3), 'the record') * BOHR_TO_ANGSTROM
    deviation = float(np.max(np.abs(returned_positions - positions)))
    if np.any(returned_numbers != numbers) or not deviation <= GEOMETRY_TOLERANCE_ANGSTROM:
        raise RecordError(
            FailureReason.GEOMETRY_MISMATCH,
            f'the program computed another geometry than the input (elements equal: '
            f'{bool(np.all(returned_numbers == numbers))}, largest position difference {deviation:.3g} Å).',
        )
    energy = float(_array(record, 'energy_hartree', (), 'the record'))
    has_gradient = record.get('gradient_hartree_per_bohr') is not None
    gradient = _array(record, 'gradient_hartree_per_bohr', (n_atoms, 3), 'the record') if has_gradient else None
    dipole = _array(record, 'dipole_e_bohr', (3,), 'the record')

    if d3bj_expected is not None:
        if d3bj_content is None:
            raise RecordError(FailureReason.MISSING_OUTPUT, 'the D3(BJ) record is missing.')
        d3bj = _load(d3bj_content, 'the D3(BJ) record')
        if d3bj.get('id') != cluster_id or d3bj.get('parameters') != d3bj_expected:
            raise RecordError(
                FailureReason.GEOMETRY_MISMATCH,
                f'the D3(BJ) record is for cluster {d3bj.get("id")!r} with parameters {d3bj.get("parameters")}, '
                f'expected {cluster_id!r} with {d3bj_expected}.',
            )
        energy += float(_array(d3bj, 'energy_hartree', (), 'the D3(BJ) record'))
        if has_gradient:
            gradient = gradient + _array(d3bj, 'gradient_hartree_per_bohr', (n_atoms, 3), 'the D3(BJ) record')

    labels = {'energy': energy * HARTREE_TO_EV, 'dipole': dipole * E_BOHR_TO_E_ANGSTROM}
    if has_gradient:
        labels['forces'] = -gradient * HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM
    bad = [name for name, value in labels.items() if not np.all(np.isfinite(value))]
    if bad:
        raise RecordError(FailureReason.NON_FINITE, f'the record holds NaN or infinite {", ".join(bad)}.')
    return labels
