"""``PyscfCalculation``: label a batch of clusters with PySCF (energies, forces, dipoles), one record per cluster."""

from __future__ import annotations

import json

from aiida import orm
from aiida.common.datastructures import CalcInfo, CodeInfo
from aiida.common.folders import Folder
from aiida.engine import CalcJobProcessSpec

from aiida_qrnn.calculations.base import CalcJob
from aiida_qrnn.calculations.psi4 import (
    CLUSTERS_FILENAME,
    PROPERTIES,
    add_label_exit_codes,
    define_label_outputs,
    validate_closed_shell_clusters,
    validate_label_parameters,
)
from aiida_qrnn.core.pyscf_labels import PYSCF_SETTINGS
from aiida_qrnn.data.cluster_set import ClusterSetData

__all__ = ('PyscfCalculation', 'validate_parameters')

PARAMETERS_FILENAME = 'parameters.json'


def validate_parameters(value: orm.Dict, port) -> str | None:
    """As for Psi4, with ``options`` limited to the PySCF settings the driver applies."""
    message = validate_label_parameters(value, port, known_extra=('options',))
    if message:
        return message
    unknown = sorted(set(value.get_dict().get('options', {})) - set(PYSCF_SETTINGS))
    if unknown:
        return f'parameters: unknown option(s) {unknown}; PySCF options are {list(PYSCF_SETTINGS)}.'
    return None


class PyscfCalculation(CalcJob):
    """Label every cluster of a ``ClusterSetData`` with PySCF in one job (``aiida-qrnn-exec pyscf``).

    The driver writes the record ``c{i:06d}.json`` after each cluster, including a failure record when the SCF
    does not converge, so a killed job keeps every finished cluster. ``<functional>-d3bj`` methods include
    D3(BJ) through pyscf-dispersion. ``options.device = 'gpu'`` uses gpu4pyscf where it is installed.
    """

    @classmethod
    def define(cls, spec: CalcJobProcessSpec) -> None:
        super().define(spec)
        spec.input(
            'clusters', valid_type=ClusterSetData, validator=validate_closed_shell_clusters,
            help='The clusters to label: open, closed-shell clusters with their total charges.',
        )
        spec.input(
            'parameters', valid_type=orm.Dict, validator=validate_parameters,
            help=(
                'method (hf or an xc name such as wb97x-d3bj), basis, optional properties (subset of energy, '
                f'forces, dipole) and options ({", ".join(PYSCF_SETTINGS)}).'
            ),
        )
        options = spec.inputs['metadata']['options']
        options['parser_name'].default = 'qrnn.pyscf'
        options['resources'].default = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}
        options['environment_variables'].default = {'OMP_NUM_THREADS': '1', 'OPENBLAS_NUM_THREADS': '1'}
        define_label_outputs(spec)
        add_label_exit_codes(spec)

    def prepare_for_submission(self, folder: Folder) -> CalcInfo:
        """Copy the cluster set and the parameters into the job folder; one driver run labels them all."""
        with self.inputs.clusters.open(mode='rb') as source, folder.open(CLUSTERS_FILENAME, 'wb') as target:
            target.write(source.read())
        parameters = {'properties': list(PROPERTIES), **self.inputs.parameters.get_dict()}
        with folder.open(PARAMETERS_FILENAME, 'w') as handle:
            json.dump(parameters, handle, indent=2)

        codeinfo = CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = ['pyscf', CLUSTERS_FILENAME, PARAMETERS_FILENAME]
        codeinfo.stdout_name, codeinfo.stderr_name = 'pyscf.out', 'pyscf.err'
        calcinfo = CalcInfo()
        calcinfo.codes_info = [codeinfo]
        calcinfo.retrieve_list = ['c*.json', 'pyscf.out', 'pyscf.err']
        return calcinfo
