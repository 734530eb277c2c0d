"""``MdCalculation`` (``qrnn.md``): one restartable MD run with the QRNN, or with the OPLS-AA baseline; or several
independent QRNN runs batched in one job (``structures``).

The job runs ``aiida-qrnn-exec md .`` (:mod:`aiida_qrnn.jobs.md`) in its folder. With a ``model`` input the
model file is staged and the QRNN is the calculator; without one the classical OPLS-AA force field is, through the
same driver, so both sets of properties come from identical code. With ``parent_folder`` (the ``remote_folder``
of an earlier job on the same computer) the checkpoint, trajectory and log are copied and the run continues.

With a ``committee`` (two or more models with the elements of ``model``) and ``committee_interval`` > 0 in
``parameters`` the job writes the committee's disagreement to ``committee.csv`` (output ``committee``); the
``qrnn.committee_disagreement`` monitor (:mod:`aiida_qrnn.calculations.monitors`) reads that file while the job
runs and stops it above a threshold (see ``docs/md-and-analysis.md``, "Stopping on committee disagreement").

With ``structures`` (a namespace of labelled cells) instead of ``structure`` the job runs them as batched replicas
(:func:`aiida_qrnn.core.md.run_md_replicas`: one QRNN call per step for all of them), each in its own folder
``replicas/<label>/`` with its own trajectory, log, checkpoint and outcome; the parser gives one output namespace
``replicas.<label>`` per structure and decides the job's exit status by the rule of :mod:`aiida_qrnn.parsers.md`.
"""

from __future__ import annotations

import json

from aiida import orm
from aiida.common.datastructures import CalcInfo
from aiida.common.folders import Folder
from aiida.engine import CalcJobProcessSpec

from aiida_qrnn.calculations.base import JobCalcJob
from aiida_qrnn.core.md.committee import COMMITTEE_FILE
from aiida_qrnn.core.md.outputs import CHECKPOINT_FILE, LOG_FILE, TRAJECTORY_FILE
from aiida_qrnn.data.model import ModelData
from aiida_qrnn.jobs.md import INPUT_COMMITTEE, INPUT_MODEL, INPUT_PARAMETERS, INPUT_STRUCTURE, JOB, REPLICAS_FOLDER

__all__ = ('COMMITTEE_MONITOR', 'MdCalculation', 'validate_parameters')

#: Entry point of the monitor that stops a job on committee disagreement (``aiida.calculations.monitors``).
COMMITTEE_MONITOR = 'qrnn.committee_disagreement'

#: Files of a parent job that a continued run needs.
RESTART_FILES = (CHECKPOINT_FILE, TRAJECTORY_FILE, LOG_FILE)


def validate_parameters(value: orm.Dict, _) -> str | None:
    """Every key must be an ``MDSettings`` field with a valid value; the message names the setting."""
    from aiida_qrnn.core.md import MDSettings

    try:
        MDSettings.from_dict(value.get_dict())
    except (TypeError, ValueError) as exception:
        return f'parameters: {exception}'
    return None


def validate_inputs(inputs: dict, port_namespace) -> str | None:
    """Exactly one of ``structure`` and ``structures`` (batched replicas, QRNN only, no committee monitor); a committee
    needs ``model`` (same elements), two or more members and ``committee_interval`` > 0; the committee monitor needs a
    committee and valid ``threshold``/``quantity``."""
    from aiida_qrnn.core.md.committee import check_threshold

    if all(key in port_namespace for key in ('structure', 'structures')):  # not excluded by a wrapping work chain
        replicas = inputs.get('structures') or {}
        if ('structure' in inputs) == bool(replicas):
            return 'give either structure (one run) or structures (batched replicas), not both or neither.'
        if replicas and 'model' not in inputs:
            return 'structures: batched replicas need a QRNN model input (the OPLS-AA baseline runs one structure).'
        if replicas and any(monitor.get('entry_point') == COMMITTEE_MONITOR
                            for monitor in (inputs.get('monitors') or {}).values()):
            return (f'structures: the {COMMITTEE_MONITOR} monitor watches one run; with batched replicas set '
                    'committee_max_force_deviation in parameters instead.')
    committee = inputs.get('committee') or {}
    interval = inputs['parameters'].get('committee_interval', 0) if 'parameters' in inputs else None
    if committee:
        if 'model' not in inputs:
            return 'committee: needs a QRNN model input to drive the MD (the committee only scores it).'
        if len(committee) < 2:
            return f'committee: needs at least two models, got {len(committee)}.'
        elements = list(inputs['model'].elements)
        for label, member in sorted(committee.items()):
            if list(member.elements) != elements:
                return f'committee.{label}: elements {member.elements} differ from the model elements {elements}.'
        if interval == 0:
            return 'committee: set parameters committee_interval > 0 (steps between committee evaluations).'
    elif interval:
        return f'parameters: committee_interval={interval} needs a committee input.'
    for key, monitor in (inputs.get('monitors') or {}).items():
        if monitor.get('entry_point') != COMMITTEE_MONITOR:
            continue
        if not committee:
            return f'monitors.{key}: {COMMITTEE_MONITOR} needs a committee input.'
        kwargs = monitor.get('kwargs', {})
        try:
            check_threshold(kwargs.get('quantity', 'max_force_deviation'), kwargs.get('threshold'))
        except ValueError as exception:
            return f'monitors.{key}.kwargs: {exception}'
    return None


