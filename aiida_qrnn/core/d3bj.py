"""Grimme's D3 dispersion with Becke-Johnson damping, D3(BJ), for labels of ``<functional>-d3bj`` methods.

Debian's Psi4 1.3.2 runs ``-D3BJ`` functionals only through Grimme's ``dftd3`` program, which Debian does not
ship. The labelling job therefore runs the bare functional in Psi4 and adds D3(BJ) computed here with
``tad-dftd3`` (two-body only, no three-body ATM term, as in Psi4's ``-d3bj``). The correction depends on the
geometry only, so a job computes it for all its clusters before the first SCF starts.

Works in atomic units (bohr in, Hartree and Hartree/bohr out) because it corrects raw Psi4 output, which the
parser converts to package units afterwards together with the SCF part.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ('D3BJ_PARAMETERS', 'D3BJParameters', 'd3bj_energy_gradient', 'split_dispersion')


@dataclass(frozen=True)
class D3BJParameters:
    """Rational-damping parameters; ``a2`` in bohr. The three-body term is off (``s9 = 0``)."""

    s6: float
    s8: float
    a1: float
    a2: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


#: Functional (lower case, without ``-d3bj``) -> parameters.
D3BJ_PARAMETERS: dict[str, D3BJParameters] = {
    # ωB97X-D3BJ: A. Najibi, L. Goerigk, J. Chem. Theory Comput. 14, 5725 (2018); the values of Psi4 1.3.2
    # (procrouting/dft/hyb_functionals.py, "wB97X-D3BJ") and simple-dftd3 ("wb97x", rational damping).
    'wb97x': D3BJParameters(s6=1.0, s8=0.2641, a1=0.0, a2=5.4959),
}


def split_dispersion(method: str) -> tuple[str, D3BJParameters | None]:
    """``'wb97x-d3bj'`` -> ``('wb97x', parameters)``; a method without ``-d3bj`` -> ``(method, None)``.

    :raises ValueError: for a ``-d3bj`` method whose parameters are not in :data:`D3BJ_PARAMETERS`.
    """
    method = method.lower()
    if not method.endswith('-d3bj'):
        return method, None
    functional = method.removesuffix('-d3bj')
    if functional not in D3BJ_PARAMETERS:
        raise ValueError(
            f'method {method!r}: no D3(BJ) parameters for {functional!r}; known: '
            f'{sorted(name + "-d3bj" for name in D3BJ_PARAMETERS)}.'
        )
    return functional, D3BJ_PARAMETERS[functional]


def d3bj_energy_gradient(
    numbers: np.ndarray, positions_bohr: np.ndarray, parameters: D3BJParameters,
) -> tuple[float, np.ndarray]:
    """D3(BJ) energy (Hartree) and its gradient (Hartree/bohr, shape ``(atoms, 3)``) of one open cluster."""
    import torch
    from tad_dftd3 import dftd3

    numbers_t = torch.as_tensor(np.asarray(numbers, dtype=np.int64))  # (atoms,)
    positions = torch.tensor(np.asarray(positions_bohr, dtype=np.float64), requires_grad=True)  # (atoms, 3)
    assert positions.shape == (len(numbers_t), 3)
    param = {name: torch.tensor(value, dtype=torch.float64) for name, value in parameters.as_dict().items()}
    param['s9'] = torch.tensor(0.0, dtype=torch.float64)
    energy = dftd3(numbers_t, positions, param).sum()  # per-atom energies (atoms,) summed
    (gradient,) = torch.autograd.grad(energy, positions)  # (atoms, 3)
    return float(energy.detach()), gradient.numpy().copy()
