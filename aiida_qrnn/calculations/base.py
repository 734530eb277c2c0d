"""The package's ``CalcJob`` base: exit-code bands decide whether a failed job may seed the cache."""

from __future__ import annotations

from aiida.engine import CalcJob as _BaseCalcJob
from aiida.engine import CalcJobProcessSpec as _BaseCalcJobProcessSpec

__all__ = ('CalcJob',)


class CalcJobProcessSpec(_BaseCalcJobProcessSpec):
    """A spec whose exit codes below 400 (unreadable or missing output) invalidate the cache by default.

    A 3xx failure says nothing about the inputs, so rerunning them may succeed and the node must not be reused;
    4xx and above are failures of the calculation itself, which a rerun with the same inputs would repeat.
    """

    def exit_code(self, status: int, label: str, message: str, invalidates_cache: bool | None = None) -> None:
        if invalidates_cache is None:
            invalidates_cache = status < 400
        super().exit_code(status, label, message, invalidates_cache=invalidates_cache)


class CalcJob(_BaseCalcJob):
    """``CalcJob`` for aiida-qrnn: exit codes follow the bands of the design (3xx output, 4xx code, 5xx science)."""

    _spec_class = CalcJobProcessSpec
