"""``ClassicalMdCalculation``: the classical baseline (relaxation, NPT, NVT with OpenMM) of one periodic cell:
OPLS-AA for ethylene glycol, GAFF2 (AmberTools) for the ``polymer`` input's chemistry when it is another polymer.

The job runs ``aiida-qrnn-exec classical-md`` (:mod:`aiida_qrnn.jobs.classical_md`) in its folder, so it runs on
any computer where aiida-qrnn is installed, and keeps OpenMM out of the AiiDA daemon.
"""

from __future__ import annotations

import json

from aiida import orm
from aiida.common.datastructures import CalcInfo
from aiida.common.folders import Folder
from aiida.engine import CalcJobProcessSpec
from aiida.engine.processes.calcjobs.calcjob import validate_calc_job

from aiida_qrnn.calculations.base import JobCalcJob
from aiida_qrnn.jobs.classical_md import JOB

__all__ = ('ClassicalMdCalculation', 'validate_inputs', 'validate_parameters', 'validate_polymer',
           'validate_structure')

SUPPORTED_ELEMENTS = ('C', 'H', 'O')


def validate_polymer(value: orm.Dict, _) -> str | None:
    """A :class:`~aiida_qrnn.core.polymer.Polymer` definition (``Polymer.to_dict``); the message names the key."""
    from aiida_qrnn.core.polymer import Polymer

    try:
        Polymer.from_dict(value.get_dict())
    except ValueError as exception:
        return f'polymer: {exception}'
    return None


def validate_inputs(value, port_namespace) -> str | None:
    """AiiDA's CalcJob checks, then: the cell's elements must be those of the polymer (C, H, O of ethylene glycol
    without a ``polymer``)."""
    from aiida_qrnn.core.polymer import Polymer

    message = validate_calc_job(value, port_namespace) if port_namespace is not None else None
    if message or 'structure' not in value:
        return message
        return None
    if 'polymer' not in value or not all(value['structure'].pbc):
        return validate_structure(value['structure'], None)
    try:
        polymer = Polymer.from_dict(value['polymer'].get_dict())
    except ValueError:
        return None  # validate_polymer says why
    outside = sorted(set(value['structure'].get_kind_names()) - set(polymer.elements))
    if outside:
        return (f"structure: elements {outside} are not in the polymer {polymer.name!r} (elements "
                f'{list(polymer.elements)}).')
    return None


def validate_parameters(value: orm.Dict, _) -> str | None:
    """Refuse unknown keys and bad values of the MD protocol; the message names the key."""
    from aiida_qrnn.core.forcefield.md import MdProtocol

    try:
        MdProtocol.from_dict(value.get_dict())
    except (TypeError, ValueError) as exception:
        return f'parameters: {exception}'
    return None


def validate_structure(value: orm.StructureData, _) -> str | None:
    """A periodic cell of C, H and O; the full chemistry check (HO-(CH2CH2O)n-H only) runs in the job."""
    if not all(value.pbc):
        return f'structure: the cell must be periodic in all three directions, got pbc={value.pbc}.'
    unsupported = sorted(set(value.get_kind_names()) - set(SUPPORTED_ELEMENTS))
    if unsupported:
        return f'structure: elements {unsupported} are outside the OPLS-AA HO-(CH2CH2O)n-H baseline (C, H, O only).'
    return None


class ClassicalMdCalculation(JobCalcJob):
    """Relax, then NPT and NVT of a polymer cell with OpenMM (paper: classical baseline): OPLS-AA for
    HO-(CH2CH2O)n-H (the default), GAFF2 for the ``polymer`` input when it is another polymer.

    Outputs the NPT and NVT trajectories (H5MD as written by the QRNN MD job, unwrapped positions, frames carrying
    stage, step, time, temperature, density and potential energy), the final cell and a summary (densities,
    energies, speed in ns/day).
    """

    JOB = JOB

    @classmethod
    def define(cls, spec: CalcJobProcessSpec) -> None:
        super().define(spec)
        spec.input('structure', valid_type=orm.StructureData,
                   help='Periodic cell of whole molecules of the polymer, e.g. from the build_cells calcfunction.')
        spec.input('polymer', valid_type=orm.Dict, required=False, validator=validate_polymer,
                   help='Polymer definition (Polymer.to_dict): GAFF2 unless it is ethylene glycol; absent: '
                        'HO-(CH2CH2O)n-H with OPLS-AA.')
        spec.input('parameters', valid_type=orm.Dict, required=False, validator=validate_parameters,
                   help='MdProtocol settings (temperature_K, pressure_bar, timestep_fs, npt_steps, nvt_steps, ...).')
        spec.inputs.validator = validate_inputs
        options = spec.inputs['metadata']['options']
        options['parser_name'].default = 'qrnn.classical_md'
        options['environment_variables'].default = {'OMP_NUM_THREADS': '1', 'OPENBLAS_NUM_THREADS': '1'}

        spec.output('structure', valid_type=orm.StructureData, help='The last configuration and cell of the NVT run.')
        spec.output('npt_trajectory', valid_type=orm.SinglefileData, required=False,
                    help='NPT frames, H5MD, unwrapped positions.')
        spec.output('trajectory', valid_type=orm.SinglefileData, required=False,
                    help='NVT frames, H5MD, unwrapped positions.')
        spec.output('output_parameters', valid_type=orm.Dict,
                    help='Densities (initial, relaxed, mean NPT, final), energies, temperature, ns/day.')

        # 5xx: the physics failed
        spec.exit_code(500, 'ERROR_MD_UNSTABLE', message='The molecular dynamics became unstable: {message}')

    def prepare_for_submission(self, folder: Folder) -> CalcInfo:
        """Write the cell as extended XYZ, the protocol (and the polymer) as JSON; retrieve trajectories and summary."""
        structure, parameters = JOB.inputs['structure'], JOB.inputs['parameters']
        self.write_structure(folder, structure, self.inputs.structure)
        with folder.open(parameters, 'w') as handle:
            json.dump(self.inputs.parameters.get_dict() if 'parameters' in self.inputs else {}, handle, indent=2)
        arguments = ['--structure', structure, '--parameters', parameters]
        if 'polymer' in self.inputs:
            with folder.open(JOB.inputs['polymer'], 'w') as handle:
                json.dump(self.inputs.polymer.get_dict(), handle, indent=2)
            arguments += ['--polymer', JOB.inputs['polymer']]
        return self.job_calcinfo(arguments)