def validate_structure(value: orm.StructureData, _) -> str | None:
    if not all(value.pbc):
        return f'structure: the cell must be periodic in all three directions, got pbc={value.pbc}.'
    return None


def validate_structures(value: dict, _) -> str | None:
    """Every replica periodic in all three directions (the label names the offender)."""
    for label, structure in sorted((value or {}).items()):
        if not all(structure.pbc):
            return f'structures.{label}: the cell must be periodic in all three directions, got pbc={structure.pbc}.'
    return None


def replica_seeds(labels: list[str], seed: int) -> dict[str, int]:
    """Velocity seed of each replica: ``seed`` plus its index among the sorted labels."""
    return {label: seed + index for index, label in enumerate(sorted(labels))}


class MdCalculation(JobCalcJob):
    """MD of a periodic cell (``MDSettings`` in ``parameters``) with a QRNN ``model`` or the OPLS-AA baseline."""

    JOB = JOB

    @classmethod
    def define(cls, spec: CalcJobProcessSpec) -> None:
        super().define(spec)
        spec.input('structure', valid_type=orm.StructureData, validator=validate_structure, required=False,
                   help='Periodic cell of whole molecules (molecules are found from bonds in the job).')
        spec.input_namespace('structures', valid_type=orm.StructureData, dynamic=True, required=False,
                             validator=validate_structures,
                             help='Instead of structure: labelled periodic cells run as batched replicas in one job '
                                  '(one QRNN call per step for all; each its own thermostat, files and outcome). '
                                  'Replica i of the sorted labels draws its velocities with seed + i.')
        spec.input('model', valid_type=ModelData, required=False,
                   help='The QRNN; absent: the classical OPLS-AA baseline (HO-(CH2CH2O)n-H only).')
        spec.input('parameters', valid_type=orm.Dict, validator=validate_parameters,
                   help='MDSettings: ensemble, n_steps (total across restarts), timestep_fs, temperature_K, ...')
        spec.input('seed', valid_type=orm.Int, default=lambda: orm.Int(0),
                   help='Seed of the initial Maxwell-Boltzmann velocities of a fresh run (replicas: seed + index).')
        spec.input('parent_folder', valid_type=orm.RemoteData, required=False,
                   help='Folder of an earlier MD job of the same system: continue from its checkpoint.')
        spec.input('device', valid_type=orm.Str, default=lambda: orm.Str('cpu'), help='Torch device of the QRNN.')
        spec.input_namespace('committee', valid_type=ModelData, dynamic=True, required=False,
                             help='Two or more models (elements of `model`) evaluated every committee_interval steps '
                                  'into committee.csv; the qrnn.committee_disagreement monitor reads it.')
        spec.inputs.validator = validate_inputs
        options = spec.inputs['metadata']['options']
        options['parser_name'].default = 'qrnn.md'
        options['environment_variables'].default = {'OMP_NUM_THREADS': '1', 'OPENBLAS_NUM_THREADS': '1'}

        spec.output('structure', valid_type=orm.StructureData, required=False,
                    help='Configuration and cell of the last checkpoint (the last good state of an unstable run).')
        spec.output('trajectory', valid_type=orm.SinglefileData, required=False,
                    help='H5MD trajectory, unwrapped positions, all frames since step 0.')
        spec.output('log', valid_type=orm.ArrayData, required=False,
                    help='The md_log.csv columns (energies eV, temperature K, pressure bar, volume, density).')
        spec.output('committee', valid_type=orm.ArrayData, required=False,
                    help='committee.csv: step, time_fs, rho_f ((eV/Å)^2, paper eq. 2), max_force_deviation (eV/Å).')
        spec.output('output_parameters', valid_type=orm.Dict, required=False,
                    help="status ('finished', 'stopped_walltime', 'committee_disagreement', 'unstable_...'), "
                         'status_code, name, step, time_fs, message, checkpoint_step (None: nothing to continue); '
                         'for batched replicas the outcome of the job and the labels of each outcome.')
        spec.output_namespace('replicas', dynamic=True, required=False,
                              help='Batched replicas: replicas.<label>.{trajectory, log, committee, structure, '
                                   'output_parameters}, as the single-structure outputs of each replica.')

        cls.define_walltime_exit_code(spec, 'at step {step}')
        spec.exit_code(510, 'ERROR_UNSTABLE_NOT_FINITE', message='Unstable, non-finite values: {message}')
        spec.exit_code(511, 'ERROR_UNSTABLE_CLOSE_CONTACT', message='Unstable, atoms too close: {message}')
        spec.exit_code(512, 'ERROR_UNSTABLE_TEMPERATURE', message='Unstable, temperature runaway: {message}')

    def prepare_for_submission(self, folder: Folder) -> CalcInfo:
        """Write the cell(s), the settings and the model; copy the parent's checkpoint files on the remote."""
        replicas = dict(self.inputs.get('structures') or {})
        if replicas:
            folder.get_subfolder(REPLICAS_FOLDER, create=True)
            for label in sorted(replicas):
                folder.get_subfolder(f'{REPLICAS_FOLDER}/{label}', create=True)
                self.write_structure(folder, f'{REPLICAS_FOLDER}/{label}/{INPUT_STRUCTURE}', replicas[label])
        else:
            self.write_structure(folder, INPUT_STRUCTURE, self.inputs.structure)
        settings = self.inputs.parameters.get_dict()
        if settings.get('walltime_s') is None and self.job_walltime_s() is not None:
            settings['walltime_s'] = self.job_walltime_s()
        job_input = {'settings': settings, 'seed': self.inputs.seed.value}
        if replicas:
            job_input['replicas'] = replica_seeds(list(replicas), self.inputs.seed.value)
        with folder.open(INPUT_PARAMETERS, 'w') as handle:
            json.dump(job_input, handle, indent=2)
        if 'model' in self.inputs:
            repository = self.inputs.model.base.repository
            with repository.open(ModelData.WEIGHTS_FILENAME, 'rb') as source, folder.open(INPUT_MODEL, 'wb') as target:
                target.write(source.read())
        committee = self.inputs.get('committee') or {}
        if committee:
            folder.get_subfolder(INPUT_COMMITTEE, create=True)
        for label, member in sorted(committee.items()):
            with member.base.repository.open(ModelData.WEIGHTS_FILENAME, 'rb') as source, \
                    folder.open(f'{INPUT_COMMITTEE}/{label}.safetensors', 'wb') as target:
                target.write(source.read())

        calcinfo = self.job_calcinfo(['.', '--device', self.inputs.device.value])
        if 'parent_folder' in self.inputs:
            parent = self.inputs.parent_folder
            if replicas:
                calcinfo.remote_copy_list = _replica_restart_copies(parent, sorted(replicas), bool(committee))
            else:
                restart_files = RESTART_FILES
                # A parent that wrote committee.csv: the continued run appends to it.
                if committee and parent.creator is not None and 'committee' in parent.creator.outputs:
                    restart_files = (*RESTART_FILES, COMMITTEE_FILE)
                calcinfo.remote_copy_list = [
                    (parent.computer.uuid, f'{parent.get_remote_path()}/{name}', name) for name in restart_files
                ]
        if replicas:
            calcinfo.retrieve_list.append(REPLICAS_FOLDER)
        return calcinfo


