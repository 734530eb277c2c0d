"""``XtbCalculation``: label a whole cluster set with GFN-xTB (energies, forces, charges, dipoles) in one job."""

from __future__ import annotations

import io
import shlex
import tarfile
from collections.abc import Mapping
from numbers import Real
from typing import Any

import numpy as np
from aiida import orm
from aiida.common.datastructures import CalcInfo, CodeInfo
from aiida.common.folders import Folder
from aiida.engine import CalcJobProcessSpec
from ase.data import atomic_numbers, chemical_symbols

from aiida_qrnn.calculations.labels import LabelCalcJob, closed_shell_problem
from aiida_qrnn.data.cluster_set import ClusterSetData

__all__ = ('XtbCalculation', 'level_of_theory', 'validate_clusters', 'validate_parameters')

#: Heaviest element GFN1- and GFN2-xTB are parametrised for (Rn).
MAX_ATOMIC_NUMBER = 86
DEFAULT_GFN = 2
#: Optional ``parameters`` keys -> xtb command-line flag.
PARAMETER_FLAGS = {'accuracy': '--acc', 'electronic_temperature': '--etemp', 'max_iterations': '--iterations'}
#: xtb resets an accuracy outside this range to 1.0 with only a note in stdout, so it is refused instead.
ACCURACY_RANGE = (1e-4, 1e3)


def level_of_theory(parameters: Mapping[str, Any]) -> str:
    """The ``level_of_theory`` of the labels that ``parameters`` produce, e.g. ``'gfn2-xtb'``."""
    return f'gfn{parameters.get("gfn", DEFAULT_GFN)}-xtb'


def validate_parameters(value: orm.Dict, _) -> str | None:
    """Refuse unknown keys and values xtb would reject or silently change; the message names the key."""
    parameters = value.get_dict()
    known = {'gfn', *PARAMETER_FLAGS}
    unknown = sorted(set(parameters) - known)
    if unknown:
        return f'parameters: unknown key(s) {unknown}; the accepted keys are {sorted(known)}.'
    gfn = parameters.get('gfn', DEFAULT_GFN)
    if not _is_integer(gfn) or gfn not in (1, 2):
        return f'parameters: gfn must be the integer 1 or 2, got {gfn!r}.'
    accuracy = parameters.get('accuracy', 1.0)
    if not _is_number(accuracy) or not ACCURACY_RANGE[0] <= accuracy <= ACCURACY_RANGE[1]:
        return f'parameters: accuracy must be a number in [{ACCURACY_RANGE[0]}, {ACCURACY_RANGE[1]}], got {accuracy!r}.'
    temperature = parameters.get('electronic_temperature', 300.0)
    if not _is_number(temperature) or temperature <= 0:
        return f'parameters: electronic_temperature (K) must be a positive number, got {temperature!r}.'
    iterations = parameters.get('max_iterations', 250)
    if not _is_integer(iterations) or iterations < 1:
        return f'parameters: max_iterations must be a positive integer, got {iterations!r}.'
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and bool(np.isfinite(value))


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_clusters(value: ClusterSetData, _) -> str | None:
    """Refuse elements GFN-xTB has no parameters for, periodic clusters (an xyz file cannot describe them) and
    clusters that cannot be run closed-shell (``--uhf 0``), see ``closed_shell_problem``."""
    unsupported = sorted(symbol for symbol in value.elements if atomic_numbers[symbol] > MAX_ATOMIC_NUMBER)
    if unsupported:
        return f'clusters: GFN-xTB has no parameters for {unsupported}; elements up to Rn are supported.'
    arrays = value.get_arrays()
    periodic = np.flatnonzero(arrays.pbc.any(axis=1))
    if len(periodic):
        return (
            f'clusters: cluster {int(periodic[0])} is periodic ({len(periodic)} periodic in all); '
            f'XtbCalculation labels open clusters only.'
        )
    return closed_shell_problem(arrays)


