"""``PyscfCalculation``: label a batch of clusters with PySCF (energies, forces, dipoles), one record per cluster."""

from __future__ import annotations

import json

from aiida import orm
from aiida.common.datastructures import CalcInfo, CodeInfo
from aiida.common.folders import Folder
from aiida.engine import CalcJobProcessSpec

from aiida_qrnn.calculations.labels import PROPERTIES, LabelCalcJob, validate_label_parameters
from aiida_qrnn.core.pyscf_labels import PYSCF_SETTINGS
from aiida_qrnn.jobs.label import PYSCF_JOB

__all__ = ('PyscfCalculation', 'validate_parameters')


def validate_parameters(value: orm.Dict, port) -> str | None:
    """As for Psi4, with ``options`` limited to the PySCF settings the driver applies."""
    message = validate_label_parameters(value, port, known_extra=('options',))
    if message:
        return message
    unknown = sorted(set(value.get_dict().get('options', {})) - set(PYSCF_SETTINGS))
    if unknown:
        return f'parameters: unknown option(s) {unknown}; PySCF options are {list(PYSCF_SETTINGS)}.'
    return None


class PyscfCalculation(LabelCalcJob):
    """Label every cluster of a ``ClusterSetData`` with PySCF in one job (``aiida-qrnn-exec pyscf``).

    The driver writes the record ``c{i:06d}.json`` after each cluster, including a failure record when the SCF
    does not converge, so a killed job keeps every finished cluster. ``<functional>-d3bj`` methods include
    D3(BJ) through pyscf-dispersion. ``options.device = 'gpu'`` uses gpu4pyscf where it is installed.
    """

    @classmethod
    def define(cls, spec: CalcJobProcessSpec) -> None:
        super().define(spec)
        spec.input(
            'parameters', valid_type=orm.Dict, validator=validate_parameters,
            help=(
                'method (hf or an xc name such as wb97x-d3bj), basis, optional properties (subset of energy, '
                f'forces, dipole) and options ({", ".join(PYSCF_SETTINGS)}).'
            ),
        )
        options = spec.inputs['metadata']['options']
        options['parser_name'].default = 'qrnn.pyscf'

    def prepare_for_submission(self, folder: Folder) -> CalcInfo:
        """Copy the cluster set and the parameters into the job folder; one driver run labels them all."""
        clusters_file, parameters_file = PYSCF_JOB.inputs['clusters'], PYSCF_JOB.inputs['parameters']
        with self.inputs.clusters.open(mode='rb') as source, folder.open(clusters_file, 'wb') as target:
            target.write(source.read())
        parameters = {'properties': list(PROPERTIES), **self.inputs.parameters.get_dict()}
        with folder.open(parameters_file, 'w') as handle:
            json.dump(parameters, handle, indent=2)

        codeinfo = CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = [PYSCF_JOB.command, clusters_file, parameters_file]
        codeinfo.stdout_name, codeinfo.stderr_name = PYSCF_JOB.stdout_name, PYSCF_JOB.stderr_name
        calcinfo = CalcInfo()
        calcinfo.codes_info = [codeinfo]
        calcinfo.retrieve_list = [PYSCF_JOB.outputs['records'], PYSCF_JOB.stdout_name, PYSCF_JOB.stderr_name]
        return calcinfo
