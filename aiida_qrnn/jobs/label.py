"""``aiida-qrnn-exec d3bj`` and ``aiida-qrnn-exec pyscf``: the labelling steps that run inside a job folder.

Both write one record per cluster (see :mod:`aiida_qrnn.core.label_records`) as soon as it is done. Exit status:
0 when the step ran (per-cluster failures are in the records), 1 for bad input (message on stderr; the parsers
read the records, so no ``error.json`` is written).
"""

from __future__ import annotations

import json
import pathlib

import click

from aiida_qrnn.jobs.folder import Job, fail

__all__ = ('D3BJ_JOB', 'PYSCF_JOB', 'd3bj', 'pyscf')

#: The D3(BJ) step that runs before Psi4 in a ``Psi4Calculation`` with a ``-d3bj`` method.
D3BJ_JOB = Job(command='d3bj', inputs={'clusters': 'clusters.h5'}, outputs={'records': 'c*.json'})
#: The whole ``PyscfCalculation``.
PYSCF_JOB = Job(command='pyscf', inputs={'clusters': 'clusters.h5', 'parameters': 'parameters.json'},
                outputs={'records': 'c*.json'})


@click.command(D3BJ_JOB.command)
@click.argument('path', type=click.Path(dir_okay=False, path_type=pathlib.Path))
@click.option('--functional', required=True, help='Functional whose D3(BJ) parameters to use, e.g. wb97x.')
def d3bj(path: pathlib.Path, functional: str) -> None:
    """Write the D3(BJ) energy and gradient of every cluster of the set PATH to c<i>.d3bj.json beside it."""
    from aiida_qrnn.core.d3bj import d3bj_energy_gradient, split_dispersion
    from aiida_qrnn.core.dataset import ClusterSet, ClusterSetError
    from aiida_qrnn.core.label_records import record_name, write_record
    from aiida_qrnn.core.units import BOHR_TO_ANGSTROM

    try:
        _, parameters = split_dispersion(f'{functional}-d3bj')
        with ClusterSet(path) as clusters:
            arrays = clusters.read_arrays()
    except (ClusterSetError, ValueError, OSError) as exception:
        fail(f'aiida-qrnn-exec d3bj: {exception}', folder=None)
    for index in range(arrays.n_clusters):
        rows = slice(arrays.offsets[index], arrays.offsets[index + 1])
        energy, gradient = d3bj_energy_gradient(
            arrays.numbers[rows], arrays.positions[rows] / BOHR_TO_ANGSTROM, parameters
        )
        write_record(path.parent, record_name(index, 'd3bj'), {
            'index': index, 'id': str(arrays.ids[index]), 'status': 'ok', 'parameters': parameters.as_dict(),
            'energy_hartree': energy, 'gradient_hartree_per_bohr': gradient.tolist(),
        })


@click.command(PYSCF_JOB.command)
@click.argument('path', type=click.Path(dir_okay=False, path_type=pathlib.Path))
@click.argument('parameters_file', type=click.Path(dir_okay=False, path_type=pathlib.Path))
def pyscf(path: pathlib.Path, parameters_file: pathlib.Path) -> None:
    """Label every cluster of the set PATH with PySCF as PARAMETERS_FILE (JSON) says; records go beside PATH."""
    from aiida_qrnn.core.dataset import ClusterSetError
    from aiida_qrnn.core.pyscf_labels import label_cluster_set

    try:
        parameters = json.loads(parameters_file.read_text())
        label_cluster_set(
            path, path.parent, method=parameters['method'], basis=parameters['basis'],
            options=parameters.get('options', {}), forces='forces' in parameters.get('properties', ['forces']),
        )
    except (ClusterSetError, OSError, ValueError, KeyError) as exception:
        fail(f'aiida-qrnn-exec pyscf: {type(exception).__name__}: {exception}', folder=None)
