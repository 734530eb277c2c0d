"""The job folder's shared contract: what a job declares, how it fails and where its results go.

Every job ends with a documented exit status: 0 success, 1 bad input (``EXIT_BAD_INPUT``: the message on stderr,
one line, and in ``error.json`` as ``{"status": 1, "message": "..."}``), other values as its :class:`Job` says.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
import typing as t
from collections.abc import Mapping

import click

__all__ = ('ERROR_FILE', 'EXIT_BAD_INPUT', 'EXIT_SUCCESS', 'Job', 'fail', 'write_json')

EXIT_SUCCESS = 0
EXIT_BAD_INPUT = 1
#: Written when a job fails before it has results: ``{"status": <exit status>, "message": "..."}``.
ERROR_FILE = 'error.json'


@dataclasses.dataclass(frozen=True)
class Job:
    """One ``aiida-qrnn-exec`` sub-command as its CalcJob and parser see it.

    ``inputs`` and ``outputs`` map a role to a file (or folder, or glob) name in the job folder; ``retrieved``
    lists the output roles the CalcJob brings back (default: all of them). ``exit_statuses`` names every status
    the command can return besides 0 and ``EXIT_BAD_INPUT``.
    """

    command: str
    inputs: Mapping[str, str]
    outputs: Mapping[str, str]
    exit_statuses: Mapping[int, str] = dataclasses.field(default_factory=dict)
    retrieved: tuple[str, ...] | None = None

    @property
    def stdout_name(self) -> str:
        return f'{self.command.replace("-", "_")}.out'

    @property
    def stderr_name(self) -> str:
        return f'{self.command.replace("-", "_")}.err'

    @property
    def statuses(self) -> dict[int, str]:
        """Every exit status of the command, by number."""
        return {EXIT_SUCCESS: 'SUCCESS', EXIT_BAD_INPUT: 'BAD_INPUT', **self.exit_statuses}

    def retrieve_list(self) -> list[str]:
        """The files a CalcJob retrieves: the retrieved outputs, ``error.json``, stdout and stderr."""
        roles = self.outputs if self.retrieved is None else self.retrieved
        return [*(self.outputs[role] for role in roles), ERROR_FILE, self.stdout_name, self.stderr_name]


def fail(message: str, status: int = EXIT_BAD_INPUT, folder: pathlib.Path | None = pathlib.Path()) -> t.NoReturn:
    """End the job with ``status``: ``message`` on one line on stderr and, unless ``folder`` is None, in
    ``folder/error.json``, where the parser finds it."""
    message = message.replace('\n', ' ')
    if folder is not None:
        write_json(folder / ERROR_FILE, {'status': status, 'message': message})
    click.echo(message, err=True)
    sys.exit(status)


def write_json(path: pathlib.Path, content: dict, indent: int | None = None) -> None:
    """Write a result file of the job (``results.json``, ``summary.json``, ``error.json``)."""
    path.write_text(json.dumps(content, indent=indent))