class XtbCalculation(LabelCalcJob):
    """Label every cluster of a ``ClusterSetData`` with GFN-xTB in one job.

    Cluster ``i`` is written as ``c{i:06d}.xyz`` (sent in ``inputs.tar``) and gets its own xtb run (one line
    each in ``run_clusters.sh``, run one after another), so that a cluster on which xtb fails does not stop the
    rest: the job labels what it can, and a restart only has to relabel the clusters listed in
    ``failed_clusters``. The per-cluster output files (packed into ``outputs.tar`` when every cluster has run) are
    retrieved into a temporary folder, parsed and dropped (the labels are the output); the job's only code line,
    ``xtb --version``, leaves ``xtb_version.out`` in ``retrieved``.

    Labels are the SCF energy, forces (minus the gradient), Mulliken-type partial charges and the dipole moment,
    all converted to eV, eV/Å, e and e·Å; they replace any labels the input set carried. For a charged cluster
    xtb takes the dipole about the coordinate origin, which is the origin of the stored positions.
    """

    #: Output file name suffixes after the cluster prefix, keyed by the argument of ``parse_cluster``.
    OUTPUT_SUFFIXES = {'stdout': '.out', 'stderr': '.err', 'gradient': '.gradient', 'xtbout_json': '.xtbout.json'}
    RUN_SCRIPT = 'run_clusters.sh'
    VERSION_FILENAME = 'xtb_version.out'
    OUTPUT_ARCHIVE = 'outputs.tar'
    INPUT_ARCHIVE = 'inputs.tar'

    validate_clusters = staticmethod(validate_clusters)

    @classmethod
    def define(cls, spec: CalcJobProcessSpec) -> None:
        super().define(spec)
        spec.input(
            'parameters', valid_type=orm.Dict, required=False, validator=validate_parameters,
            help=(
                'Optional xtb settings: gfn (1 or 2, default 2), accuracy (--acc), electronic_temperature '
                '(--etemp, K) and max_iterations (--iterations).'
            ),
        )
        options = spec.inputs['metadata']['options']
        options['parser_name'].default = 'qrnn.xtb'
        # xtb runs one small cluster at a time, where OpenMP threads cost more than they save.
        options['environment_variables'].default = {'OMP_NUM_THREADS': '1'}

    def prepare_for_submission(self, folder: Folder) -> CalcInfo:
        """Write one xyz file and one xtb command line (in ``run_clusters.sh``) per cluster."""
        arrays = self.inputs.clusters.get_arrays()
        parameters = self.inputs.parameters.get_dict() if 'parameters' in self.inputs else {}
        flags = ['--gfn', str(parameters.get('gfn', DEFAULT_GFN))]
        for key, flag in PARAMETER_FLAGS.items():
            if key in parameters:
                flags += [flag, str(parameters[key])]

        # One line per cluster in a script of their own rather than one CodeInfo each: AiiDA loads the code from
        # the database for every CodeInfo (twice), which cost more than xtb itself on small clusters.
        code = self.inputs.code
        command = shlex.join([*code.get_prepend_cmdline_params(), *code.get_executable_cmdline_params()])
        geometries: dict[str, str] = {}
        lines = [f'tar -xf {self.INPUT_ARCHIVE}', '# One xtb run per cluster; a failing one does not stop the others.']
        for index in range(arrays.n_clusters):
            prefix = self.prefix(index)
            rows = slice(arrays.offsets[index], arrays.offsets[index + 1])
            geometry = [str(rows.stop - rows.start), f'cluster {index}']
            geometry += [
                f'{chemical_symbols[number]:<2} ' + ' '.join(f'{x:.10f}' for x in position)
                for number, position in zip(arrays.numbers[rows], arrays.positions[rows], strict=True)
            ]
            geometries[f'{prefix}.xyz'] = '\n'.join(geometry) + '\n'
            arguments = [
                f'{prefix}.xyz', *flags, '--grad', '--chrg', str(int(arrays.total_charge[index])), '--uhf', '0',
                '--json', '--namespace', prefix,
            ]
            stdout, stderr = (prefix + self.OUTPUT_SUFFIXES[key] for key in ('stdout', 'stderr'))
            lines.append(f'{command} {shlex.join(arguments)} > {stdout} 2> {stderr}')
        # The xyz files travel as one archive: copying thousands of small files to the computer costs more than
        # the archive's single copy and one tar command on the other side.
        with folder.open(self.INPUT_ARCHIVE, 'wb') as handle, tarfile.open(fileobj=handle, mode='w') as archive:
            for name, text in geometries.items():
                content = text.encode()
                member = tarfile.TarInfo(name)
                member.size = len(content)
                archive.addfile(member, io.BytesIO(content))
        # Hand back one archive instead of four files per cluster; a job killed earlier leaves the loose files.
        patterns = ' '.join(f'c*{suffix}' for suffix in self.OUTPUT_SUFFIXES.values())
        lines.append(
            f'tar -cf {self.OUTPUT_ARCHIVE}.part {patterns} && mv {self.OUTPUT_ARCHIVE}.part {self.OUTPUT_ARCHIVE} '
            f'&& rm -f {patterns}'
        )
        lines.append('exit 0')
        with folder.open(self.RUN_SCRIPT, 'w') as handle:
            handle.write('\n'.join(lines) + '\n')

        # The job's one code line records the xtb version; the clusters run from the script just before it.
        codeinfo = CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = ['--version']
        codeinfo.stdout_name = self.VERSION_FILENAME

        calcinfo = CalcInfo()
        calcinfo.codes_info = [codeinfo]
        calcinfo.prepend_text = f'bash {self.RUN_SCRIPT}'
        # The per-cluster files only feed the parser: their labels end up in the output set. Storing thousands of
        # small files in the repository cost more than xtb itself on small clusters, so they are retrieved into a
        # temporary folder; ``metadata.options.additional_retrieve_list`` keeps any of them.
        calcinfo.retrieve_list = [self.VERSION_FILENAME]
        calcinfo.retrieve_temporary_list = [
            self.OUTPUT_ARCHIVE, *(f'c*{suffix}' for suffix in self.OUTPUT_SUFFIXES.values())
        ]
        return calcinfo
