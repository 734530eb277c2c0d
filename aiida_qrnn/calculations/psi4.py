"""``Psi4Calculation``: label a batch of clusters with Psi4 (energies, forces, dipoles), one record per cluster."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
from aiida import orm
from aiida.common.datastructures import CalcInfo, CodeInfo, CodeRunMode
from aiida.common.folders import Folder
from aiida.engine import CalcJobProcessSpec
from ase.data import chemical_symbols

from aiida_qrnn.calculations.base import CalcJob
from aiida_qrnn.core.d3bj import split_dispersion
from aiida_qrnn.core.dataset import ClusterArrays
from aiida_qrnn.core.label_records import RECORD_FORMAT, record_name
from aiida_qrnn.core.sanity import allows_broken_bonds, check_structure
from aiida_qrnn.data.cluster_set import ClusterSetData

__all__ = (
    'PAPER_OPTIONS',
    'Psi4Calculation',
    'add_label_exit_codes',
    'closed_shell_problem',
    'level_of_theory',
    'validate_closed_shell_clusters',
    'validate_label_parameters',
)

#: The Psi4 settings of the paper ("Dataset preparation"): DFT basis tolerance, Schwarz screening threshold and
#: linear dependency cutoff. User ``options`` are applied on top.
PAPER_OPTIONS = {'dft_basis_tolerance': 1e-10, 'ints_tolerance': 1e-10, 's_tolerance': 1e-6}
PROPERTIES = ('energy', 'forces', 'dipole')
#: The file the D3(BJ) step reads: a copy of the input cluster set.
CLUSTERS_FILENAME = 'clusters.h5'


def level_of_theory(parameters: Mapping[str, Any]) -> str:
    """``'wb97x-d3bj/def2-svp'``: method and basis, lower case."""
    return f'{parameters["method"]}/{parameters["basis"]}'.lower()


def validate_label_parameters(
    value: orm.Dict, _, known_extra: tuple[str, ...] = ('options', 'num_threads'),
) -> str | None:
    """``method`` and ``basis`` are required, ``properties`` a subset of energy/forces/dipole; names the bad key."""
    parameters = value.get_dict()
    known = {'method', 'basis', 'properties', *known_extra}
    unknown = sorted(set(parameters) - known)
    if unknown:
        return f'parameters: unknown key(s) {unknown}; the accepted keys are {sorted(known)}.'
    for key in ('method', 'basis'):
        if not isinstance(parameters.get(key), str) or not parameters[key].strip():
            return f'parameters: {key} is required and must be a non-empty string, got {parameters.get(key)!r}.'
    try:
        split_dispersion(parameters['method'])
    except ValueError as exception:
        return f'parameters: {exception}'
    properties = parameters.get('properties', list(PROPERTIES))
    if not isinstance(properties, list) or 'energy' not in properties or set(properties) - set(PROPERTIES):
        return f'parameters: properties must be a list with energy and any of {list(PROPERTIES)}, got {properties!r}.'
    if not isinstance(parameters.get('options', {}), dict):
        return f'parameters: options must be a dictionary of program settings, got {parameters["options"]!r}.'
    threads = parameters.get('num_threads', 1)
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        return f'parameters: num_threads must be a positive integer, got {threads!r}.'
    return None


def closed_shell_problem(arrays: ClusterArrays) -> str | None:
    """The first cluster that cannot be labelled as a closed-shell singlet (``core.sanity``), or ``None``.

    Fused atoms, an electron count that is not positive and even, or an atom that left a cluster (decomposed
    clusters excepted): the program would run and return a label of another state, or of no physical system.
    """
    bad = []
    for index in range(arrays.n_clusters):
        rows = slice(arrays.offsets[index], arrays.offsets[index + 1])
        problems = check_structure(
            arrays.numbers[rows], arrays.positions[rows], total_charge=int(arrays.total_charge[index]),
            multiplicity=1, allow_broken_bonds=allows_broken_bonds(str(arrays.kind[index])),
        )
        if problems:
            bad.append((index, problems))
    if not bad:
        return None
    index, problems = bad[0]
    return (
        f'clusters: cluster {index} (id {arrays.ids[index]}) cannot be labelled as a closed-shell singlet '
        f'({len(bad)} such cluster(s) in all): {"; ".join(problems)}.'
    )


def validate_closed_shell_clusters(value: ClusterSetData, _) -> str | None:
    """Refuse periodic clusters and clusters that are not sane closed-shell singlets (see closed_shell_problem)."""
    arrays = value.get_arrays()
    periodic = np.flatnonzero(arrays.pbc.any(axis=1))
    if len(periodic):
        return f'clusters: cluster {int(periodic[0])} is periodic; molecular DFT labels open clusters only.'
    return closed_shell_problem(arrays)


def add_label_exit_codes(spec: CalcJobProcessSpec) -> None:
    """Exit codes shared by the DFT labelling jobs; partial results are attached whenever some cluster finished."""
    # 3xx: the output could not be read, rerunning may help
    spec.exit_code(302, 'ERROR_NO_OUTPUT', message='No record and no output for any of the {n_clusters} clusters.')
    # 4xx: the job stopped early or the program failed on some clusters
    spec.exit_code(
        400, 'ERROR_OUT_OF_WALLTIME',
        message='The job ran out of walltime: {n_missing} of {n_clusters} clusters have no record.',
    )
    spec.exit_code(
        401, 'ERROR_INTERRUPTED', message='The job stopped early: {n_missing} of {n_clusters} clusters have no record.',
    )
    spec.exit_code(
        410, 'ERROR_SOME_CLUSTERS_FAILED',
        message='{n_failed} of {n_clusters} clusters failed ({reasons}); see the failed_clusters output.',
    )
    # 5xx: scientific failures
    spec.exit_code(
        510, 'ERROR_SCF_NOT_CONVERGED',
        message='The SCF did not converge for {n_scf} of {n_clusters} clusters ({reasons}).',
    )


def define_label_outputs(spec: CalcJobProcessSpec) -> None:
    spec.output(
        'clusters', valid_type=ClusterSetData, required=False,
        help='The labelled clusters (energy, forces, dipole), in input order, failed ones left out.',
    )
    spec.output(
        'failed_clusters', valid_type=orm.List, required=False,
        help='One entry per cluster without labels: {index, id, reason, message}; only when there are some.',
    )


class Psi4Calculation(CalcJob):
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

    @staticmethod
    def prefix(index: int) -> str:
        return f'c{index:06d}'

    @classmethod
    def define(cls, spec: CalcJobProcessSpec) -> None:
        super().define(spec)
        spec.input(
            'clusters', valid_type=ClusterSetData, validator=validate_closed_shell_clusters,
            help='The clusters to label: open, closed-shell clusters with their total charges.',
        )
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
        options['resources'].default = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}
        options['environment_variables'].default = {'OMP_NUM_THREADS': '1', 'OPENBLAS_NUM_THREADS': '1'}
        define_label_outputs(spec)
        add_label_exit_codes(spec)

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
            with clusters.open(mode='rb') as source, folder.open(CLUSTERS_FILENAME, 'wb') as target:
                target.write(source.read())
            codeinfo = CodeInfo()
            codeinfo.code_uuid = self.inputs.d3bj_code.uuid
            codeinfo.cmdline_params = ['d3bj', CLUSTERS_FILENAME, '--functional', functional]
            codeinfo.stdout_name, codeinfo.stderr_name = 'd3bj.out', 'd3bj.err'
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
        calcinfo.retrieve_list = ['c*.json', 'c*.out', 'c*.err', 'd3bj.err']
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
