"""``aiida-qrnn-exec classical-md``: the job that :class:`~aiida_qrnn.calculations.classical_md.ClassicalMdCalculation`
runs in its folder.

Exit status (also written to ``error.json`` with the message): 0 success; 1 bad input (unreadable structure,
unknown parameter, chemistry outside OPLS-AA's HO-(CH2CH2O)n-H); 2 the MD became unstable. The message is also
on stderr, one line.
"""

from __future__ import annotations

import json
import pathlib

import click

from aiida_qrnn.core.forcefield.md import FINAL_STRUCTURE, STAGES
from aiida_qrnn.jobs.folder import EXIT_BAD_INPUT, Job, fail, write_json

__all__ = ('JOB', 'classical_md')

EXIT_UNSTABLE = 2
JOB = Job(
    command='classical-md',
    inputs={'structure': 'structure.extxyz', 'parameters': 'parameters.json'},
    outputs={'summary': 'summary.json', 'final': FINAL_STRUCTURE, **{f'{stage}_trajectory': name
                                                                     for stage, name in STAGES.items()}},
    exit_statuses={EXIT_UNSTABLE: 'UNSTABLE'},
)


@click.command(JOB.command)
@click.option('--structure', 'structure_path', default=JOB.inputs['structure'], show_default=True,
              type=click.Path(dir_okay=False, path_type=pathlib.Path), help='Periodic cell, extended XYZ.')
@click.option('--parameters', 'parameters_path', default=JOB.inputs['parameters'], show_default=True,
              type=click.Path(dir_okay=False, path_type=pathlib.Path), help='MdProtocol settings, JSON.')
def classical_md(structure_path: pathlib.Path, parameters_path: pathlib.Path) -> None:
    """Relax, NPT and NVT of an OPLS-AA cell with OpenMM; writes npt.h5, nvt.h5 (H5MD), final.extxyz, summary.json."""
    import ase.io

    from aiida_qrnn.core.forcefield import MdProtocol, MdUnstableError, UnsupportedChemistryError, run_classical_md

    try:
        parameters = json.loads(parameters_path.read_text())
        protocol = MdProtocol.from_dict(parameters)
        atoms = ase.io.read(structure_path, format='extxyz')
    except (OSError, ValueError, TypeError) as exception:
        fail(f"'{structure_path}' / '{parameters_path}': {exception}", EXIT_BAD_INPUT)
    try:
        summary = run_classical_md(atoms, protocol, pathlib.Path.cwd())
    except UnsupportedChemistryError as exception:
        fail(f"'{structure_path}': {exception}", EXIT_BAD_INPUT)
    except MdUnstableError as exception:
        fail(str(exception), EXIT_UNSTABLE)
    except ValueError as exception:
        fail(f"'{structure_path}': {exception}", EXIT_BAD_INPUT)
    write_json(pathlib.Path(JOB.outputs['summary']), summary, indent=2)
