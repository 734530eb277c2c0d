"""``MdParser``: trajectory, log, committee log, final cell and outcome of an ``MdCalculation``; MD statuses onto
exit codes."""

from __future__ import annotations

import io
import json

import numpy as np
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import ExitCode

from aiida_qrnn.calculations.md import COMMITTEE_MONITOR
from aiida_qrnn.core.md import COMMITTEE_FILE, MDStatus
from aiida_qrnn.core.md.outputs import CHECKPOINT_FILE, LOG_FILE, STATUS_FILE, TRAJECTORY_FILE
from aiida_qrnn.jobs.md import OUTPUT_FINAL, REPLICAS_FOLDER, batch_status
from aiida_qrnn.parsers.base import JobParser

__all__ = ('UNSTABLE_EXIT_CODES', 'MdParser')

#: MDStatus of an unstable run → exit-code label of ``MdCalculation``.
UNSTABLE_EXIT_CODES = {
    MDStatus.UNSTABLE_NOT_FINITE: 'ERROR_UNSTABLE_NOT_FINITE',
    MDStatus.UNSTABLE_CLOSE_CONTACT: 'ERROR_UNSTABLE_CLOSE_CONTACT',
    MDStatus.UNSTABLE_TEMPERATURE: 'ERROR_UNSTABLE_TEMPERATURE',
}


