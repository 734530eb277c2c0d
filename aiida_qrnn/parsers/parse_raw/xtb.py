"""Read the files of one xtb single-point run (``--grad --json``) into labels in package units.

Pure functions on file contents: no AiiDA, so they can be tested and reused on any folder of xtb outputs.
Tested against xtb 6.5.1.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aiida_qrnn.core.label_records import FailureReason
from aiida_qrnn.core.units import E_BOHR_TO_E_ANGSTROM, HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM, HARTREE_TO_EV

__all__ = ('FailureReason', 'Logs', 'XtbOutputError', 'parse_cluster', 'parse_gradient', 'parse_xtbout_json')

#: What xtb prints when the SCC loop stops unconverged (6.5.1: a fatal error; other versions may only warn).
SCF_NOT_CONVERGED_PATTERNS = ('did not converge', 'convergence criteria cannot be satisfied')
#: A Fortran real without its exponent letter, written when the exponent needs three digits: ``1.5-100``.
_BARE_EXPONENT = re.compile(r'(?<=[0-9.])([+-]\d{3})$')


class XtbOutputError(ValueError):
    """An xtb output file that cannot give labels, with the reason that classifies the failure."""

    def __init__(self, reason: FailureReason, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class Logs:
    """Messages from parsing one cluster: an error means the cluster got no labels."""

    errors: list[tuple[FailureReason, str]] = field(default_factory=list)


def _fortran_float(text: str) -> float:
    """Read a Fortran real: ``D`` exponents, bare three-digit exponents; ``****`` (overflow) is unreadable."""
    text = _BARE_EXPONENT.sub(r'E\1', text.replace('D', 'E').replace('d', 'e'))
    try:
        return float(text)
    except ValueError:
        raise XtbOutputError(FailureReason.UNREADABLE_OUTPUT, f'cannot read the number {text!r}.') from None


def parse_gradient(content: str) -> dict[str, Any]:
    """Parse a Turbomole ``$grad`` file as xtb writes it with ``--grad``.

    The file holds a ``cycle = ... SCF energy = <Eh>`` line, N coordinate lines (bohr, element symbol last),
    N gradient lines (Eh/bohr) and ``$end``. xtb appends a cycle when the file already exists, so the last one
    is read.

    :returns: ``energy_hartree`` (float), ``gradient_hartree_per_bohr`` (N, 3) array.
    :raises XtbOutputError: when the file is truncated or malformed.
    """
    lines = content.splitlines()
    cycles = [number for number, line in enumerate(lines) if line.lstrip().startswith('cycle =')]
    if not cycles:
        raise XtbOutputError(FailureReason.UNREADABLE_OUTPUT, 'the gradient file has no "cycle =" line.')
    header = lines[cycles[-1]]
    match = re.search(r'SCF energy =\s*(\S+)', header)
    if match is None:
        raise XtbOutputError(FailureReason.UNREADABLE_OUTPUT, f'no SCF energy in the gradient file line {header!r}.')
    energy = _fortran_float(match.group(1))

    rows = []
    for line in lines[cycles[-1] + 1:]:
        if line.lstrip().startswith('$'):
            break
        rows.append(line.split())
    else:
        raise XtbOutputError(FailureReason.UNREADABLE_OUTPUT, 'the gradient file is truncated (no "$end" line).')
    coordinates = [row for row in rows if len(row) == 4]
    gradient = [row for row in rows if len(row) == 3]
    if len(coordinates) + len(gradient) != len(rows) or len(coordinates) != len(gradient) or not gradient:
        raise XtbOutputError(
            FailureReason.UNREADABLE_OUTPUT,
            f'the gradient file has {len(coordinates)} coordinate and {len(gradient)} gradient lines '
            f'among {len(rows)}; expected N of each.',
        )
    values = np.array([[_fortran_float(x) for x in row] for row in gradient])  # (atoms, 3)
    return {'energy_hartree': energy, 'gradient_hartree_per_bohr': values}


def parse_xtbout_json(content: str) -> dict[str, Any]:
    """Parse ``xtbout.json`` (``--json``).

    :returns: ``charges`` (N,) in e, ``dipole_e_bohr`` (3,), ``unpaired_electrons`` (int).
    :raises XtbOutputError: when the file is not JSON or lacks a key.
    """
    try:
        document = json.loads(content)
        return {
            'charges': np.asarray(document['partial charges'], dtype=np.float64),
            'dipole_e_bohr': np.asarray(document['dipole'], dtype=np.float64).reshape(3),
            'unpaired_electrons': int(document['number of unpaired electrons']),
        }
    except (ValueError, KeyError, TypeError) as exception:
        # Fortran writes ``****`` for numbers that overflow their field, which is not JSON either.
        raise XtbOutputError(
            FailureReason.UNREADABLE_OUTPUT, f'xtbout.json is unreadable ({type(exception).__name__}: {exception}).'
        ) from None


def _error_lines(stdout: str) -> str:
    """The ``-n- message`` lines of xtb's ``[ERROR]`` block, innermost cause last."""
    lines = [line.strip() for line in stdout.splitlines() if re.match(r'\s*-\d+-\s', line)]
    return ' / '.join(lines) or 'no error message in stdout'


