"""``aiida-qrnn-exec analyse``: the job that :class:`~aiida_qrnn.calculations.analysis.AnalysisCalculation` runs.

The trajectory analyses of the property protocol run here, on the computer that ran the MD, over the frame iterator
of :mod:`aiida_qrnn.core.analysis` (never inside the AiiDA daemon). The folder holds ``analysis_input.json``::

    {"task": "density_frame" | "properties", "temperature_K": 300.0,
     "analysis": {discard_fraction, min_independent_samples, msd_fit_start_fraction, msd_fit_end_fraction,
                  viscosity_mPa_s (optional)},
     "replicas": {"<label>": {"n_units": 1}, ...}}

and, per replica, ``replicas/<label>/npt_log.npz`` (the NPT log columns), ``replicas/<label>/trajectory.h5`` (the
NPT trajectory for ``density_frame``, the NVT trajectory for ``properties``) and optionally
``replicas/<label>/vdos.h5`` (a densely sampled NVT for the VDOS).

Tasks:

* ``density_frame``: the NPT frame whose density is closest to the mean of the detected production window
  (:func:`aiida_qrnn.core.analysis.density.mean_density_frame`); ``results.json`` holds per label ``frame``,
  ``npt_step``, ``npt_mean_density_g_cm3`` and the frame's ``structure`` (numbers, masses, positions, cell, pbc).
* ``properties``: :func:`aiida_qrnn.core.analysis.properties.replica_properties`; ``results.json`` holds per label
  the scalars, ``distributions.npz`` the arrays ``<label>__<distribution>__<array>``.

Exit status: 0 success; 1 bad input (unknown task or setting, a missing or unreadable file, an analysis that refuses
its data), the message naming the replica and file, on stderr and in ``error.json``.
"""

from __future__ import annotations

import json
import pathlib
import typing as t

import click

from aiida_qrnn.jobs.folder import Job, fail, write_json

__all__ = ('JOB', 'REPLICA_FILES', 'TASKS', 'analyse')

JOB = Job(
    command='analyse',
    inputs={'parameters': 'analysis_input.json', 'replicas': 'replicas'},
    outputs={'results': 'results.json', 'distributions': 'distributions.npz'},
)
#: Files of one replica inside ``replicas/<label>/``.
REPLICA_FILES = {'npt_log': 'npt_log.npz', 'trajectory': 'trajectory.h5', 'vdos': 'vdos.h5'}
TASKS = ('density_frame', 'properties')
#: Separator of replica label, distribution and array in the names of ``distributions.npz``.
SEPARATOR = '__'


def read_input(path: pathlib.Path) -> dict[str, t.Any]:
    """``analysis_input.json`` with the analysis defaults filled in; ValueError naming the file on bad content."""
    from aiida_qrnn.core.analysis.properties import ANALYSIS_DEFAULTS, ANALYSIS_OPTIONAL

    try:
        given = json.loads(path.read_text())
    except (OSError, ValueError) as exception:
        raise ValueError(f"'{path}': {exception}") from exception
    unknown = sorted(set(given) - {'task', 'temperature_K', 'analysis', 'replicas'})
    if unknown:
        raise ValueError(f"'{path}': unknown keys {unknown}; known: analysis, replicas, task, temperature_K.")
    if given.get('task') not in TASKS:
        raise ValueError(f"'{path}': task must be one of {list(TASKS)}, got {given.get('task')!r}.")
    analysis = given.get('analysis', {})
    unknown = sorted(set(analysis) - set(ANALYSIS_DEFAULTS) - set(ANALYSIS_OPTIONAL))
    if unknown:
        raise ValueError(f"'{path}': unknown analysis settings {unknown}; known: "
                         f'{sorted([*ANALYSIS_DEFAULTS, *ANALYSIS_OPTIONAL])}.')
    replicas = given.get('replicas')
    if not isinstance(replicas, dict) or not replicas:
        raise ValueError(f"'{path}': replicas must map at least one label to its settings.")
    temperature = given.get('temperature_K', 300.0)
    if not isinstance(temperature, int | float) or not temperature > 0:
        raise ValueError(f"'{path}': temperature_K must be a positive number, got {temperature!r}.")
    return {'task': given['task'], 'temperature_K': float(temperature), 'analysis': {**ANALYSIS_DEFAULTS, **analysis},
            'replicas': replicas}


