"""``ClassicalMdParser``: trajectories, final cell and summary of a ``ClassicalMdCalculation``."""

from __future__ import annotations

import io
import json

from aiida import orm
from aiida.engine import ExitCode
from aiida.parsers import Parser

from aiida_qrnn.cli.exec_sampling import EXIT_BAD_INPUT, EXIT_UNSTABLE, OUTPUT_ERROR, OUTPUT_SUMMARY
from aiida_qrnn.core.forcefield.md import FINAL_STRUCTURE, STAGES

__all__ = ('ClassicalMdParser',)


class ClassicalMdParser(Parser):
    """Map ``error.json`` onto 410 (bad input) or 500 (unstable); otherwise attach every output.

    A stage run for zero steps leaves no trajectory, so the trajectory outputs are attached when present.
    """

    def parse(self, **kwargs) -> ExitCode | None:
        import ase.io

        names = set(self.retrieved.base.repository.list_object_names())
        if OUTPUT_ERROR in names:
            error = json.loads(self.retrieved.base.repository.get_object_content(OUTPUT_ERROR))
            if error.get('status') == EXIT_UNSTABLE:
                return self.exit_codes.ERROR_MD_UNSTABLE.format(message=error['message'])
            if error.get('status') == EXIT_BAD_INPUT:
                return self.exit_codes.ERROR_INVALID_INPUT.format(message=error['message'])
        for required in (OUTPUT_SUMMARY, FINAL_STRUCTURE):
            if required not in names:
                return self.exit_codes.ERROR_OUTPUT_FILES_MISSING.format(filename=required)
        try:
            summary = json.loads(self.retrieved.base.repository.get_object_content(OUTPUT_SUMMARY))
            text = self.retrieved.base.repository.get_object_content(FINAL_STRUCTURE)
            final = ase.io.read(io.StringIO(text), format='extxyz')
        except Exception as exception:  # json and ASE raise many types for malformed text
            return self.exit_codes.ERROR_READING_OUTPUT.format(filename=f'{OUTPUT_SUMMARY}/{FINAL_STRUCTURE}',
                                                               exception=exception)
        self.out('output_parameters', orm.Dict(summary))
        self.out('structure', orm.StructureData(ase=final))
        for link, stage in (('npt_trajectory', 'npt'), ('trajectory', 'nvt')):
            filename = STAGES[stage]
            if filename in names:
                with self.retrieved.base.repository.open(filename, 'rb') as handle:
                    self.out(link, orm.SinglefileData(handle, filename=filename))
        return None
