"""``ClassicalMdParser``: trajectories, final cell and summary of a ``ClassicalMdCalculation``."""

from __future__ import annotations

import io
import json

from aiida import orm
from aiida.engine import ExitCode

from aiida_qrnn.jobs.classical_md import EXIT_UNSTABLE, JOB
from aiida_qrnn.jobs.folder import EXIT_BAD_INPUT
from aiida_qrnn.parsers.base import JobParser

__all__ = ('ClassicalMdParser',)


class ClassicalMdParser(JobParser):
    """Map ``error.json`` onto 410 (bad input) or 500 (unstable); otherwise attach every output.

    A stage run for zero steps leaves no trajectory, so the trajectory outputs are attached when present.
    """

    STATUS_EXIT_CODES = {EXIT_BAD_INPUT: 'ERROR_INVALID_INPUT', EXIT_UNSTABLE: 'ERROR_MD_UNSTABLE'}

    def parse(self, **kwargs) -> ExitCode | None:
        import ase.io

        failure = self.job_failure()
        if failure is not None:
            return failure
        names = self.retrieved_names
        summary_file, final_file = JOB.outputs['summary'], JOB.outputs['final']
        for required in (summary_file, final_file):
            if required not in names:
                return self.output_missing(required)
        try:
            summary = json.loads(self.retrieved.base.repository.get_object_content(summary_file))
            text = self.retrieved.base.repository.get_object_content(final_file)
            final = ase.io.read(io.StringIO(text), format='extxyz')
        except Exception as exception:  # json and ASE raise many types for malformed text
            return self.output_unreadable(f'{summary_file}/{final_file}', exception)
        self.out('output_parameters', orm.Dict(summary))
        self.out('structure', orm.StructureData(ase=final))
        for link, role in (('npt_trajectory', 'npt_trajectory'), ('trajectory', 'nvt_trajectory')):
            filename = JOB.outputs[role]
            if filename in names:
                with self.retrieved.base.repository.open(filename, 'rb') as handle:
                    self.out(link, orm.SinglefileData(handle, filename=filename))
        return None