class MdParser(JobParser):
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

    Batched replicas (``structures`` input, folders ``replicas/<label>/``): each replica gets the outputs above in
    ``replicas.<label>`` (its own ``output_parameters`` with its own status), and the job's exit status follows
    one rule (:func:`aiida_qrnn.jobs.md.batch_status`):

    1. a replica stopped at the walltime (or killed after a checkpoint): 400, so that a restart continues the batch;
    2. else at least one replica finished (or stopped for committee disagreement): 0, the finished replicas are
       usable; the unstable ones are listed in ``output_parameters['unstable']`` (and a warning is logged);
    3. else every replica is unstable: the 51x code of the first by label, the message naming each replica's.

    The job's ``output_parameters`` then hold ``status`` (of the rule), ``replicas`` ({label: status}), one list of
    labels per outcome (``finished``, ``unstable_temperature``, ...), ``unstable``, ``step`` (the largest),
    ``checkpoint_step`` (the replicas' common checkpoint step, None when they differ or one has none) and ``message``.
    A replica with neither ``status.json`` nor a checkpoint makes the job 300.
    """

    def parse(self, **kwargs) -> ExitCode | None:
        from aiida_qrnn.core.md import read_trajectory

        failure = self.job_failure()
        if failure is not None:
            return failure
        repository = self.retrieved.base.repository
        names = self.retrieved_names
        if REPLICAS_FOLDER in names:
            return self._parse_replicas(repository)
        try:
            outputs, status, checkpoint, committee = _read_run(repository, '')
        except Exception as exception:  # h5py, csv, json and ASE raise many types for malformed files
            return self.output_unreadable(', '.join(sorted(names)), exception)
        for name, node in outputs.items():
            self.out(name, node)
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
                return self.exit_codes.ERROR_OUT_OF_WALLTIME.format(step=checkpoint_step)
            return self.output_missing(STATUS_FILE)
        code = MDStatus(status['status'])
        extra = {'stopped_by': 'driver'} if code == MDStatus.COMMITTEE_DISAGREEMENT else {}
        self.out('output_parameters', orm.Dict({**status, **_status_fields(code), **extra,
                                                'checkpoint_step': checkpoint_step}))
        if code == MDStatus.STOPPED_WALLTIME:
            return self.exit_codes.ERROR_OUT_OF_WALLTIME.format(step=status['step'])
        if code.is_unstable:
            return getattr(self.exit_codes, UNSTABLE_EXIT_CODES[code]).format(message=status['message'])
        return None

    def _parse_replicas(self, repository) -> ExitCode | None:
        """Batched replicas: ``replicas.<label>.*`` outputs of each folder, then the job's exit status by the rule
        of the class docstring, and ``output_parameters`` with the outcome and the labels of each outcome."""
        labels = sorted(repository.list_object_names(REPLICAS_FOLDER))
        outcomes, checkpoints, steps, messages = {}, {}, {}, {}
        for label in labels:
            prefix = f'{REPLICAS_FOLDER}/{label}/'
            try:
                outputs, status, checkpoint, _ = _read_run(repository, prefix)
            except Exception as exception:  # h5py, csv, json and ASE raise many types for malformed files
                return self.output_unreadable(prefix, exception)
            checkpoint_step = None if checkpoint is None else checkpoint.step
            if status is None and checkpoint is not None:  # killed by the scheduler after a checkpoint
                status = {'status': int(MDStatus.STOPPED_WALLTIME), 'step': checkpoint_step,
                          'time_fs': checkpoint.time_fs,
                          'message': 'killed before it wrote status.json (scheduler walltime?)'}
            if status is not None:
                code = MDStatus(status['status'])
                extra = {'stopped_by': 'driver'} if code == MDStatus.COMMITTEE_DISAGREEMENT else {}
                outputs['output_parameters'] = orm.Dict({**status, **_status_fields(code), **extra,
                                                         'checkpoint_step': checkpoint_step})
                outcomes[label], steps[label], messages[label] = code, status['step'], status['message']
            checkpoints[label] = checkpoint_step
            for name, node in outputs.items():
                self.out(f'{REPLICAS_FOLDER}.{label}.{name}', node)
        missing = [label for label in labels if label not in outcomes]
        if missing:
            return self.output_missing(f'{STATUS_FILE} or {CHECKPOINT_FILE} of replicas {missing}')
        outcome = batch_status([outcomes[label] for label in labels])
        by_outcome = {name: [label for label in labels if outcomes[label].name.lower() == name]
                      for name in sorted({status.name.lower() for status in outcomes.values()})}
        unstable = [label for label in labels if outcomes[label].is_unstable]
        # A common checkpoint step lets a restart continue every replica with one set of settings (the work chain
        # changes n_steps and the timestep after an instability); otherwise None: start again.
        common = set(checkpoints.values())
        summary = {
            **_status_fields(outcome), 'replicas': {label: outcomes[label].name.lower() for label in labels},
            **by_outcome, 'unstable': unstable, 'n_replicas': len(labels), 'step': max(steps.values()),
            'checkpoint_step': common.pop() if len(common) == 1 else None,
            'message': '; '.join(f'{label}: {messages[label]}' for label in labels),
        }
        self.out('output_parameters', orm.Dict(summary))
        if outcome == MDStatus.STOPPED_WALLTIME:
            walltime = [checkpoints[label] for label in labels if outcomes[label] == MDStatus.STOPPED_WALLTIME]
            return self.exit_codes.ERROR_OUT_OF_WALLTIME.format(step=min(walltime))
        if outcome.is_unstable:
            return getattr(self.exit_codes, UNSTABLE_EXIT_CODES[outcome]).format(message=summary['message'])
        if unstable:
            self.logger.warning(f'replicas {unstable} became unstable, the others are usable: '
                                + '; '.join(f'{label}: {messages[label]}' for label in unstable))
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


def _read_run(repository, prefix: str) -> tuple[dict[str, orm.Data], dict | None, object, dict | None]:
    """Output nodes (trajectory, log, committee, structure), ``status.json``, checkpoint and committee columns of the
    run folder at ``prefix`` ('' for the job folder, ``replicas/<label>/`` for a replica) of the retrieved files."""
    import ase.io

    from aiida_qrnn.core.md import read_committee_log, read_log
    from aiida_qrnn.core.md.checkpoint import Checkpoint

    folder = prefix.rstrip('/') or None
    names = {prefix + name for name in repository.list_object_names(folder)}
    outputs: dict[str, orm.Data] = {}
    if prefix + TRAJECTORY_FILE in names:
        with repository.open(prefix + TRAJECTORY_FILE, 'rb') as handle:
            outputs['trajectory'] = orm.SinglefileData(handle, filename=TRAJECTORY_FILE)
    if prefix + LOG_FILE in names:
        with repository.open(prefix + LOG_FILE, 'r') as handle:
            columns = _read_log(handle.read(), read_log)
        log = orm.ArrayData()
        for name, values in columns.items():
            log.set_array(name, np.asarray(values))
        outputs['log'] = log
    committee = None
    if prefix + COMMITTEE_FILE in names:
        with repository.open(prefix + COMMITTEE_FILE, 'r') as handle:
            committee = read_committee_log(io.StringIO(handle.read()))
        committee_node = orm.ArrayData()
        for name, values in committee.items():
            committee_node.set_array(name, values)
        outputs['committee'] = committee_node
    checkpoint = None
    if prefix + OUTPUT_FINAL in names:
        final = ase.io.read(io.StringIO(repository.get_object_content(prefix + OUTPUT_FINAL)), format='extxyz')
        outputs['structure'] = orm.StructureData(ase=final)
    if prefix + CHECKPOINT_FILE in names:
        with repository.as_path(prefix + CHECKPOINT_FILE) as path:
            checkpoint = Checkpoint.load(path)
        if prefix + OUTPUT_FINAL not in names:
            outputs['structure'] = orm.StructureData(ase=_checkpoint_atoms(checkpoint))
    status = json.loads(repository.get_object_content(prefix + STATUS_FILE)) if prefix + STATUS_FILE in names \
        else None
    return outputs, status, checkpoint, committee


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
