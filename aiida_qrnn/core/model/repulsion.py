"""A short-range repulsive prior: ZBL screened nuclear repulsion, switched off before bonded distances.

.. math::

    E = \\sum_{i<j} \\frac{k_e Z_i Z_j}{r_{ij}} \\,\\phi(r_{ij}/a_{ij})\\, S(r_{ij}),\\qquad
    a_{ij} = \\frac{0.8854\\, a_0}{Z_i^{0.23} + Z_j^{0.23}}

with the Ziegler–Biersack–Littmark universal screening function (J. F. Ziegler, J. P. Biersack, U. Littmark,
*The Stopping and Range of Ions in Solids*, Pergamon, 1985)
:math:`\\phi(x) = 0.18175 e^{-3.19980x} + 0.50986 e^{-0.94229x} + 0.28022 e^{-0.40290x} + 0.02817 e^{-0.20162x}`.
:math:`S(r)` is 1 below ``inner`` × (R_i + R_j) and 0 from ``outer`` × (R_i + R_j) on (R: covalent radii of
Cordero et al. 2008, ``ase.data.covalent_radii``), the C2 polynomial 1 - 10x³ + 15x⁴ - 6x⁵ in between. Both factors
fall with r, so the prior is repulsive at every distance and exactly zero at bonded and longer distances: it changes
nothing a trained model sees in its data, and the networks learn the residual of the labels, while an atom pushed
far inside a bond (where a model trained on little data has never been) meets the bare nuclear repulsion.
Choice and measurements: ``docs/model-long-range.md``.
"""

import math
from typing import Final

import torch
from ase.data import covalent_radii

from aiida_qrnn.core.units import COULOMB_CONSTANT

from .neighbors import sum_over_pairs

__all__ = ('ZBLRepulsion',)

BOHR_RADIUS = 0.529177210903  # Å (CODATA 2018)
ZBL_SCREENING_LENGTH = 0.8854 * BOHR_RADIUS  # Å, a = 0.8854 a0 / (Z_i^0.23 + Z_j^0.23)


class ZBLRepulsion(torch.nn.Module):
    """ZBL repulsion per system (eV) from atomic numbers and a half pair list (Å); no fitted parameters.

    :param inner: below ``inner`` × (R_i + R_j) the full ZBL repulsion acts.
    :param outer: from ``outer`` × (R_i + R_j) on the prior is exactly zero (must be > ``inner``).
    """

    inner: Final[float]
    outer: Final[float]
    coulomb_constant: Final[float]
    screening_length: Final[float]

    def __init__(self, inner: float = 0.5, outer: float = 0.8) -> None:
        super().__init__()
        if not (math.isfinite(inner) and math.isfinite(outer) and 0 <= inner < outer):
            raise ValueError(f'ZBL repulsion needs 0 <= inner < outer (fractions of covalent radius sums), '
                             f'got inner={inner!r}, outer={outer!r}.')
        self.inner = float(inner)
        self.outer = float(outer)
        self.coulomb_constant = COULOMB_CONSTANT
        self.screening_length = ZBL_SCREENING_LENGTH
        self.register_buffer('covalent_radii', torch.tensor(covalent_radii), persistent=False)  # (119,) Å

    def pair_energies(self, numbers: torch.Tensor, pairs: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
        """Repulsion (P,) eV of each listed pair, exactly zero from ``outer`` × (R_i + R_j) on."""
        z_i = numbers.index_select(0, pairs[0])  # (P,)
        z_j = numbers.index_select(0, pairs[1])  # (P,)
        radii = self.covalent_radii.to(distances.dtype)
        radius_sum = radii.index_select(0, z_i) + radii.index_select(0, z_j)  # (P,) Å
        r_in, r_out = self.inner * radius_sum, self.outer * radius_sum  # (P,)
        inside = distances < r_out  # (P,)
        r = torch.where(inside, distances, r_out)  # (P,) finite gradients where the prior is zero
        x = ((r - r_in) / (r_out - r_in)).clamp(0.0, 1.0)  # (P,)
        x2 = x * x
        switch = 1.0 - x2 * x * (10.0 - 15.0 * x + 6.0 * x2)  # (P,) 1 below r_in, 0 at r_out
        charge_i, charge_j = z_i.to(distances.dtype), z_j.to(distances.dtype)
        screening_length = self.screening_length / (charge_i.pow(0.23) + charge_j.pow(0.23))  # (P,) Å
        scaled = r / screening_length  # (P,)
        screening = (0.18175 * torch.exp(-3.19980 * scaled) + 0.50986 * torch.exp(-0.94229 * scaled)
                     + 0.28022 * torch.exp(-0.40290 * scaled) + 0.02817 * torch.exp(-0.20162 * scaled))  # (P,) φ
        energy = self.coulomb_constant * charge_i * charge_j / r * screening * switch  # (P,)
        return torch.where(inside, energy, torch.zeros_like(energy))

    def forward(
        self, numbers: torch.Tensor, pairs: torch.Tensor, distances: torch.Tensor, system_index: torch.Tensor,
        n_systems: int,
    ) -> torch.Tensor:
        """Energy (n_systems,) in eV; ``pairs`` (2, P) lists each unordered pair once, ``distances`` (P,) in Å."""
        return sum_over_pairs(self.pair_energies(numbers, pairs, distances), pairs, system_index, n_systems)
