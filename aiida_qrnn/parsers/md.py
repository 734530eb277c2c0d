"""``MdParser``: trajectory, log, final cell and outcome of an ``MdCalculation``; MD statuses onto exit codes."""

from __future__ import annotations

import io
import json

import numpy as np
from aiida import orm
from aiida.engine import ExitCode
from aiida.parsers import Parser

from aiida_qrnn.cli.exec_md import EXIT_BAD_INPUT, OUTPUT_ERROR, OUTPUT_FINAL
from aiida_qrnn.core.md import MDStatus
from aiida_qrnn.core.md.runner import CHECKPOINT_FILE, LOG_FILE, STATUS_FILE, TRAJECTORY_FILE

__all__ = ('UNSTABLE_EXIT_CODES', 'MdParser')

#: MDStatus of an unstable run → exit-code label of ``MdCalculation``.
UNSTABLE_EXIT_CODES = {
    MDStatus.UNSTABLE_NOT_FINITE: 'ERROR_UNSTABLE_NOT_FINITE',
    MDStatus.UNSTABLE_CLOSE_CONTACT: 'ERROR_UNSTABLE_CLOSE_CONTACT',
    MDStatus.UNSTABLE_TEMPERATURE: 'ERROR_UNSTABLE_TEMPERATURE',
}


class MdParser(Parser):
    """Attach whatever the run wrote, then map ``status.json`` onto 0, 400 (walltime) or 510-512 (unstable).

    ``output_parameters`` add ``checkpoint_step`` (None: no checkpoint, a restart must start again). A job killed
    by the scheduler leaves no ``status.json``; if it left a checkpoint it is a walltime stop (400), which the
    restart work chain continues, otherwise output is missing (300).
    """

    def parse(self, **kwargs) -> ExitCode | None:
        import ase.io

        from aiida_qrnn.core.md import read_log

        repository = self.retrieved.base.repository
        names = set(repository.list_object_names())
        if OUTPUT_ERROR in names:
            error = json.loads(repository.get_object_content(OUTPUT_ERROR))
            if error.get('status') == EXIT_BAD_INPUT:
                return self.exit_codes.ERROR_INVALID_INPUT.format(message=error['message'])
        try:
            if TRAJECTORY_FILE in names:
                with repository.open(TRAJECTORY_FILE, 'rb') as handle:
                    self.out('trajectory', orm.SinglefileData(handle, filename=TRAJECTORY_FILE))
            if LOG_FILE in names:
                with repository.open(LOG_FILE, 'r') as handle:
                    columns = read_log(io.StringIO(handle.read()))
                log = orm.ArrayData()
                for name, values in columns.items():
                    log.set_array(name, np.asarray(values))
                self.out('log', log)
            checkpoint_step = None
            if OUTPUT_FINAL in names:
                final = ase.io.read(io.StringIO(repository.get_object_content(OUTPUT_FINAL)), format='extxyz')
                checkpoint_step = int(final.info['step'])
                self.out('structure', orm.StructureData(ase=final))
            status = json.loads(repository.get_object_content(STATUS_FILE)) if STATUS_FILE in names else None
        except Exception as exception:  # h5py, csv, json and ASE raise many types for malformed files
            return self.exit_codes.ERROR_READING_OUTPUT.format(filename=', '.join(sorted(names)), exception=exception)

        if status is None:
            if CHECKPOINT_FILE in names:
                from aiida_qrnn.core.md.checkpoint import Checkpoint

                with repository.as_path(CHECKPOINT_FILE) as path:
                    checkpoint_step = Checkpoint.load(path).step
                self.out('output_parameters', orm.Dict({
                    'status': int(MDStatus.STOPPED_WALLTIME), 'name': MDStatus.STOPPED_WALLTIME.name,
                    'step': checkpoint_step, 'checkpoint_step': checkpoint_step,
                    'message': 'killed before it wrote status.json (scheduler walltime?)',
                }))
                return self.exit_codes.ERROR_WALLTIME.format(step=checkpoint_step)
            return self.exit_codes.ERROR_OUTPUT_FILES_MISSING.format(filename=STATUS_FILE)
        self.out('output_parameters', orm.Dict({**status, 'checkpoint_step': checkpoint_step}))
        code = MDStatus(status['status'])
        if code == MDStatus.STOPPED_WALLTIME:
            return self.exit_codes.ERROR_WALLTIME.format(step=status['step'])
        if code.is_unstable:
            return getattr(self.exit_codes, UNSTABLE_EXIT_CODES[code]).format(message=status['message'])
        return None
