"""Long-range Coulomb energy of the predicted charges, without the short range the networks already learn.

.. math::

    E = k_e \\sum_{i<j} q_i q_j \\left[ J(r_{ij}) - \\frac{f_{sr}(r_{ij})}{r_{ij}} \\right] + E_{self}

* open clusters: :math:`J(r) = 1/r` over every listed pair (all pairs of a training cluster), :math:`E_{self} = 0`;
* periodic cells: damped shifted force (Fennell & Gezelter, J. Chem. Phys. 124, 234104 (2006), eq. 19), O(N)
  through the neighbour list,

  .. math::

      J(r) = \\frac{\\mathrm{erfc}(\\alpha r)}{r} - \\frac{\\mathrm{erfc}(\\alpha R_c)}{R_c}
             + (r - R_c)\\left[\\frac{\\mathrm{erfc}(\\alpha R_c)}{R_c^2}
             + \\frac{2\\alpha}{\\sqrt{\\pi}} \\frac{e^{-\\alpha^2 R_c^2}}{R_c}\\right],\\quad r < R_c,

  with the self term :math:`E_{self} = -k_e [\\mathrm{erfc}(\\alpha R_c)/(2R_c) + \\alpha/\\sqrt{\\pi}] \\sum_i q_i^2`
  (needed to approach the Ewald energy; it depends on the charges, so it also gives forces through them).

:math:`f_{sr}(r) = \\exp(1 - 1/(1 - (r/r_{sr})^2))` for :math:`r < r_{sr}`, else 0, removes the part of the bare
Coulomb interaction below ``short_range_cutoff`` that the atomic networks learn anyway (AIMNet2,
``aimnet/modules/lr.py``: :math:`E_{LR} = E_{full} - E_{SR}`). :math:`1 - f_{sr}(r) \\approx (r/r_{sr})^2` near 0,
so the kernel is finite and smooth at short range and equals the full kernel beyond :math:`r_{sr}`.
Equations, defaults and measured accuracy: ``docs/model-long-range.md``.
"""

import math
from typing import Final

import torch

from aiida_qrnn.core.units import COULOMB_CONSTANT

from .neighbors import sum_over_pairs

__all__ = ('Coulomb',)


