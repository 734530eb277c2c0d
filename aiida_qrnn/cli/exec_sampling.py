"""``aiida-qrnn-exec classical-md``: the job that :class:`~aiida_qrnn.calculations.classical_md.ClassicalMdCalculation`
runs in its folder.

Exit status (also written to ``error.json`` with the message): 0 success; 1 bad input (unreadable structure,
unknown parameter, chemistry outside OPLS-AA's HO-(CH2CH2O)n-H); 2 the MD became unstable. The message is also
on stderr, one line.
"""

from __future__ import annotations

import json
import pathlib
import sys
import typing as t

import click

EXIT_BAD_INPUT = 1
EXIT_UNSTABLE = 2
#: File names inside the job folder.
INPUT_STRUCTURE = 'structure.extxyz'
INPUT_PARAMETERS = 'parameters.json'
OUTPUT_SUMMARY = 'summary.json'
#: Written instead of the summary when the job fails: {"status": 1 or 2, "message": "..."}.
OUTPUT_ERROR = 'error.json'


@click.command('classical-md')
@click.option('--structure', 'structure_path', default=INPUT_STRUCTURE, show_default=True,
              type=click.Path(dir_okay=False, path_type=pathlib.Path), help='Periodic cell, extended XYZ.')
@click.option('--parameters', 'parameters_path', default=INPUT_PARAMETERS, show_default=True,
              type=click.Path(dir_okay=False, path_type=pathlib.Path), help='MdProtocol settings, JSON.')
def classical_md(structure_path: pathlib.Path, parameters_path: pathlib.Path) -> None:
    """Relax, NPT and NVT of an OPLS-AA cell with OpenMM; writes npt.traj, nvt.traj, final.extxyz, summary.json."""
    import ase.io

    from aiida_qrnn.core.forcefield import MdProtocol, MdUnstableError, UnsupportedChemistryError, run_classical_md

    try:
        parameters = json.loads(parameters_path.read_text())
        protocol = MdProtocol.from_dict(parameters)
        atoms = ase.io.read(structure_path, format='extxyz')
    except (OSError, ValueError, TypeError) as exception:
        _fail(f"'{structure_path}' / '{parameters_path}': {exception}", EXIT_BAD_INPUT)
    try:
        summary = run_classical_md(atoms, protocol, pathlib.Path.cwd())
    except UnsupportedChemistryError as exception:
        _fail(f"'{structure_path}': {exception}", EXIT_BAD_INPUT)
    except MdUnstableError as exception:
        _fail(str(exception), EXIT_UNSTABLE)
    except ValueError as exception:
        _fail(f"'{structure_path}': {exception}", EXIT_BAD_INPUT)
    pathlib.Path(OUTPUT_SUMMARY).write_text(json.dumps(summary, indent=2))


def _fail(message: str, status: int) -> t.NoReturn:
    message = message.replace('\n', ' ')
    pathlib.Path(OUTPUT_ERROR).write_text(json.dumps({'status': status, 'message': message}))
    click.echo(message, err=True)
    sys.exit(status)
