"""How an MD run ended: one documented code per outcome, for the job-folder executable and its parser.

Codes below 10 mean the run stopped cleanly with a checkpoint it can continue from; codes from 10 mean the
dynamics went unstable: the last *good* checkpoint is kept (the unstable state is never saved over it), so a
restart from it with a smaller timestep is possible.
"""

from __future__ import annotations

from enum import IntEnum


class MDStatus(IntEnum):
    """Outcome of :func:`aiida_qrnn.core.md.run_md`."""

    #: All ``n_steps`` done; final checkpoint written.
    FINISHED = 0
    #: ``walltime_s`` reached; checkpoint written at the current step, call ``run_md`` again to continue.
    STOPPED_WALLTIME = 1
    #: The committee's largest per-atom force deviation exceeded ``committee_max_force_deviation``; checkpoint
    #: written at that step (its configuration is the one the committee disagreed on).
    COMMITTEE_DISAGREEMENT = 2
    #: A position, momentum or the energy became NaN or infinite.
    UNSTABLE_NOT_FINITE = 10
    #: Two atoms came closer than ``min_distance_A``.
    UNSTABLE_CLOSE_CONTACT = 11
    #: The kinetic temperature exceeded ``temperature_limit_K``.
    UNSTABLE_TEMPERATURE = 12

    @property
    def is_unstable(self) -> bool:
        return self >= 10
