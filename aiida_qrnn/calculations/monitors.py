"""CalcJob monitors (entry point group ``aiida.calculations.monitors``).

``qrnn.committee_disagreement`` stops an ``MdCalculation`` whose committee disagrees: the last frames of such a run
are the active-learning candidates (paper, round 2). Use it through the ``monitors`` input of the job::

    builder.monitors = {'committee': orm.Dict({'entry_point': 'qrnn.committee_disagreement',
                                               'kwargs': {'threshold': 0.5}, 'minimum_poll_interval': 60})}
"""

from __future__ import annotations

import tempfile
import typing as t
from pathlib import Path, PurePosixPath

from aiida.engine.processes.calcjobs.monitors import CalcJobMonitorResult

if t.TYPE_CHECKING:
    from aiida.orm import CalcJobNode
    from aiida.transports import Transport

__all__ = ('committee_disagreement',)


def committee_disagreement(node: CalcJobNode, transport: Transport, threshold: float,
                           quantity: str = 'max_force_deviation') -> CalcJobMonitorResult | None:
    """Kill the job once a row of its ``committee.csv`` has ``quantity`` above ``threshold``.

    ``quantity`` is ``max_force_deviation`` (eV/Å, the largest per-atom force deviation) or ``rho_f`` ((eV/Å)²,
    paper eq. 2). A missing file (the job has not reached its first evaluation) or a partial last line is no reason
    to stop. The result keeps the parser's exit code (``override_exit_code=False``): ``MdParser`` recognises the
    stop from this monitor's input and finishes the job with exit status 0 and
    ``output_parameters['status'] == 'committee_disagreement'``, so a restart work chain does not repeat the run.

    The monitor does not act on a job that stops itself by the same rule (its ``committee_max_force_deviation``
    parameter at or below ``threshold`` for ``max_force_deviation``) or that has written its ``status.json``: a kill
    could then only race with the job's own exit, and AiiDA's direct scheduler fails to kill a process that has
    already exited (``psutil.NoSuchProcess``), five times, and pauses the job for good.
    """
    from aiida_qrnn.core.md.committee import COMMITTEE_FILE, check_threshold, first_exceedance, read_committee_log
    from aiida_qrnn.core.md.outputs import STATUS_FILE

    check_threshold(quantity, threshold)  # MdCalculation refuses bad kwargs at submission; this names them anyway
    if quantity == 'max_force_deviation' and 'parameters' in node.inputs:
        own_limit = node.inputs.parameters.get('committee_max_force_deviation')
        if own_limit is not None and own_limit <= threshold:
            return None
    workdir = node.get_remote_workdir()
    if workdir is None or transport.isfile(str(PurePosixPath(workdir) / STATUS_FILE)):
        return None
    remote_path = str(PurePosixPath(workdir) / COMMITTEE_FILE)
    if not transport.isfile(remote_path):
        return None
    with tempfile.TemporaryDirectory() as folder:
        local_path = Path(folder) / COMMITTEE_FILE
        transport.getfile(remote_path, str(local_path))
        exceeded = first_exceedance(read_committee_log(local_path), quantity, threshold)
    if exceeded is None:
        return None
    step, value = exceeded
    return CalcJobMonitorResult(
        message=f'committee disagreement at step {step}: {quantity} {value:.4g} exceeds the threshold {threshold:g}',
        override_exit_code=False,
    )