def parse_cluster(
    *, n_atoms: int, stdout: str | None, stderr: str | None, gradient: str | None, xtbout_json: str | None,
) -> tuple[dict[str, Any], Logs]:
    """Turn the output files of one cluster (``None`` where a file is absent) into labels.

    :returns: ``(data, logs)``. ``data`` holds ``energy`` (eV), ``forces`` (N, 3) eV/Å, ``charges`` (N,) e and
        ``dipole`` (3,) e·Å, or is empty when ``logs.errors`` says why the cluster failed.
    """
    logs = Logs()
    try:
        data = _labels(n_atoms, stdout, stderr, gradient, xtbout_json)
    except XtbOutputError as exception:
        logs.errors.append((exception.reason, str(exception)))
        return {}, logs
    return data, logs


def _labels(
    n_atoms: int, stdout: str | None, stderr: str | None, gradient: str | None, xtbout_json: str | None,
) -> dict[str, Any]:
    if stdout is None or stderr is None:
        raise XtbOutputError(FailureReason.MISSING_OUTPUT, 'no stdout or stderr: xtb did not run for this cluster.')
    if any(pattern in stdout for pattern in SCF_NOT_CONVERGED_PATTERNS):
        raise XtbOutputError(FailureReason.SCF_NOT_CONVERGED, f'the SCC did not converge: {_error_lines(stdout)}.')
    streams = stderr + stdout
    if 'abnormal termination' in streams:
        raise XtbOutputError(FailureReason.ABNORMAL_TERMINATION, f'xtb stopped: {_error_lines(stdout)}.')
    if not re.search(r'(?<!ab)normal termination of xtb', streams):
        # No termination message at all: the job was killed while xtb ran on this cluster.
        raise XtbOutputError(FailureReason.INTERRUPTED, 'the xtb output stops before xtb finished: interrupted.')
    missing = [name for name, text in (('gradient', gradient), ('xtbout.json', xtbout_json)) if text is None]
    if missing:
        raise XtbOutputError(FailureReason.MISSING_OUTPUT, f'xtb finished but wrote no {" or ".join(missing)} file.')

    grad = parse_gradient(gradient)
    extra = parse_xtbout_json(xtbout_json)
    counts = {'gradient': len(grad['gradient_hartree_per_bohr']), 'partial charges': len(extra['charges'])}
    if any(count != n_atoms for count in counts.values()):
        raise XtbOutputError(
            FailureReason.ATOM_COUNT_MISMATCH, f'the cluster has {n_atoms} atoms but xtb reported {counts}.'
        )
    data = {
        'energy': grad['energy_hartree'] * HARTREE_TO_EV,
        'forces': -grad['gradient_hartree_per_bohr'] * HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM,
        'charges': extra['charges'],
        'dipole': extra['dipole_e_bohr'] * E_BOHR_TO_E_ANGSTROM,
    }
    bad = [name for name, value in data.items() if not np.all(np.isfinite(value))]
    if bad:
        raise XtbOutputError(FailureReason.NON_FINITE, f'xtb returned NaN or infinite {", ".join(bad)}.')
    if extra['unpaired_electrons']:
        # The calculation asks for a closed shell (--uhf 0); xtb silently opens it when the count is odd, which
        # labels another state than the one requested.
        raise XtbOutputError(
            FailureReason.UNPHYSICAL,
            f'xtb used {extra["unpaired_electrons"]} unpaired electron(s) instead of the closed shell requested '
            '(--uhf 0): the electron count is odd for this total charge.',
        )
    return data
