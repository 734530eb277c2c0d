"""``JobParser``: the base of the parsers of :mod:`aiida_qrnn.jobs` commands (see ``calculations.base.JobCalcJob``)."""

from __future__ import annotations

import json
import typing as t

from aiida.engine import ExitCode
from aiida.parsers import Parser

from aiida_qrnn.jobs.folder import ERROR_FILE, EXIT_BAD_INPUT

__all__ = ('JobParser',)


class JobParser(Parser):
    """Reads what a job left; a subclass implements ``parse`` and starts it with :meth:`job_failure`.

    ``STATUS_EXIT_CODES`` maps the exit statuses that a job writes into ``error.json`` onto exit-code labels of the
    CalcJob (bad input is 410 ``ERROR_INVALID_INPUT`` for every job).
    """

    STATUS_EXIT_CODES: t.ClassVar[dict[int, str]] = {EXIT_BAD_INPUT: 'ERROR_INVALID_INPUT'}

    @property
    def retrieved_names(self) -> set[str]:
        """Top-level names in the ``retrieved`` folder."""
        return set(self.retrieved.base.repository.list_object_names())

    def job_failure(self) -> ExitCode | None:
        """The exit code of the failure the job recorded in ``error.json``, or None (no such file, or a status
        without an exit code: the outputs decide)."""
        repository = self.retrieved.base.repository
        if ERROR_FILE not in self.retrieved_names:
            return None
        error = json.loads(repository.get_object_content(ERROR_FILE))
        label = self.STATUS_EXIT_CODES.get(error.get('status'))
        if label is None:
            return None
        return getattr(self.exit_codes, label).format(message=error['message'])

    def output_missing(self, filename: str) -> ExitCode:
        return self.exit_codes.ERROR_OUTPUT_FILES_MISSING.format(filename=filename)

    def output_unreadable(self, filename: str, exception: Exception) -> ExitCode:
        return self.exit_codes.ERROR_READING_OUTPUT.format(filename=filename, exception=exception)
