"""``aiida-qrnn-exec classical-md``: the job that :class:`~aiida_qrnn.calculations.classical_md.ClassicalMdCalculation`
runs in its folder.

The force field follows the polymer (``--polymer``, a :class:`~aiida_qrnn.core.polymer.Polymer` as JSON; ethylene
glycol when absent): OPLS-AA for ethylene glycol, GAFF2 through AmberTools for any other
(:func:`~aiida_qrnn.core.forcefield.baseline.polymer_system`, files in ``gaff2/``).

Exit status (also written to ``error.json`` with the message): 0 success; 1 bad input (unreadable structure,
unknown parameter, bad polymer definition, chemistry outside OPLS-AA's HO-(CH2CH2O)n-H, a cell that is not made of
the polymer's chains, AmberTools refusing it); 2 the MD became unstable. The message is also on stderr, one line.
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
    inputs={'structure': 'structure.extxyz', 'parameters': 'parameters.json', 'polymer': 'polymer.json'},
    outputs={'summary': 'summary.json', 'final': FINAL_STRUCTURE, **{f'{stage}_trajectory': name
                                                                     for stage, name in STAGES.items()}},
    exit_statuses={EXIT_UNSTABLE: 'UNSTABLE'},
)


@click.command(JOB.command)
@click.option('--structure', 'structure_path', default=JOB.inputs['structure'], show_default=True,
              type=click.Path(dir_okay=False, path_type=pathlib.Path), help='Periodic cell, extended XYZ.')
@click.option('--parameters', 'parameters_path', default=JOB.inputs['parameters'], show_default=True,
              type=click.Path(dir_okay=False, path_type=pathlib.Path), help='MdProtocol settings, JSON.')
@click.option('--polymer', 'polymer_path', default=None,
              type=click.Path(dir_okay=False, path_type=pathlib.Path),
              help='Polymer definition (Polymer.to_dict), JSON; ethylene glycol (OPLS-AA) when absent.')
def classical_md(structure_path: pathlib.Path, parameters_path: pathlib.Path,
                 polymer_path: pathlib.Path | None) -> None:
    """Relax, NPT and NVT of a cell with OpenMM (OPLS-AA for ethylene glycol, GAFF2 for other polymers); writes
    npt.h5, nvt.h5 (H5MD), final.extxyz, summary.json."""
    import ase.io

    from aiida_qrnn.core.forcefield import MdProtocol, MdUnstableError, UnsupportedChemistryError, run_classical_md
    from aiida_qrnn.core.forcefield.baseline import baseline_name, polymer_system
    from aiida_qrnn.core.forcefield.gaff import AmberToolsError
    from aiida_qrnn.core.forcefield.md import cutoff_for_cell
    from aiida_qrnn.core.polymer import ETHYLENE_GLYCOL, Polymer

    try:
        parameters = json.loads(parameters_path.read_text())
        protocol = MdProtocol.from_dict(parameters)
        atoms = ase.io.read(structure_path, format='extxyz')
        polymer = ETHYLENE_GLYCOL if polymer_path is None else Polymer.from_dict(json.loads(polymer_path.read_text()))
    except (OSError, ValueError, TypeError) as exception:
        names = ' / '.join(f"'{path}'" for path in (structure_path, parameters_path, polymer_path) if path)
        fail(f'{names}: {exception}', EXIT_BAD_INPUT)
    try:
        system = polymer_system(atoms, polymer, folder=pathlib.Path.cwd() / 'gaff2',
                                cutoff_nm=protocol.cutoff_nm or cutoff_for_cell(atoms))
        summary = run_classical_md(atoms, protocol, pathlib.Path.cwd(), system=system)
        summary['force_field'] = baseline_name(polymer)
    except AmberToolsError as exception:
        fail(f"'{structure_path}' ({polymer.name}, GAFF2): {exception}", EXIT_BAD_INPUT)
    except UnsupportedChemistryError as exception:
        fail(f"'{structure_path}': {exception}", EXIT_BAD_INPUT)
    except MdUnstableError as exception:
        fail(str(exception), EXIT_UNSTABLE)
    except ValueError as exception:
        fail(f"'{structure_path}': {exception}", EXIT_BAD_INPUT)
    write_json(pathlib.Path(JOB.outputs['summary']), summary, indent=2)
