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

__all__ = ('PERIODIC_METHODS', 'Coulomb')

#: Periodic Coulomb methods: damped shifted force through the pair list, or an Ewald split with its k-space part
#: summed by torch-pme (plain Ewald, O(N^2) in k-space, or particle-mesh Ewald, O(N log N)).
PERIODIC_METHODS = ('dsf', 'ewald', 'pme')
#: Default Ewald split: R_c / (sqrt(2) sigma) = 3.5 (sigma = R_c / 4.95), so erfc(alpha R_c) = 7e-7 at the cutoff.
EWALD_SPLIT = 3.5 * math.sqrt(2.0)
#: Default k-space cutoff: lr_wavelength = sigma / 2 (torch-pme's own default), sigma k_max = 4 pi.
EWALD_K_SIGMA = 4 * math.pi


def _kspace_calculator(
    method: str, smearing: float, lr_wavelength: float | None, mesh_spacing: float | None, interpolation_nodes: int,
) -> torch.nn.Module:
    """torch-pme's Ewald or PME calculator with prefactor 1 (the caller multiplies by k_e)."""
    import torchpme

    potential = torchpme.CoulombPotential(smearing=smearing)
    if method == 'ewald':
        wavelength = 2 * math.pi * smearing / EWALD_K_SIGMA if lr_wavelength is None else float(lr_wavelength)
        if not (math.isfinite(wavelength) and wavelength > 0):
            raise ValueError(f'Coulomb lr_wavelength must be a positive distance in Å, got {lr_wavelength!r}.')
        return torchpme.EwaldCalculator(potential, lr_wavelength=wavelength)
    spacing = smearing / 6 if mesh_spacing is None else float(mesh_spacing)
    if not (math.isfinite(spacing) and spacing > 0):
        raise ValueError(f'Coulomb mesh_spacing must be a positive distance in Å, got {mesh_spacing!r}.')
    if interpolation_nodes not in (3, 4, 5, 6, 7):
        raise ValueError(f'Coulomb interpolation_nodes must be 3..7, got {interpolation_nodes!r}.')
    return torchpme.PMECalculator(potential, mesh_spacing=spacing, interpolation_nodes=int(interpolation_nodes))


