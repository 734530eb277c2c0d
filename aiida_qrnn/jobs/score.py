"""``aiida-qrnn-exec score``: the job that :class:`~aiida_qrnn.calculations.score.ScoreCalculation` runs.

Reads ``clusters.h5``, the committee's model files ``models/*.safetensors`` and ``parameters.json``
(``max_batch_atoms``, ``dtype``, ``device``); writes ``scores.npz`` (``rho_f``, ``max_force_deviation``,
``energy_std``, ``energy``, one value per cluster, in order). Exit status: 0 success; 1 bad input, with the message
on stderr and in ``error.json``.
"""

from __future__ import annotations

import json
import pathlib

import click

from aiida_qrnn.jobs.folder import Job, fail

__all__ = ('JOB', 'PARAMETERS', 'score')

JOB = Job(
    command='score',
    inputs={'clusters': 'clusters.h5', 'models': 'models', 'parameters': 'parameters.json'},
    outputs={'scores': 'scores.npz'},
)
#: The accepted ``parameters.json`` keys and their defaults.
PARAMETERS = {'max_batch_atoms': 20_000, 'dtype': 'float32', 'device': 'cpu'}


@click.command(JOB.command)
@click.option('--progress/--no-progress', default=False, help='Show a progress bar on stderr.')
def score(progress: bool) -> None:
    """Committee disagreement (rho^f and the largest per-atom force deviation) of every cluster."""
    import numpy as np
    import torch

    from aiida_qrnn.core.dataset import ClusterSet, ClusterSetError
    from aiida_qrnn.core.model.calculator import load_model
    from aiida_qrnn.core.model.committee import Committee
    from aiida_qrnn.core.selection import committee_scores

    parameters_name, models_name = JOB.inputs['parameters'], JOB.inputs['models']
    try:
        parameters_file = pathlib.Path(parameters_name)
        given = json.loads(parameters_file.read_text()) if parameters_file.exists() else {}
        unknown = sorted(set(given) - set(PARAMETERS))
        if unknown:
            raise ValueError(f"'{parameters_name}': unknown parameters {unknown}; known: {sorted(PARAMETERS)}.")
        parameters = {**PARAMETERS, **given}
        if parameters['dtype'] not in ('float32', 'float64'):
            raise ValueError(f"'{parameters_name}': dtype must be float32 or float64, got {parameters['dtype']!r}.")
        dtype = getattr(torch, parameters['dtype'])
        paths = sorted(pathlib.Path(models_name).glob('*.safetensors'))
        if len(paths) < 2:
            raise ValueError(f"'{models_name}/': a committee needs at least two model files, found {len(paths)}.")
        models = [load_model(path).to(device=parameters['device'], dtype=dtype).eval() for path in paths]
        with ClusterSet(JOB.inputs['clusters']) as clusters:
            arrays = clusters.read_arrays()
        scores = committee_scores(Committee(models), arrays, max_batch_atoms=int(parameters['max_batch_atoms']),
                                  device=parameters['device'], dtype=dtype, progress=progress)
    except (OSError, ValueError, ClusterSetError) as exception:
        fail(str(exception))
    np.savez(JOB.outputs['scores'], **scores)
