"""``aiida-qrnn-exec md JOB_FOLDER``: the job that :class:`~aiida_qrnn.calculations.md.MdCalculation` runs.

The folder holds ``structure.extxyz`` (the cell), ``md_input.json`` (``{"settings": MDSettings, "seed": int}``)
and, for the QRNN, ``model.safetensors``. Without a model file the classical OPLS-AA baseline is the calculator,
so the QRNN and the classical properties come from the same driver (:func:`aiida_qrnn.core.md.run_md`). A
``checkpoint.npz`` already in the folder (copied from a parent job) is continued. Model files in a ``committee/``
folder (two or more, QRNN runs only) form the committee that the driver evaluates every ``committee_interval``
steps into ``committee.csv``.

Exit status (the run's outcome is also in ``status.json``; bad input in ``error.json``):

==== ======================================================================
0    finished all ``n_steps`` (``MDStatus.FINISHED``)
1    bad input: unreadable structure, settings, model, unsupported chemistry
2    stopped at ``walltime_s`` with a checkpoint (``MDStatus.STOPPED_WALLTIME``)
3    stopped at ``committee_max_force_deviation`` with a checkpoint (``MDStatus.COMMITTEE_DISAGREEMENT``)
10   unstable: non-finite positions or energy (``MDStatus.UNSTABLE_NOT_FINITE``)
11   unstable: close contact (``MDStatus.UNSTABLE_CLOSE_CONTACT``)
12   unstable: temperature runaway (``MDStatus.UNSTABLE_TEMPERATURE``)
==== ======================================================================

On every outcome but bad input ``final.extxyz`` holds the checkpoint's configuration (positions, momenta, cell):
the last good state of an unstable run; its ``info`` has the checkpoint's ``step`` and ``time_fs``.

Batched replicas (QRNN only): ``md_input.json`` has ``"replicas": {label: seed}`` and each replica's cell is
``replicas/<label>/structure.extxyz``; all advance in one engine (:func:`aiida_qrnn.core.md.run_md_replicas`), each
writing the files above (``status.json``, ``final.extxyz``, ...) in its own ``replicas/<label>/``. The exit status
is then the batch's (:func:`batch_status`): 2 if a replica stopped at the walltime, else 0 if one finished (or
stopped for committee disagreement), else the unstable code of the first replica by label.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import typing as t

import click

from aiida_qrnn.core.md.committee import COMMITTEE_FILE
from aiida_qrnn.core.md.outputs import CHECKPOINT_FILE, LOG_FILE, STATUS_FILE, TRAJECTORY_FILE, UNSTABLE_FILE
from aiida_qrnn.core.md.status import MDStatus
from aiida_qrnn.jobs.folder import Job, fail

__all__ = ('JOB', 'batch_status', 'exit_status', 'md')

EXIT_WALLTIME = 2
EXIT_COMMITTEE_DISAGREEMENT = 3
#: The job: file names inside the job folder and exit statuses (the unstable ones are the ``MDStatus`` values).
JOB = Job(
    command='md',
    inputs={'structure': 'structure.extxyz', 'parameters': 'md_input.json', 'model': 'model.safetensors',
            'committee': 'committee', 'replicas': 'replicas'},
    outputs={'trajectory': TRAJECTORY_FILE, 'log': LOG_FILE, 'committee': COMMITTEE_FILE, 'status': STATUS_FILE,
             'final': 'final.extxyz', 'unstable': UNSTABLE_FILE, 'checkpoint': CHECKPOINT_FILE,
             'replicas': 'replicas'},
    exit_statuses={
        EXIT_WALLTIME: MDStatus.STOPPED_WALLTIME.name,
        EXIT_COMMITTEE_DISAGREEMENT: MDStatus.COMMITTEE_DISAGREEMENT.name,
        **{int(status): status.name for status in MDStatus if status.is_unstable},
    },
    retrieved=('trajectory', 'log', 'committee', 'status', 'final', 'unstable', 'checkpoint'),
)
INPUT_STRUCTURE = JOB.inputs['structure']
INPUT_PARAMETERS = JOB.inputs['parameters']
INPUT_MODEL = JOB.inputs['model']
INPUT_COMMITTEE = JOB.inputs['committee']
REPLICAS_FOLDER = JOB.inputs['replicas']
OUTPUT_FINAL = JOB.outputs['final']
#: Strain step of the numerical stress of the classical calculator (OpenMM gives no virial).
CLASSICAL_STRESS_STRAIN = 1e-5


def exit_status(status: int) -> int:
    """The process exit status of an ``MDStatus`` (clean stops move up by one, since 1 means bad input)."""
    moved = {MDStatus.STOPPED_WALLTIME: EXIT_WALLTIME, MDStatus.COMMITTEE_DISAGREEMENT: EXIT_COMMITTEE_DISAGREEMENT}
    return moved.get(status, int(status))


def batch_status(statuses: list[int]) -> MDStatus:
    """The outcome of a batch of replicas (``MDStatus`` values in label order), by the rule of the module docstring:
    a replica to continue (walltime) first, then any usable one (finished or committee stop), else the first
    instability."""
    outcomes = [MDStatus(status) for status in statuses]
    if MDStatus.STOPPED_WALLTIME in outcomes:
        return MDStatus.STOPPED_WALLTIME
    usable = [status for status in outcomes if not status.is_unstable]
    if usable:
        return MDStatus.FINISHED if MDStatus.FINISHED in usable else usable[0]
    return outcomes[0]


def load_committee(folder: pathlib.Path, device: str):
    """The committee of the model files in ``folder`` (sorted by name), or None if there is no such folder."""
    from aiida_qrnn.core.model.calculator import load_model
    from aiida_qrnn.core.model.committee import Committee

    if not folder.is_dir():
        return None
    paths = sorted(folder.glob('*.safetensors'))
    return Committee([load_model(path).to(device) for path in paths])


def classical_calculator(atoms, bonds, *, with_stress: bool):
    """OPLS-AA in OpenMM (double precision); for NPT with the normal stress from strain differences of the energy.

    OpenMM gives no virial: :class:`~aiida_qrnn.core.md.numerical_stress.NormalStressCalculator` adds it with 6
    extra energy evaluations per step, affordable for the small boxes of the identical-code comparison
    (production classical runs use :class:`~aiida_qrnn.calculations.classical_md.ClassicalMdCalculation`).
    """
    from aiida_qrnn.core.forcefield import OplsAaCalculator
    from aiida_qrnn.core.forcefield.md import cutoff_for_cell
    from aiida_qrnn.core.md.numerical_stress import NormalStressCalculator

    calculator = OplsAaCalculator(bonds, cutoff_nm=cutoff_for_cell(atoms), platform='Reference')
    return NormalStressCalculator(calculator, strain=CLASSICAL_STRESS_STRAIN) if with_stress else calculator


@click.command('md')
@click.argument('job_folder', type=click.Path(file_okay=False, exists=True, path_type=pathlib.Path), default='.')
@click.option('--device', default='cpu', show_default=True, help='Torch device of the QRNN (cuda for a GPU).')
def md(job_folder: pathlib.Path, device: str) -> None:
    """Run or continue MD in JOB_FOLDER with the QRNN (model.safetensors) or the OPLS-AA baseline (no model)."""
    import ase.io
    import numpy as np

    from aiida_qrnn.core.forcefield import UnsupportedChemistryError
    from aiida_qrnn.core.md import MDSettings, run_md
    from aiida_qrnn.core.topology import find_bonds, molecule_ids

    os.chdir(job_folder)
    try:
        parameters = json.loads(pathlib.Path(INPUT_PARAMETERS).read_text())
        settings = MDSettings.from_dict(parameters.get('settings', {}))
        seed = int(parameters.get('seed', 0))
        replica_seeds = {str(label): int(value) for label, value in parameters.get('replicas', {}).items()}
    except (OSError, ValueError, TypeError, AttributeError) as exception:
        fail(f"'{job_folder / INPUT_PARAMETERS}': {exception}")
    if replica_seeds:
        _run_replicas(job_folder, settings, replica_seeds, device)
    try:
        atoms = ase.io.read(INPUT_STRUCTURE, format='extxyz')
    except (OSError, ValueError, TypeError) as exception:
        fail(f"'{job_folder / INPUT_STRUCTURE}': {exception}")
    bonds = find_bonds(atoms)
    if 'molecule' not in atoms.arrays:
        atoms.arrays['molecule'] = molecule_ids(len(atoms), bonds)
    try:
        committee = load_committee(pathlib.Path(INPUT_COMMITTEE), device)
        if pathlib.Path(INPUT_MODEL).is_file():
            from aiida_qrnn.core.model.calculator import QRNNCalculator

            calculator = QRNNCalculator.from_model(INPUT_MODEL, device=device, neighbor_skin_A=1.0)
            if committee is not None and not all(
                    member.species_of_number.cpu().equal(calculator.model.species_of_number.cpu())
                    for member in committee.models):
                raise ValueError(f"the models in '{INPUT_COMMITTEE}/' have other elements than '{INPUT_MODEL}'.")
        elif committee is not None:
            raise ValueError(f"a committee ('{INPUT_COMMITTEE}/') needs the QRNN '{INPUT_MODEL}' to drive the MD.")
        else:
            from aiida_qrnn.core.forcefield.topology import build_topology

            if settings.ensemble == 'npt' and settings.cell_fluctuations == 'full':
                raise ValueError("the classical baseline has normal stresses only: use cell_fluctuations='isotropic'.")
            build_topology(atoms.numbers, bonds)  # refuses chemistry outside OPLS-AA HO-(CH2CH2O)n-H, naming atoms
            calculator = classical_calculator(atoms, bonds, with_stress=settings.ensemble == 'npt')
        if (committee is None) != (settings.committee_interval == 0):
            raise ValueError(f"committee_interval={settings.committee_interval} needs a committee in "
                             f"'{INPUT_COMMITTEE}/' and a committee needs committee_interval > 0.")
    except (UnsupportedChemistryError, ValueError) as exception:
        fail(f"'{job_folder}': {exception}")
    result = run_md(settings, atoms, calculator, pathlib.Path.cwd(), rng=np.random.default_rng(seed),
                    committee=committee)
    _write_final_structure(atoms)
    click.echo(result.message)
    sys.exit(exit_status(result.status))


def _run_replicas(job_folder: pathlib.Path, settings, seeds: dict[str, int], device: str) -> t.NoReturn:
    """Batched replicas of the QRNN: one folder per label under ``replicas/``; exits with the batch status."""
    import ase.io
    import numpy as np

    from aiida_qrnn.core.md import run_md_replicas
    from aiida_qrnn.core.topology import find_bonds, molecule_ids

    labels = sorted(seeds)
    folders = [pathlib.Path(REPLICAS_FOLDER) / label for label in labels]
    atoms_list = []
    for folder in folders:
        try:
            atoms = ase.io.read(folder / INPUT_STRUCTURE, format='extxyz')
        except (OSError, ValueError, TypeError) as exception:
            fail(f"'{job_folder / folder / INPUT_STRUCTURE}': {exception}")
        if 'molecule' not in atoms.arrays:
            atoms.arrays['molecule'] = molecule_ids(len(atoms), find_bonds(atoms))
        atoms_list.append(atoms)
    try:
        if not pathlib.Path(INPUT_MODEL).is_file():
            raise ValueError(f"batched replicas need the QRNN '{INPUT_MODEL}' (the OPLS-AA baseline runs one "
                             'structure per job).')
        from aiida_qrnn.core.model.calculator import QRNNCalculator

        calculator = QRNNCalculator.from_model(INPUT_MODEL, device=device, neighbor_skin_A=1.0)
        committee = load_committee(pathlib.Path(INPUT_COMMITTEE), device)
        if (committee is None) != (settings.committee_interval == 0):
            raise ValueError(f"committee_interval={settings.committee_interval} needs a committee in "
                             f"'{INPUT_COMMITTEE}/' and a committee needs committee_interval > 0.")
        rngs = [np.random.default_rng(seeds[label]) for label in labels]
        results = run_md_replicas(settings, atoms_list, calculator, [pathlib.Path.cwd() / f for f in folders],
                                  rngs=rngs, committee=committee)
    except ValueError as exception:
        fail(f"'{job_folder}': {exception}")
    for label, folder, atoms, result in zip(labels, folders, atoms_list, results, strict=True):
        _write_final_structure(atoms, folder)
        click.echo(f'{label}: {result.message}')
    sys.exit(exit_status(batch_status([result.status for result in results])))


def _write_final_structure(atoms, folder: pathlib.Path = pathlib.Path()) -> None:
    """The checkpoint's configuration in ``folder`` as extended XYZ (momenta included), if there is a checkpoint."""
    from aiida_qrnn.core.md.checkpoint import Checkpoint

    if not (folder / CHECKPOINT_FILE).is_file():
        return
    checkpoint = Checkpoint.load(folder / CHECKPOINT_FILE)
    state = checkpoint.integrator_state
    final = atoms.copy()
    final.info.update(step=checkpoint.step, time_fs=checkpoint.time_fs)
    final.set_cell(state['cell'], scale_atoms=False)
    final.set_positions(state['positions'])
    final.set_momenta(state['momenta'])
    final.write(folder / OUTPUT_FINAL, format='extxyz')

