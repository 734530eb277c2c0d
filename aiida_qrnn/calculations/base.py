"""The package's ``CalcJob`` bases: exit-code bands decide whether a failed job may seed the cache, and
:class:`JobCalcJob` runs one command of :mod:`aiida_qrnn.jobs` from its declaration."""

from __future__ import annotations

import io
import typing as t

from aiida import orm
from aiida.common.datastructures import CalcInfo, CodeInfo
from aiida.common.folders import Folder
from aiida.engine import CalcJob as _BaseCalcJob
from aiida.engine import CalcJobProcessSpec as _BaseCalcJobProcessSpec

if t.TYPE_CHECKING:
    from aiida_qrnn.jobs.folder import Job

__all__ = ('CalcJob', 'JobCalcJob')


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


class JobCalcJob(CalcJob):
    """A ``CalcJob`` that runs one ``aiida-qrnn-exec`` command, as its :class:`~aiida_qrnn.jobs.folder.Job` declares.

    A subclass sets ``JOB``, defines its inputs, outputs and science exit codes, writes its inputs and returns
    :meth:`job_calcinfo`. The exit codes every such job shares are defined here, once: 300 a declared output is
    missing, 310 an output is unreadable, 400 the job stopped at its walltime (for jobs that can), 410 the job
    refused its input (its exit status 1, ``error.json``).
    """

    JOB: t.ClassVar[Job]
    #: Seconds left to the job between its own walltime stop and the scheduler's limit (checkpoint, retrieval).
    WALLTIME_MARGIN_S: t.ClassVar[float] = 60.0

    @classmethod
    def define(cls, spec: CalcJobProcessSpec) -> None:
        super().define(spec)
        options = spec.inputs['metadata']['options']
        options['resources'].default = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}
        # 3xx: the output is missing or unreadable, rerunning may help
        spec.exit_code(300, 'ERROR_OUTPUT_FILES_MISSING', message='The job wrote no {filename}: it did not finish.')
        spec.exit_code(310, 'ERROR_READING_OUTPUT', message='Could not read {filename}: {exception}')
        # 4xx: the job stopped early or refused its input
        spec.exit_code(410, 'ERROR_INVALID_INPUT', message='The job refused its input: {message}')

    @staticmethod
    def define_walltime_exit_code(spec: CalcJobProcessSpec, where: str) -> None:
        """400 for a job that stops itself before the scheduler's walltime and leaves a checkpoint; ``where`` is a
        template such as ``'at step {step}'``."""
        spec.exit_code(400, 'ERROR_OUT_OF_WALLTIME', message=f'Stopped at the walltime {where}; a checkpoint is left.')

    def job_walltime_s(self) -> float | None:
        """When the job should stop itself: ``WALLTIME_MARGIN_S`` before the scheduler's limit, and no earlier than
        half of it; None without a limit."""
        walltime = self.inputs.metadata.options.get('max_wallclock_seconds')
        if not walltime:
            return None
        return max(float(walltime) - self.WALLTIME_MARGIN_S, 0.5 * float(walltime))

    @staticmethod
    def write_structure(folder: Folder, path: str, structure: orm.StructureData) -> None:
        """Stage ``structure`` as extended XYZ at ``path`` in the job folder (what the jobs read cells from)."""
        buffer = io.StringIO()
        structure.get_ase().write(buffer, format='extxyz')
        with folder.open(path, 'w') as handle:
            handle.write(buffer.getvalue())

    def job_calcinfo(self, arguments: list[str], **calcinfo_fields: t.Any) -> CalcInfo:
        """The ``CalcInfo`` of one run of the job's command with ``arguments``, retrieving what the job declares;
        ``calcinfo_fields`` (e.g. ``local_copy_list``) are set on it as given."""
        codeinfo = CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = [self.JOB.command, *arguments]
        codeinfo.stdout_name = self.JOB.stdout_name
        codeinfo.stderr_name = self.JOB.stderr_name
        calcinfo = CalcInfo()
        calcinfo.codes_info = [codeinfo]
        calcinfo.retrieve_list = self.JOB.retrieve_list()
        for name, value in calcinfo_fields.items():
            setattr(calcinfo, name, value)
        return calcinfo
