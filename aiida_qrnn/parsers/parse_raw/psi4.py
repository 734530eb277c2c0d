"""Read the files Psi4 1.3.2 leaves for one cluster of a ``Psi4Calculation`` into labels in package units.

Pure functions on file contents: no AiiDA. The record (``c<i>.json``) is authoritative; the Psi4 output
(``c<i>.out``) and stderr only explain a cluster that has no record.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from aiida_qrnn.core.label_records import FailureReason, RecordError, labels_from_record

__all__ = ('parse_cluster',)

#: Psi4's last line after a normal exit.
NORMAL_EXIT = 'Psi4 exiting successfully'


def _last_error_line(stdout: str | None, stderr: str | None) -> str:
    for text in (stderr, stdout):
        lines = [line.strip() for line in (text or '').splitlines() if line.strip()]
        errors = [line for line in lines if 'Error' in line or 'error' in line]
        if errors:
            return errors[-1]
    return 'no error message'


def parse_cluster(
    *, cluster_id: str, numbers: np.ndarray, positions: np.ndarray, record: str | None, d3bj_record: str | None,
    d3bj_parameters: dict[str, float] | None, output: str | None, stderr: str | None,
) -> dict[str, Any]:
    """Labels of one cluster: ``energy`` (eV), ``forces`` (atoms, 3) eV/Å when computed, ``dipole`` (3,) e·Å.

    ``d3bj_parameters`` are the D3(BJ) parameters the job applied (``None`` for a method without D3(BJ)); the
    record must show Psi4's own definition of the method uses the same ones.

    :raises RecordError: with the reason the cluster has no labels: ``missing_output`` when Psi4 never started
        on it, ``interrupted`` when its output stops before Psi4 finished, ``abnormal_termination`` when Psi4
        stopped with an error and wrote no record, or the reason in the record.
    """
    if record is None:
        if output is None or not output.strip():
            raise RecordError(FailureReason.MISSING_OUTPUT, 'no record and no Psi4 output: Psi4 never ran on it.')
        if NORMAL_EXIT in output or 'Traceback' in (stderr or '') + output:
            raise RecordError(
                FailureReason.ABNORMAL_TERMINATION,
                f'Psi4 stopped without writing a record: {_last_error_line(output, stderr)}.',
            )
        raise RecordError(FailureReason.INTERRUPTED, 'the Psi4 output stops before the end and there is no record.')

    labels = labels_from_record(
        record, cluster_id=cluster_id, numbers=numbers, positions=positions, d3bj_content=d3bj_record,
        d3bj_expected=d3bj_parameters,
    )
    if d3bj_parameters is not None:
        used = json.loads(record).get('dispersion_parameters')
        if used != d3bj_parameters:
            raise RecordError(
                FailureReason.ABNORMAL_TERMINATION,
                f'Psi4 defines the method with D3(BJ) parameters {used}, but {d3bj_parameters} were applied.',
            )
    return labels
