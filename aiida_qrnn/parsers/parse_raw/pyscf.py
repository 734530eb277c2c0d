"""Read the record PySCF's driver (``aiida-qrnn-exec pyscf``) left for one cluster into labels in package units.

Pure functions on file contents: no AiiDA.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aiida_qrnn.core.label_records import FailureReason, RecordError, labels_from_record

__all__ = ('parse_cluster',)


def parse_cluster(
    *, cluster_id: str, numbers: np.ndarray, positions: np.ndarray, record: str | None, stderr: str | None,
) -> dict[str, Any]:
    """Labels of one cluster: ``energy`` (eV), ``forces`` (atoms, 3) eV/Å when computed, ``dipole`` (3,) e·Å.

    :raises RecordError: ``missing_output`` when the driver never reached the cluster (or the job was killed
        before), ``abnormal_termination`` when the driver itself stopped with an error, or the record's reason.
    """
    if record is None:
        if stderr and 'aiida-qrnn-exec pyscf:' in stderr:
            raise RecordError(FailureReason.ABNORMAL_TERMINATION, f'the PySCF driver stopped: {stderr.strip()}')
        raise RecordError(FailureReason.MISSING_OUTPUT, 'no record: the PySCF driver never finished this cluster.')
    return labels_from_record(record, cluster_id=cluster_id, numbers=numbers, positions=positions)
