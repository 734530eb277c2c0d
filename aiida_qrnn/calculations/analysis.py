"""``AnalysisCalculation``: the property protocol's trajectory analyses as a job on the computer that ran the MD."""

from __future__ import annotations

import io
import json

import numpy as np
from aiida import orm
from aiida.common.datastructures import CalcInfo
from aiida.common.folders import Folder
from aiida.engine import CalcJobProcessSpec
from aiida.engine.processes.calcjobs.calcjob import validate_calc_job

from aiida_qrnn.calculations.base import JobCalcJob
from aiida_qrnn.jobs.analysis import JOB, REPLICA_FILES, TASKS

__all__ = ('AnalysisCalculation',)


def validate_inputs(inputs: dict, port_namespace) -> str | None:
    """AiiDA's own checks (code and computer), then: every replica has a log and a trajectory; VDOS trajectories and
    chain lengths only for replicas there are."""
    message = validate_calc_job(inputs, port_namespace) if port_namespace is not None else None
    if message:
        return message
    if any(key not in inputs for key in ('npt_logs', 'trajectories')):
        return None  # left out by a wrapping work chain
    logs, trajectories = set(inputs['npt_logs']), set(inputs['trajectories'])
    if logs != trajectories:
        return (f'npt_logs and trajectories must name the same replicas, got {sorted(logs)} and '
                f'{sorted(trajectories)}.')
    if not logs:
        return 'trajectories: give at least one replica.'
    for name in ('vdos_trajectories', 'n_units'):
        extra = sorted(set(inputs.get(name, {})) - logs)
        if extra:
            return f'{name}: replicas {extra} have no trajectory.'
    return None


def validate_task(value: orm.Str, _) -> str | None:
    if value.value not in TASKS:
        return f'task: one of {list(TASKS)}, got {value.value!r}.'
    return None


class AnalysisCalculation(JobCalcJob):
    """Run ``aiida-qrnn-exec analyse`` over the replicas given (one job for many replicas keeps jobs few).

    ``task`` ``density_frame``: ``trajectories`` are NPT runs, output ``structures.<label>`` the frame whose density
    is closest to the mean of the detected production window (attributes ``npt_step``, ``npt_mean_density_g_cm3``).
    ``task`` ``properties``: ``trajectories`` are NVT runs, outputs ``scalars.<label>`` and
    ``distributions.<label>`` (arrays ``<distribution>__<array>``) of
    :func:`aiida_qrnn.core.analysis.properties.replica_properties`. The trajectories are copied into the job folder
    from the repository; the logs are written there as ``.npz``.
    """

    JOB = JOB

    @classmethod
    def define(cls, spec: CalcJobProcessSpec) -> None:
        super().define(spec)
        spec.input('task', valid_type=orm.Str, validator=validate_task, help=f'One of {list(TASKS)}.')
        spec.input_namespace('npt_logs', valid_type=orm.ArrayData, dynamic=True,
                             help='Per replica label: the NPT log of the MD job (volume_A3, enthalpy_eV, step, ...).')
        spec.input_namespace('trajectories', valid_type=orm.SinglefileData, dynamic=True,
                             help='Per replica label: the H5MD trajectory (NPT for density_frame, NVT for properties).')
        spec.input_namespace('vdos_trajectories', valid_type=orm.SinglefileData, dynamic=True, required=False,
                             help='Per replica label (optional): a densely sampled NVT for the quantum c_p correction.')
        spec.input_namespace('n_units', valid_type=orm.Int, dynamic=True, required=False,
                             help='Per replica label: repeat units of the oligomer (for the experimental viscosity).')
        spec.input('temperature_K', valid_type=orm.Float, default=lambda: orm.Float(300.0),
                   help='Thermostat temperature of the runs.')
        spec.input('analysis', valid_type=orm.Dict, required=False,
                   help='discard_fraction, min_independent_samples, msd_fit_start_fraction, msd_fit_end_fraction, '
                        'viscosity_mPa_s (optional); defaults for those left out.')
        spec.inputs.validator = validate_inputs
        options = spec.inputs['metadata']['options']
        options['parser_name'].default = 'qrnn.analysis'
        spec.output_namespace('structures', valid_type=orm.StructureData, dynamic=True,
                              help='density_frame: per replica, the NPT frame at the mean density.')
        spec.output_namespace('scalars', valid_type=orm.Dict, dynamic=True,
                              help='properties: per replica, scalars with errors, flags and notes.')
        spec.output_namespace('distributions', valid_type=orm.ArrayData, dynamic=True,
                              help='properties: per replica, OCCO torsion, O-H g(r) and R_g distributions.')
        # 3xx: output incomplete (300 and 310 come from JobCalcJob)
        spec.exit_code(311, 'ERROR_OUTPUT_INCOMPLETE', message='The results lack the replicas {missing}.')

    def prepare_for_submission(self, folder: Folder) -> CalcInfo:
        labels = sorted(self.inputs.trajectories)
        n_units = self.inputs.get('n_units', {})
        parameters = {
            'task': self.inputs.task.value, 'temperature_K': self.inputs.temperature_K.value,
            'analysis': self.inputs.analysis.get_dict() if 'analysis' in self.inputs else {},
            'replicas': {label: {'n_units': n_units[label].value if label in n_units else None} for label in labels},
        }
        with folder.open(JOB.inputs['parameters'], 'w') as handle:
            json.dump(parameters, handle)
        replicas = folder.get_subfolder(JOB.inputs['replicas'], create=True)
        local_copy_list = []
        vdos = self.inputs.get('vdos_trajectories', {})
        for label in labels:
            replica = replicas.get_subfolder(label, create=True)
            log = self.inputs.npt_logs[label]
            buffer = io.BytesIO()
            np.savez(buffer, **{name: log.get_array(name) for name in log.get_arraynames()})
            with replica.open(REPLICA_FILES['npt_log'], 'wb') as handle:
                handle.write(buffer.getvalue())
            prefix = f"{JOB.inputs['replicas']}/{label}"
            trajectory = self.inputs.trajectories[label]
            local_copy_list.append((trajectory.uuid, trajectory.filename, f"{prefix}/{REPLICA_FILES['trajectory']}"))
            if label in vdos:
                local_copy_list.append((vdos[label].uuid, vdos[label].filename, f"{prefix}/{REPLICA_FILES['vdos']}"))
        return self.job_calcinfo([], local_copy_list=local_copy_list)
