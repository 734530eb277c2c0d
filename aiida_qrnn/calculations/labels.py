"""What the labelling CalcJobs (psi4, pyscf, xtb) share: :class:`LabelCalcJob` (the ``clusters`` input, outputs,
exit codes, file prefixes) and the checks of their inputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from aiida import orm
from aiida.engine import CalcJobProcessSpec

from aiida_qrnn.calculations.base import CalcJob
from aiida_qrnn.core.d3bj import split_dispersion
from aiida_qrnn.core.dataset import ClusterArrays
from aiida_qrnn.core.sanity import allows_broken_bonds, check_structure
from aiida_qrnn.data.cluster_set import ClusterSetData

__all__ = (
    'PROPERTIES',
    'LabelCalcJob',
    'closed_shell_problem',
    'define_label_exit_codes',
    'define_label_outputs',
    'level_of_theory',
    'validate_closed_shell_clusters',
    'validate_label_parameters',
)

#: The labels a DFT job can compute; ``energy`` is always among them.
PROPERTIES = ('energy', 'forces', 'dipole')


def level_of_theory(parameters: Mapping[str, Any]) -> str:
    """``'wb97x-d3bj/def2-svp'``: method and basis of a DFT job, lower case."""
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


def define_label_outputs(spec: CalcJobProcessSpec) -> None:
    """``clusters`` (what was labelled) and ``failed_clusters`` (what was not, and why)."""
    spec.output(
        'clusters', valid_type=ClusterSetData, required=False,
        help='The labelled clusters, in input order, failed ones left out.',
    )
    spec.output(
        'failed_clusters', valid_type=orm.List, required=False,
        help='One entry per cluster without labels: {index, id, reason, message}; only when there are some.',
    )


def define_label_exit_codes(spec: CalcJobProcessSpec) -> None:
    """The exit codes of the labelling jobs; partial results are attached whenever some cluster finished."""
    # 3xx: the output could not be read, rerunning may help
    spec.exit_code(
        302, 'ERROR_NO_OUTPUT', message='No record and no output for any of the {n_clusters} clusters: none ran.',
    )
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
    spec.exit_code(
        420, 'ERROR_ALL_CLUSTERS_FAILED',
        message='All {n_clusters} clusters failed ({reasons}); no labels were produced.',
    )
    # 5xx: scientific failures
    spec.exit_code(
        510, 'ERROR_SCF_NOT_CONVERGED',
        message='The SCF did not converge for {n_scf} of {n_clusters} clusters ({reasons}).',
    )


class LabelCalcJob(CalcJob):
    """A job that labels every cluster of the ``clusters`` input, cluster ``i`` in files named ``prefix(i)``.

    A subclass adds its ``parameters`` and sets ``validate_clusters`` (default: open, sane closed-shell clusters)
    and the ``parser_name`` default. It gets the ``clusters`` input, the outputs ``clusters`` and
    ``failed_clusters``, the exit codes of :func:`define_label_exit_codes`, one machine and one thread per process.
    """

    validate_clusters = staticmethod(validate_closed_shell_clusters)

    @staticmethod
    def prefix(index: int) -> str:
        """File name stem of cluster ``index``."""
        return f'c{index:06d}'

    @classmethod
    def define(cls, spec: CalcJobProcessSpec) -> None:
        super().define(spec)
        spec.input(
            'clusters', valid_type=ClusterSetData, validator=cls.validate_clusters,
            help='The clusters to label: open, closed-shell clusters with their total charges.',
        )
        options = spec.inputs['metadata']['options']
        options['resources'].default = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}
        options['environment_variables'].default = {'OMP_NUM_THREADS': '1', 'OPENBLAS_NUM_THREADS': '1'}
        define_label_outputs(spec)
        define_label_exit_codes(spec)
