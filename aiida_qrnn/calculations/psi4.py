"""``Psi4Calculation``: label a batch of clusters with Psi4 (energies, forces, dipoles), one record per cluster."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
from aiida import orm
from aiida.common.datastructures import CalcInfo, CodeInfo, CodeRunMode
from aiida.common.folders import Folder
from aiida.engine import CalcJobProcessSpec
from ase.data import chemical_symbols

from aiida_qrnn.calculations.labels import (
    PROPERTIES,
    LabelCalcJob,
    level_of_theory,
    validate_closed_shell_clusters,
    validate_label_parameters,
)
from aiida_qrnn.core.d3bj import split_dispersion
from aiida_qrnn.core.label_records import RECORD_FORMAT, record_name
from aiida_qrnn.jobs.label import D3BJ_JOB

# level_of_theory, PROPERTIES and the validators live in calculations.labels (shared with pyscf and xtb).
__all__ = (
    'PAPER_OPTIONS',
    'PROPERTIES',
    'Psi4Calculation',
    'level_of_theory',
    'psi4_input',
    'validate_closed_shell_clusters',
    'validate_label_parameters',
)

#: The Psi4 settings of the paper ("Dataset preparation"): DFT basis tolerance, Schwarz screening threshold and
#: linear dependency cutoff. User ``options`` are applied on top.
PAPER_OPTIONS = {'dft_basis_tolerance': 1e-10, 'ints_tolerance': 1e-10, 's_tolerance': 1e-6}


class Psi4Calculation(LabelCalcJob):
    """Label every cluster of a ``ClusterSetData`` with Psi4 in one job.

    Cluster ``i`` gets its own Psi4 input ``c{i:06d}.in`` and its own ``psi4`` run (one ``CodeInfo`` each, one
    after another). Each run writes the record ``c{i:06d}.json`` when the cluster is done, or a failure record
    when the SCF does not converge, so a killed job keeps every finished cluster and a restart labels only the
    clusters without a record.

    A ``<functional>-d3bj`` method runs the functional without dispersion in Psi4 (Debian's Psi4 1.3.2 cannot run
    the ``dftd3`` program it would need) and adds D3(BJ) from a first step, ``aiida-qrnn-exec d3bj``, run by
    ``d3bj_code`` before any SCF; the parser adds the two and checks that Psi4's own D3(BJ) parameters for the
    method equal the ones applied.
    """

    @classmethod
    def define(cls, spec: CalcJobProcessSpec) -> None:
        super().define(spec)
        spec.input(
            'parameters', valid_type=orm.Dict, validator=validate_label_parameters,
            help=(
                'method (e.g. wb97x-d3bj), basis (e.g. def2-tzvpd), optional properties (subset of energy, forces, '
                'dipole), options (Psi4 settings over the paper defaults PAPER_OPTIONS), num_threads (psi4 -n).'
            ),
        )
        spec.input(
            'd3bj_code', valid_type=orm.AbstractCode, required=False,
            help='aiida-qrnn-exec on the same computer; required for a -d3bj method.',
        )
        spec.inputs.validator = cls.validate_inputs
        options = spec.inputs['metadata']['options']
        options['parser_name'].default = 'qrnn.psi4'

    @staticmethod
    def validate_inputs(inputs: dict, _) -> str | None:
        if 'parameters' not in inputs:
            return None
        _, d3bj = split_dispersion(inputs['parameters'].get('method', ''))
        if d3bj is not None and 'd3bj_code' not in inputs:
            return f'd3bj_code: method {inputs["parameters"]["method"]!r} needs d3bj_code (aiida-qrnn-exec).'
        return None

    def prepare_for_submission(self, folder: Folder) -> CalcInfo:
        """Write one Psi4 input per cluster, plus the cluster file for the D3(BJ) step when the method has one."""
        clusters = self.inputs.clusters
        arrays = clusters.get_arrays()
        parameters = self.inputs.parameters.get_dict()
        functional, d3bj = split_dispersion(parameters['method'])
        options = {**PAPER_OPTIONS, 'basis': parameters['basis'], **parameters.get('options', {})}
        properties = parameters.get('properties', list(PROPERTIES))

        codes_info = []
        if d3bj is not None:
            clusters_file = D3BJ_JOB.inputs['clusters']
            with clusters.open(mode='rb') as source, folder.open(clusters_file, 'wb') as target:
                target.write(source.read())
            codeinfo = CodeInfo()
            codeinfo.code_uuid = self.inputs.d3bj_code.uuid
            codeinfo.cmdline_params = [D3BJ_JOB.command, clusters_file, '--functional', functional]
            codeinfo.stdout_name, codeinfo.stderr_name = D3BJ_JOB.stdout_name, D3BJ_JOB.stderr_name
            codes_info.append(codeinfo)

        for index in range(arrays.n_clusters):
            rows = slice(arrays.offsets[index], arrays.offsets[index + 1])
            text = psi4_input(
                index=index, cluster_id=str(arrays.ids[index]), numbers=arrays.numbers[rows],
                positions=arrays.positions[rows], total_charge=int(arrays.total_charge[index]),
                method=parameters['method'], options=options, properties=properties, strip_d3bj=d3bj is not None,
            )
            prefix = self.prefix(index)
            with folder.open(f'{prefix}.in', 'w') as handle:
                handle.write(text)
            codeinfo = CodeInfo()
            codeinfo.code_uuid = self.inputs.code.uuid
            codeinfo.cmdline_params = ['-n', str(parameters.get('num_threads', 1)), f'{prefix}.in', f'{prefix}.out']
            codeinfo.stdout_name, codeinfo.stderr_name = f'{prefix}.stdout', f'{prefix}.err'
            codes_info.append(codeinfo)

        calcinfo = CalcInfo()
        calcinfo.codes_info = codes_info
        calcinfo.codes_run_mode = CodeRunMode.SERIAL
        calcinfo.retrieve_list = ['c*.json', 'c*.out', 'c*.err', D3BJ_JOB.stderr_name]
        return calcinfo


PSI4_TEMPLATE = '''\
# Written by aiida-qrnn Psi4Calculation: label cluster {index} and write its record {record!r}.
import base64
import json
import os

from psi4.driver.procrouting.dft import dft_builder

# Method, options and properties travel base64-encoded: Psi4's input preprocessor rewrites '#' even inside Python
# strings, and no user text may ever become code here.
settings = json.loads(base64.b64decode('{settings}').decode('utf-8'))
cluster = geometry(\"\"\"
{charge} 1
{atoms}
units angstrom
no_reorient
no_com
symmetry c1
\"\"\")
record = {{'format': {format!r}, 'index': {index}, 'id': {cluster_id!r}, 'program': 'psi4 ' + psi4.__version__}}


def functional_without_d3bj(name, npoints, deriv, restricted):
    \"\"\"Psi4's own definition of the method with the dispersion left out; it is added from the D3(BJ) step.\"\"\"
    superfunctional, _ = dft_builder.build_superfunctional_from_dictionary(
        dft_builder.functionals[settings['method']], npoints, deriv, restricted)
    return superfunctional


def write_record(values):
    record.update(values)
    with open({record!r} + '.partial', 'w') as handle:
        json.dump(record, handle)
    os.replace({record!r} + '.partial', {record!r})


method = {{'dft_functional': functional_without_d3bj}} if settings['strip_d3bj'] else {{}}
name = 'scf' if settings['strip_d3bj'] else settings['method']
try:
    set_options(settings['options'])
    if settings['forces']:
        gradient_matrix, wavefunction = gradient(name, molecule=cluster, return_wfn=True, **method)
        gradient_values = gradient_matrix.np.tolist()
    else:
        _, wavefunction = energy(name, molecule=cluster, return_wfn=True, **method)
        gradient_values = None
    oeprop(wavefunction, 'DIPOLE')
    dispersion = dft_builder.functionals[settings['method']].get('dispersion') if settings['strip_d3bj'] else None
    write_record({{
        'status': 'ok',
        'energy_hartree': variable('CURRENT ENERGY'),
        'gradient_hartree_per_bohr': gradient_values,
        # Psi4 1.3 stores the dipole in Debye.
        'dipole_e_bohr': [variable('SCF DIPOLE ' + axis) / psi4.constants.dipmom_au2debye for axis in 'XYZ'],
        'numbers': [cluster.Z(atom) for atom in range(cluster.natom())],
        'positions_bohr': cluster.geometry().np.tolist(),
        'dispersion_parameters': dispersion['params'] if dispersion else None,
    }})
except SCFConvergenceError as exception:
    write_record({{'status': 'failed', 'reason': 'scf_not_converged', 'message': str(exception)}})
except Exception as exception:
    write_record({{'status': 'failed', 'reason': 'abnormal_termination',
                  'message': type(exception).__name__ + ': ' + str(exception)}})
'''


def psi4_input(
    *, index: int, cluster_id: str, numbers: np.ndarray, positions: np.ndarray, total_charge: int, method: str,
    options: dict[str, Any], properties: list[str], strip_d3bj: bool,
) -> str:
    """The Psi4 input (psithon) of one cluster: geometry in Å in the input frame, settings, record writing."""
    atoms = '\n'.join(
        f'{chemical_symbols[number]:<2} ' + ' '.join(f'{x:.10f}' for x in position)
        for number, position in zip(numbers, positions, strict=True)
    )
    settings = {'method': method.lower(), 'options': options, 'strip_d3bj': strip_d3bj,
                'forces': 'forces' in properties}
    return PSI4_TEMPLATE.format(
        index=index, record=record_name(index), charge=total_charge, atoms=atoms, format=RECORD_FORMAT,
        cluster_id=cluster_id, settings=base64.b64encode(json.dumps(settings).encode('utf-8')).decode('ascii'),
    )