def _replica_restart_copies(parent: orm.RemoteData, labels: list[str], with_committee: bool) -> list[tuple]:
    """Remote copies of the checkpoint, trajectory and log (and committee log) of each parent replica that left a
    checkpoint (its ``replicas.<label>.output_parameters`` say so); the others start again."""
    outputs = parent.creator.outputs if parent.creator is not None else None
    if outputs is None or 'replicas' not in outputs:
        raise ValueError(f'parent_folder<{parent.pk}> was not made by a batched MdCalculation: its replicas are '
                         'unknown.')
    copies = []
    for label in labels:
        if label not in outputs.replicas:
            raise ValueError(f'structures.{label}: the parent job<{parent.creator.pk}> has no such replica '
                             f'(it has {sorted(outputs.replicas)}).')
        replica = outputs.replicas[label]
        if 'output_parameters' not in replica or replica.output_parameters.get('checkpoint_step') is None:
            continue
        names = (*RESTART_FILES, COMMITTEE_FILE) if with_committee and 'committee' in replica else RESTART_FILES
        copies += [(parent.computer.uuid, f'{parent.get_remote_path()}/{REPLICAS_FOLDER}/{label}/{name}',
                    f'{REPLICAS_FOLDER}/{label}/{name}') for name in names]
    return copies