class Coulomb(torch.nn.Module):
    """Coulomb energy per system (eV) of atomic charges (e) through a half pair list (Å).

    :param cutoff: damped-shifted-force cutoff R_c (Å) for periodic systems; pairs at or beyond it are ignored
        there. Open clusters use every pair passed in, so the caller lists all pairs of a cluster.
    :param dsf_alpha: damping parameter alpha (1/Å) of the damped shifted force.
    :param short_range_cutoff: r_sr (Å): the bare Coulomb interaction times f_sr(r) is removed, since the networks
        learn it; 0 keeps the full interaction.
    :param method: periodic cells only: ``'dsf'`` (default), ``'ewald'`` or ``'pme'`` (torch-pme's k-space sum with
        the real-space part erfc(r/(√2σ))/r over the pair list up to ``cutoff``). Open clusters are exact either way.
    :param smearing: Ewald Gaussian width σ (Å); default ``cutoff / 4.95`` (erfc at the cutoff 7e-7).
    :param lr_wavelength: Ewald: shortest k-space wavelength (Å); default σ/2.
    :param mesh_spacing: PME mesh spacing (Å); default σ/6. ``interpolation_nodes``: PME's spline order (6).
    """

    cutoff: Final[float]
    dsf_alpha: Final[float]
    short_range_cutoff: Final[float]
    coulomb_constant: Final[float]
    _dsf_energy_shift: Final[float]
    _dsf_force_shift: Final[float]
    _dsf_self: Final[float]
    method: Final[str]
    smearing: Final[float]
    _ewald_alpha: Final[float]

    def __init__(
        self, cutoff: float = 12.0, dsf_alpha: float = 0.2, short_range_cutoff: float = 4.6, method: str = 'dsf',
        smearing: float | None = None, lr_wavelength: float | None = None, mesh_spacing: float | None = None,
        interpolation_nodes: int = 6,
    ) -> None:
        super().__init__()
        if method not in PERIODIC_METHODS:
            raise ValueError(f'Coulomb method must be one of {list(PERIODIC_METHODS)}, got {method!r}.')
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
        self.method = method
        # Ewald split: erfc(r / (sqrt(2) sigma)) / r in real space over the pair list, the rest in k-space (torch-pme)
        smearing = cutoff / EWALD_SPLIT if smearing is None else float(smearing)
        if not (math.isfinite(smearing) and smearing > 0):
            raise ValueError(f'Coulomb smearing must be a positive distance in Å, got {smearing!r}.')
        self.smearing = smearing
        self._ewald_alpha = 1.0 / (math.sqrt(2.0) * smearing)  # 1/Å
        self._kspace = None
        if method != 'dsf':
            self._kspace = _kspace_calculator(method, smearing, lr_wavelength, mesh_spacing, interpolation_nodes)

    def forward(
        self, charges: torch.Tensor, pairs: torch.Tensor, distances: torch.Tensor, system_index: torch.Tensor,
        n_systems: int, periodic: bool, positions: torch.Tensor | None = None, cells: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Energy (n_systems,) in eV; ``pairs`` (2, P) lists each unordered pair once, ``distances`` (P,) in Å.

        ``positions`` (atoms, 3) and ``cells`` (n_systems, 3, 3) are needed for periodic Ewald/PME only.
        """
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
            energy = energy + self.periodic_energy(charges, positions, cells, system_index, n_systems)
        return energy

    def long_range_kernel(self, distances: torch.Tensor, periodic: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Distances clamped at R_c (periodic) and J(r) without the short-range removal, both (P,) -> (P,)."""
        if not periodic:
            return distances, 1.0 / distances
        within = distances < self.cutoff  # (P,)
        r = torch.where(within, distances, torch.full_like(distances, self.cutoff))  # (P,), safe beyond R_c
        if self.method != 'dsf':  # Ewald real-space part, truncated at R_c where erfc(alpha R_c) ~ 1e-6
            kernel = torch.erfc(self._ewald_alpha * r) / r
            return r, torch.where(within, kernel, torch.zeros_like(kernel))
        kernel = (
            torch.erfc(self.dsf_alpha * r) / r - self._dsf_energy_shift + (r - self.cutoff) * self._dsf_force_shift
        )  # (P,), zero with zero slope at R_c
        return r, torch.where(within, kernel, torch.zeros_like(kernel))

    def short_range_kernel(self, r: torch.Tensor) -> torch.Tensor:
        """f_sr(r) / r, the part of 1/r removed (P,) -> (P,); exactly zero at and beyond ``short_range_cutoff``."""
        return self._short_range_envelope(r) / r

    def periodic_energy(
        self, charges: torch.Tensor, positions: torch.Tensor | None, cells: torch.Tensor | None,
        system_index: torch.Tensor, n_systems: int,
    ) -> torch.Tensor:
        """The periodic terms outside the pair list (n_systems,) eV: the DSF self term, or Ewald/PME's k-space part.

        The k-space part (torch-pme) includes the Gaussian self term and, for a charged cell, the neutralising
        background; it is differentiable with respect to positions and cell (forces and stress by autograd).
        """
        kspace = self._kspace
        if kspace is None:
            return self.self_energy(charges, system_index, n_systems)
        if positions is None or cells is None:
            raise ValueError('Coulomb Ewald/PME needs positions and cells for periodic systems.')
        no_pairs = torch.zeros((0, 2), dtype=torch.long, device=charges.device)  # real space is done by the caller
        no_distances = torch.zeros((0,), dtype=charges.dtype, device=charges.device)
        if n_systems == 1:
            potentials = kspace(charges.unsqueeze(1), cells[0], positions, no_pairs, no_distances)  # (atoms, 1)
            return self.coulomb_constant * (charges * potentials.squeeze(1)).sum(0, keepdim=True)
        counts: list[int] = torch.bincount(system_index, minlength=n_systems).tolist()
        energies = []
        start = 0
        for system, count in enumerate(counts):
            system_charges = charges[start:start + count]  # (atoms of the system,), system_index is sorted
            potentials = kspace(
                system_charges.unsqueeze(1), cells[system], positions[start:start + count], no_pairs, no_distances,
            )
            energies.append((system_charges * potentials.squeeze(1)).sum())
            start += count
        return self.coulomb_constant * torch.stack(energies)

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