class Coulomb(torch.nn.Module):
    """Coulomb energy per system (eV) of atomic charges (e) through a half pair list (Å).

    :param cutoff: damped-shifted-force cutoff R_c (Å) for periodic systems; pairs at or beyond it are ignored
        there. Open clusters use every pair passed in, so the caller lists all pairs of a cluster.
    :param dsf_alpha: damping parameter alpha (1/Å) of the damped shifted force.
    :param short_range_cutoff: r_sr (Å): the bare Coulomb interaction times f_sr(r) is removed, since the networks
        learn it; 0 keeps the full interaction.
    """

    cutoff: Final[float]
    dsf_alpha: Final[float]
    short_range_cutoff: Final[float]
    coulomb_constant: Final[float]
    _dsf_energy_shift: Final[float]
    _dsf_force_shift: Final[float]
    _dsf_self: Final[float]

    def __init__(self, cutoff: float = 12.0, dsf_alpha: float = 0.2, short_range_cutoff: float = 4.6) -> None:
        super().__init__()
        if not (math.isfinite(cutoff) and cutoff > 0):
            raise ValueError(f'Coulomb cutoff must be a positive finite distance in Å, got {cutoff!r}.')
        if not (math.isfinite(dsf_alpha) and dsf_alpha >= 0):
            raise ValueError(f'Coulomb dsf_alpha must be a non-negative number in 1/Å, got {dsf_alpha!r}.')
        if not (math.isfinite(short_range_cutoff) and 0 <= short_range_cutoff < cutoff):
            raise ValueError(
                f'Coulomb short_range_cutoff must be in [0, cutoff={cutoff}) Å, got {short_range_cutoff!r}.'
            )
        self.coulomb_constant = COULOMB_CONSTANT  # eV·Å/e²
        self.cutoff = float(cutoff)
        self.dsf_alpha = float(dsf_alpha)
        self.short_range_cutoff = float(short_range_cutoff)
        erfc_cutoff = math.erfc(dsf_alpha * cutoff)
        gauss_cutoff = 2 * dsf_alpha / math.sqrt(math.pi) * math.exp(-((dsf_alpha * cutoff) ** 2))
        self._dsf_energy_shift = erfc_cutoff / cutoff  # erfc(a Rc)/Rc
        self._dsf_force_shift = erfc_cutoff / cutoff**2 + gauss_cutoff / cutoff  # -dJ/dr at Rc
        self._dsf_self = erfc_cutoff / (2 * cutoff) + dsf_alpha / math.sqrt(math.pi)

    def forward(
        self, charges: torch.Tensor, pairs: torch.Tensor, distances: torch.Tensor, system_index: torch.Tensor,
        n_systems: int, periodic: bool,
    ) -> torch.Tensor:
        """Energy (n_systems,) in eV; ``pairs`` (2, P) lists each unordered pair once, ``distances`` (P,) in Å."""
        assert charges.shape == system_index.shape, 'charges and system_index must both be (atoms,)'
        assert pairs.dim() == 2 and pairs.shape[0] == 2, 'pairs must be (2, P)'
        assert distances.shape == pairs.shape[1:], 'distances must be (P,)'
        pair_charges = charges.index_select(0, pairs.reshape(-1)).view(2, -1)  # (2, P)
        r, kernel = self.long_range_kernel(distances, periodic)  # (P,), (P,)
        if self.short_range_cutoff > 0:
            kernel = kernel - self.short_range_kernel(r)
        pair_energy = self.coulomb_constant * pair_charges[0] * pair_charges[1] * kernel  # (P,)
        energy = sum_over_pairs(pair_energy, pairs, system_index, n_systems)  # (n_systems,)
        if periodic:
            energy = energy + self.self_energy(charges, system_index, n_systems)
        return energy

    def long_range_kernel(self, distances: torch.Tensor, periodic: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Distances clamped at R_c (periodic) and J(r) without the short-range removal, both (P,) -> (P,)."""
        if not periodic:
            return distances, 1.0 / distances
        within = distances < self.cutoff  # (P,)
        r = torch.where(within, distances, torch.full_like(distances, self.cutoff))  # (P,), safe beyond R_c
        kernel = (
            torch.erfc(self.dsf_alpha * r) / r - self._dsf_energy_shift + (r - self.cutoff) * self._dsf_force_shift
        )  # (P,), zero with zero slope at R_c
        return r, torch.where(within, kernel, torch.zeros_like(kernel))

    def short_range_kernel(self, r: torch.Tensor) -> torch.Tensor:
        """f_sr(r) / r, the part of 1/r removed (P,) -> (P,); exactly zero at and beyond ``short_range_cutoff``."""
        return self._short_range_envelope(r) / r

    def self_energy(self, charges: torch.Tensor, system_index: torch.Tensor, n_systems: int) -> torch.Tensor:
        """DSF self term per system (n_systems,) of periodic cells."""
        self_energy = -self.coulomb_constant * self._dsf_self * charges * charges  # (atoms,)
        if n_systems == 1:
            return self_energy.sum(0, keepdim=True)
        return self_energy.new_zeros(n_systems).index_add(0, system_index, self_energy)

    def _short_range_envelope(self, r: torch.Tensor) -> torch.Tensor:
        """AIMNet2's f_sr(r) = exp(1 - 1/(1 - (r/r_sr)^2)) below r_sr, 0 beyond: 1 at r=0, C-infinity at r_sr."""
        # Input shapes: (P,) -> (P,)
        x2 = (r / self.short_range_cutoff) ** 2
        inside = x2 < 1.0
        x2_safe = torch.where(inside, x2, torch.zeros_like(x2))  # keeps the gradient finite beyond r_sr
        envelope = torch.exp(1.0 - 1.0 / (1.0 - x2_safe))
        return torch.where(inside, envelope, torch.zeros_like(envelope))
