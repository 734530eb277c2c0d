"""``MdParser``: trajectory, log, committee log, final cell and outcome of an ``MdCalculation``; MD statuses onto
exit codes."""

from __future__ import annotations

import io
import json

import numpy as np
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import ExitCode
from aiida.parsers import Parser

from aiida_qrnn.calculations.md import COMMITTEE_MONITOR
from aiida_qrnn.cli.exec_md import EXIT_BAD_INPUT, OUTPUT_ERROR, OUTPUT_FINAL
from aiida_qrnn.core.md import COMMITTEE_FILE, MDStatus
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

    ``output_parameters`` are the run's ``status.json`` with ``status`` the outcome's lower-case name
    (``'finished'``, ``'stopped_walltime'``, ``'committee_disagreement'``, ``'unstable_...'``), ``status_code`` its
    number and ``checkpoint_step`` (None: no checkpoint, a restart must start again).

    A job killed before it wrote ``status.json``:

    * by the ``qrnn.committee_disagreement`` monitor (one of the job's ``monitors`` inputs, and its rule holds on
      the retrieved ``committee.csv``): exit status 0, ``status`` ``'committee_disagreement'``, ``step`` the first
      step above the threshold, ``stopped_by`` ``'monitor'``, like the driver's own committee stop;
    * otherwise (the scheduler): with a checkpoint a walltime stop (400), which the restart work chain continues,
      without one output is missing (300).

    ``structure`` is the configuration of the last checkpoint (``final.extxyz``, or the checkpoint itself when
    the job was killed; the last trajectory frame when the monitor killed it before its first checkpoint).
    """

    def parse(self, **kwargs) -> ExitCode | None:
        import ase.io

        from aiida_qrnn.core.md import read_committee_log, read_log, read_trajectory
        from aiida_qrnn.core.md.checkpoint import Checkpoint

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
                    columns = _read_log(handle.read(), read_log)
                log = orm.ArrayData()
                for name, values in columns.items():
                    log.set_array(name, np.asarray(values))
                self.out('log', log)
            committee = None
            if COMMITTEE_FILE in names:
                with repository.open(COMMITTEE_FILE, 'r') as handle:
                    committee = read_committee_log(io.StringIO(handle.read()))
                committee_node = orm.ArrayData()
                for name, values in committee.items():
                    committee_node.set_array(name, values)
                self.out('committee', committee_node)
            checkpoint = None
            if OUTPUT_FINAL in names:
                final = ase.io.read(io.StringIO(repository.get_object_content(OUTPUT_FINAL)), format='extxyz')
                self.out('structure', orm.StructureData(ase=final))
            if CHECKPOINT_FILE in names:
                with repository.as_path(CHECKPOINT_FILE) as path:
                    checkpoint = Checkpoint.load(path)
                if OUTPUT_FINAL not in names:
                    self.out('structure', orm.StructureData(ase=_checkpoint_atoms(checkpoint)))
            status = json.loads(repository.get_object_content(STATUS_FILE)) if STATUS_FILE in names else None
        except Exception as exception:  # h5py, csv, json and ASE raise many types for malformed files
            return self.exit_codes.ERROR_READING_OUTPUT.format(filename=', '.join(sorted(names)), exception=exception)
        checkpoint_step = None if checkpoint is None else checkpoint.step

        if status is None:
            stop = self._committee_monitor_stop(committee)
            if stop is not None:
                if 'structure' not in self.outputs and TRAJECTORY_FILE in names:  # killed before a checkpoint
                    with repository.as_path(TRAJECTORY_FILE) as path:
                        last = read_trajectory(path, frames=slice(-1, None)).to_atoms(0)
                    self.out('structure', orm.StructureData(ase=last))
                self.out('output_parameters', orm.Dict({
                    **_status_fields(MDStatus.COMMITTEE_DISAGREEMENT), **stop, 'checkpoint_step': checkpoint_step,
                    'stopped_by': 'monitor',
                }))
                return None
            if checkpoint is not None:
                self.out('output_parameters', orm.Dict({
                    **_status_fields(MDStatus.STOPPED_WALLTIME), 'step': checkpoint_step,
                    'time_fs': checkpoint.time_fs, 'checkpoint_step': checkpoint_step,
                    'message': 'killed before it wrote status.json (scheduler walltime?)',
                }))
                return self.exit_codes.ERROR_WALLTIME.format(step=checkpoint_step)
            return self.exit_codes.ERROR_OUTPUT_FILES_MISSING.format(filename=STATUS_FILE)
        code = MDStatus(status['status'])
        extra = {'stopped_by': 'driver'} if code == MDStatus.COMMITTEE_DISAGREEMENT else {}
        self.out('output_parameters', orm.Dict({**status, **_status_fields(code), **extra,
                                                'checkpoint_step': checkpoint_step}))
        if code == MDStatus.STOPPED_WALLTIME:
            return self.exit_codes.ERROR_WALLTIME.format(step=status['step'])
        if code.is_unstable:
            return getattr(self.exit_codes, UNSTABLE_EXIT_CODES[code]).format(message=status['message'])
        return None

    def _committee_monitor_stop(self, committee: dict[str, np.ndarray] | None) -> dict | None:
        """Step, value, quantity and threshold of the first ``committee.csv`` row above the threshold of one of the
        job's ``qrnn.committee_disagreement`` monitors, or None (no such monitor, or no row above)."""
        from aiida_qrnn.core.md.committee import first_exceedance

        if committee is None:
            return None
        links = self.node.base.links.get_incoming(link_type=LinkType.INPUT_CALC).all()
        monitors = [link.node.get_dict() for link in links if link.link_label.startswith('monitors__')]
        stops = []
        for monitor in monitors:
            if monitor.get('entry_point') != COMMITTEE_MONITOR:
                continue
            quantity = monitor.get('kwargs', {}).get('quantity', 'max_force_deviation')
            threshold = monitor['kwargs']['threshold']
            exceeded = first_exceedance(committee, quantity, threshold)
            if exceeded is not None:
                step, value = exceeded
                time_fs = float(committee['time_fs'][committee['step'] == step][0])
                stops.append({
                    'step': step, 'time_fs': time_fs, 'quantity': quantity, 'value': value, 'threshold': threshold,
                    'message': f'stopped by the {COMMITTEE_MONITOR} monitor: {quantity} {value:.4g} exceeds the '
                               f'threshold {threshold:g} at step {step}',
                })
        return min(stops, key=lambda stop: stop['step']) if stops else None


def _read_log(text: str, read_log) -> dict[str, np.ndarray]:
    """The log's columns; a run stopped at step 0 (unstable initial structure) leaves the header only: empty
    columns, so that its status, not a reading error, reaches the user."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) <= 1:
        return {name: np.zeros(0) for name in (lines[0].split(',') if lines else [])}
    return read_log(io.StringIO(text))


def _status_fields(status: MDStatus) -> dict:
    """``status`` (lower-case name, the string callers compare), ``status_code`` and ``name`` of an outcome."""
    return {'status': status.name.lower(), 'status_code': int(status), 'name': status.name}


def _checkpoint_atoms(checkpoint):
    """The checkpoint's configuration (positions, momenta, cell; periodic, as ``MdCalculation`` requires)."""
    from ase import Atoms

    state = checkpoint.integrator_state
    atoms = Atoms(numbers=checkpoint.numbers, positions=state['positions'], cell=state['cell'], pbc=True)
    atoms.set_momenta(state['momenta'])
    atoms.info.update(step=checkpoint.step, time_fs=checkpoint.time_fs)
    return atoms