def _read_log(path: pathlib.Path) -> dict:
    import zipfile

    import numpy as np

    try:
        with np.load(path) as stored:
            return {name: stored[name] for name in stored.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exception:
        raise ValueError(f"'{path}': not a readable NPT log: {exception}") from exception


def density_frame(folder: pathlib.Path, settings: dict) -> dict[str, t.Any]:
    """``results.json`` content of the ``density_frame`` task for the replica in ``folder``."""
    from aiida_qrnn.core.analysis.density import mean_density_frame
    from aiida_qrnn.core.analysis.frames import FrameReader

    log = _read_log(folder / REPLICA_FILES['npt_log'])
    trajectory = FrameReader.open(folder / REPLICA_FILES['trajectory'])
    analysis = settings['analysis']
    try:
        index, density = mean_density_frame(log['volume_A3'], log['step'], trajectory,
                                            min_discard_fraction=analysis['discard_fraction'],
                                            min_independent_samples=analysis['min_independent_samples'])
    except KeyError as exception:
        raise ValueError(f"'{folder / REPLICA_FILES['npt_log']}': no column {exception}") from exception
    atoms = trajectory.atoms(index)
    return {'frame': index, 'npt_step': int(trajectory.steps[index]),
            'npt_mean_density_g_cm3': float(density.mean_g_cm3),
            'structure': {'numbers': atoms.numbers.tolist(), 'masses': atoms.get_masses().tolist(),
                          'positions': atoms.positions.tolist(), 'cell': atoms.cell.array.tolist(),
                          'pbc': atoms.pbc.tolist()}}


def properties(folder: pathlib.Path, settings: dict, n_units: int | None) -> tuple[dict, dict]:
    """Scalars and distributions of the replica in ``folder`` (the ``properties`` task)."""
    from aiida_qrnn.core.analysis.frames import FrameReader
    from aiida_qrnn.core.analysis.properties import replica_properties

    log = _read_log(folder / REPLICA_FILES['npt_log'])
    trajectory = FrameReader.open(folder / REPLICA_FILES['trajectory'])
    vdos_path = folder / REPLICA_FILES['vdos']
    vdos = FrameReader.open(vdos_path) if vdos_path.exists() else None
    analysis = settings['analysis']
    viscosity = analysis.get('viscosity_mPa_s')
    try:
        return replica_properties(
            log, trajectory, temperature_K=settings['temperature_K'], n_units=n_units, vdos_trajectory=vdos,
            discard_fraction=analysis['discard_fraction'], min_independent_samples=analysis['min_independent_samples'],
            msd_fit=(analysis['msd_fit_start_fraction'], analysis['msd_fit_end_fraction']),
            viscosity_Pa_s=float(viscosity) * 1e-3 if viscosity is not None else None,
        )
    except KeyError as exception:
        raise ValueError(f"'{folder / REPLICA_FILES['npt_log']}': no column {exception}") from exception


@click.command(JOB.command)
def analyse() -> None:
    """Trajectory analyses of the property protocol (density frame or replica properties) over every replica."""
    import numpy as np

    try:
        settings = read_input(pathlib.Path(JOB.inputs['parameters']))
    except ValueError as exception:
        fail(str(exception))
    replicas_folder = pathlib.Path(JOB.inputs['replicas'])
    results: dict[str, t.Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for label, replica in sorted(settings['replicas'].items()):
        folder = replicas_folder / label
        try:
            if settings['task'] == 'density_frame':
                results[label] = density_frame(folder, settings)
                continue
            scalars, distributions = properties(folder, settings, (replica or {}).get('n_units'))
        except ValueError as exception:
            fail(f'replica {label}: {exception}')
        results[label] = {name: value.item() if isinstance(value, np.generic) else value
                          for name, value in scalars.items()}
        for name, values in distributions.items():
            for array_name, array in values.items():
                arrays[SEPARATOR.join((label, name, array_name))] = np.asarray(array)
    if arrays:
        np.savez(JOB.outputs['distributions'], **arrays)
    write_json(pathlib.Path(JOB.outputs['results']), results)
