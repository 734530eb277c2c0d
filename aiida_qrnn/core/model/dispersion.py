"""Pairwise dispersion with D3 coordination-number-dependent C6 and Chai-Head-Gordon damping.

.. math::

    E = -s_6 \\sum_{i<j} \\frac{C_{6,ij}(CN_i, CN_j)}{r_{ij}^6}
        \\frac{1}{1 + d\\,(r_{ij}/R_{0,ij})^{-12}}\\, S(r_{ij})

* :math:`CN_i = \\sum_j S(r_{ij}) / (1 + \\exp(-k_1 (R^{cov}_{ij}/r_{ij} - 1)))`, :math:`k_1 = 16`,
  :math:`R^{cov}_{ij} = k_2 (R^{cov}_i + R^{cov}_j)`, :math:`k_2 = 4/3` (Grimme et al., J. Chem. Phys. 132, 154104
  (2010), eq. 15; radii and :math:`k_2` from tad-mctc ``radii.COV_D3``);
* :math:`C_{6,ij} = \\sum_{ab} w_{ia} w_{jb} C_6^{ref}(Z_i, Z_j, a, b)` with normalised Gaussian weights
  :math:`w_{ia} \\propto \\exp(-k_3 (CN_i - CN^{ref}_{Z_i a})^2)`, :math:`k_3 = 4` (eq. 16; the reference tables are
  tad-dftd3's ``reference-c6.pt`` and ``Reference.cn``);
* Chai-Head-Gordon damping with :math:`d = 6` (Chai & Head-Gordon, Phys. Chem. Chem. Phys. 10, 6615 (2008)) and
  :math:`R_{0,ij}` the D3 pairwise cut-off radii R0AB (tad-mctc ``radii.VDW_PAIRWISE``);
* :math:`S(r)` switches pairs off smoothly (C2) between ``cutoff - switch_width`` and ``cutoff``, in both the energy
  and the coordination numbers, so that pairs listed beyond ``cutoff`` are ignored and energy and forces go to
  zero continuously.

Equations, choices and measured accuracy: ``docs/model-long-range.md``.
"""

import math
from collections.abc import Sequence
from typing import Final

import torch

from aiida_qrnn.core.units import BOHR_TO_ANGSTROM, HARTREE_TO_EV

from .neighbors import sum_over_pairs

__all__ = ('D3_MAX_ATOMIC_NUMBER', 'D3Dispersion', 'tail_integrals')

D3_MAX_ATOMIC_NUMBER = 94  # Pu: last element with D3 reference C6 and R0AB values (tad-dftd3 tables)
DEFAULT_MAX_ATOMIC_NUMBER = 18  # default tables H..Ar; pass `elements` for others (cost grows with their number)
D3_K1 = 16.0  # steepness of the CN counting function (Grimme 2010, eq. 15)
D3_K3 = 4.0  # width of the Gaussian CN weights (Grimme 2010, eq. 16)


def _d3_tables(elements: Sequence[int]) -> dict[str, torch.Tensor]:
    """D3 reference data in Å and eV for ``elements`` (float64): covalent radii, reference CN, C6 and R0AB.

    Read once from tad-dftd3 / tad-mctc (Hartree, Bohr) and trimmed to the references these elements use.
    """
    import tad_dftd3
    from tad_mctc.data import radii

    numbers = torch.tensor(list(elements), dtype=torch.long)
    reference = tad_dftd3.reference.Reference(dtype=torch.float64, device=torch.device('cpu'))
    reference_cn = reference.cn[numbers]  # (elements, 7); -1 marks a missing reference
    n_references = int((reference_cn >= 0).sum(1).max())
    reference_cn = reference_cn[:, :n_references]  # (elements, R): references are stored first
    c6 = reference.c6[numbers][:, numbers][:, :, :n_references, :n_references]  # (elements, elements, R, R)
    c6 = c6.permute(0, 2, 1, 3).reshape(len(numbers) * n_references, -1)  # (elements * R, elements * R)
    return {
        'covalent_radii': radii.COV_D3(dtype=torch.float64)[numbers] * BOHR_TO_ANGSTROM,  # (elements,), times k2
        'reference_cn': reference_cn,
        'reference_c6': c6 * HARTREE_TO_EV * BOHR_TO_ANGSTROM**6,  # eV·Å^6
        'r0': radii.VDW_PAIRWISE(dtype=torch.float64)[numbers][:, numbers] * BOHR_TO_ANGSTROM,  # (elements, elements)
    }


def _switch_polynomial(x: torch.Tensor) -> torch.Tensor:
    """C2 switch 1 - 10x³ + 15x⁴ - 6x⁵ of x in [0, 1]."""
    x2 = x * x
    return 1.0 - x2 * x * (10.0 - 15.0 * x + 6.0 * x2)


def tail_integrals(r0: torch.Tensor, cutoff: float, switch_width: float, damping: float) -> torch.Tensor:
    """I_ab = ∫ r² [1 - S(r)] / (r⁶ (1 + d (R0_ab/r)^12)) dr from the switch's start to ∞, in Å⁻³ (float64).

    The part of the damped C6 pair term that the switch removes, per unit C6: [R_c - w, R_c] by 64-point
    Gauss-Legendre (smooth integrand), [R_c, ∞) as ∫_0^1 x² / (R_c³ (1 + d (R0 x/R_c)^12)) dx with x = R_c/r; both
    to float64 rounding.
    """
    import numpy as np

    nodes, weights = (torch.from_numpy(array) for array in np.polynomial.legendre.leggauss(64))
    r0 = r0.to(torch.float64).unsqueeze(-1)  # (elements, elements, 1)
    start = cutoff - switch_width
    x = 0.5 * (nodes + 1.0)  # (64,) in (0, 1)
    r = start + switch_width * x  # (64,)
    inside = (1.0 - _switch_polynomial(x)) / (r**4 * (1.0 + damping * (r0 / r) ** 12))  # (E, E, 64)
    beyond = x * x / (cutoff**3 * (1.0 + damping * (r0 * x / cutoff) ** 12))  # (E, E, 64)
    return 0.5 * ((switch_width * inside + beyond) * weights).sum(-1)  # (elements, elements)


class D3Dispersion(torch.nn.Module):
    """Dispersion energy per system (eV) from atomic numbers and a half pair list (Å).

    :param cutoff: pairs at or beyond this distance (Å) do not contribute, to the energy or to the CN.
    :param switch_width: width (Å) of the smooth switch that ends at ``cutoff``.
    :param damping: Chai-Head-Gordon d.
    :param s6: global scaling of the C6 term.
    :param tail_correction: add, for periodic cells (``forward`` given ``cells``), the mean-field energy of the
        switched-off part of the C6 term beyond the switch's start (g(r) = 1 there), from the atoms' own C6 and the
        cell's composition and volume; its pressure and forces come from autograd. Open clusters are unaffected.
    :param elements: atomic numbers this instance supports (tables are trimmed to them, and the C6 contraction
        costs O(atoms · (elements · references)²)); default H..Ar (1..18), at most Pu (94).
        Atoms of other elements give a NaN energy for their system; :meth:`check_numbers` raises a clear error.

    The reference tables are buffers built once here, not read at call time; they are not persistent (not in the
    ``state_dict``), because they are constants of D3, not fitted weights.
    """

    cutoff: Final[float]
    switch_width: Final[float]
    damping: Final[float]
    s6: Final[float]
    tail_correction: Final[bool]
    _k1: Final[float]
    _k3: Final[float]

    def __init__(
        self, cutoff: float = 12.0, switch_width: float = 2.0, damping: float = 6.0, s6: float = 1.0,
        elements: Sequence[int] | None = None, tail_correction: bool = True,
    ) -> None:
        super().__init__()
        if not (math.isfinite(cutoff) and cutoff > 0):
            raise ValueError(f'D3Dispersion cutoff must be a positive finite distance in Å, got {cutoff!r}.')
        if not (math.isfinite(switch_width) and 0 < switch_width <= cutoff):
            raise ValueError(f'D3Dispersion switch_width must be in (0, cutoff={cutoff}] Å, got {switch_width!r}.')
        if not (math.isfinite(damping) and damping > 0):
            raise ValueError(f'D3Dispersion damping (Chai-Head-Gordon d) must be positive, got {damping!r}.')
        elements = list(range(1, DEFAULT_MAX_ATOMIC_NUMBER + 1)) if elements is None else [int(z) for z in elements]
        unknown = sorted({z for z in elements if not 1 <= z <= D3_MAX_ATOMIC_NUMBER})
        if not elements or unknown:
            raise ValueError(
                f'D3Dispersion elements must be atomic numbers in 1..{D3_MAX_ATOMIC_NUMBER}, got {elements!r}.'
            )
        elements = sorted(set(elements))
        self.cutoff = float(cutoff)
        self.switch_width = float(switch_width)
        self.damping = float(damping)
        self.s6 = float(s6)
        self.tail_correction = bool(tail_correction)
        self._k1 = D3_K1
        self._k3 = D3_K3
        self.elements = tuple(elements)
        species_of_number = torch.full((D3_MAX_ATOMIC_NUMBER + 1,), -1, dtype=torch.long)
        species_of_number[torch.tensor(elements)] = torch.arange(len(elements))
        self.register_buffer('species_of_number', species_of_number, persistent=False)  # (Z_max + 1,), -1: absent
        tables = _d3_tables(elements)
        for name, table in tables.items():
            self.register_buffer(name, table.to(torch.get_default_dtype()), persistent=False)
        # C6ref[(a, r), (b, s)] * I_ab: the tail energy is -s6 (2π/V) Wᵀ M W with W the summed reference weights
        n_references = tables['reference_cn'].shape[1]
        integrals = tail_integrals(tables['r0'], self.cutoff, self.switch_width, self.damping)  # (E, E) Å⁻³
        integrals = integrals.repeat_interleave(n_references, 0).repeat_interleave(n_references, 1)  # (E*R, E*R)
        tail_c6 = tables['reference_c6'] * integrals  # (E*R, E*R) eV
        self.register_buffer('tail_c6', tail_c6.to(torch.get_default_dtype()), persistent=False)

    def check_numbers(self, numbers: torch.Tensor) -> None:
        """Raise ValueError naming the elements this instance has no D3 reference data for (host-side check)."""
        numbers = numbers.detach().cpu()
        in_range = (numbers >= 0) & (numbers < self.species_of_number.shape[0])
        supported = torch.zeros_like(in_range)
        supported[in_range] = self.species_of_number.cpu()[numbers[in_range]] >= 0
        if not bool(supported.all()):
            missing = sorted(set(numbers[~supported].tolist()))
            raise ValueError(f'D3Dispersion has no reference data for atomic numbers {missing}; '
                             f'supported: {list(self.elements)}.')

    def forward(
        self, numbers: torch.Tensor, pairs: torch.Tensor, distances: torch.Tensor, system_index: torch.Tensor,
        n_systems: int, cells: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Energy (n_systems,) in eV; ``pairs`` (2, P) lists each unordered pair once, ``distances`` (P,) in Å.

        ``cells`` (n_systems, 3, 3): the systems are periodic cells and get the tail correction (if enabled).
        """
        assert numbers.shape == system_index.shape, 'numbers and system_index must both be (atoms,)'
        assert pairs.dim() == 2 and pairs.shape[0] == 2, 'pairs must be (2, P)'
        assert distances.shape == pairs.shape[1:], 'distances must be (P,)'
        raw_species = self.species_of_number[numbers]  # (atoms,), -1 for elements without tables
        species = raw_species.clamp(min=0)
        pair_energy, weights = self._pair_energies_and_weights(species, pairs, distances)  # (P,), (atoms, R)
        energy = sum_over_pairs(pair_energy, pairs, system_index, n_systems)  # (n_systems,)
        if cells is not None and self.tail_correction:
            energy = energy + self.tail_energy(species, weights, cells, system_index, n_systems)
        atom_zeros = torch.zeros(numbers.shape[0], dtype=distances.dtype, device=distances.device)  # (atoms,)
        unsupported = torch.where(raw_species < 0, atom_zeros + math.nan, atom_zeros)  # (atoms,)
        # NaN marks a system with an element outside the tables, without a host sync
        return energy.index_add(0, system_index, unsupported)

    def tail_energy(
        self, species: torch.Tensor, weights: torch.Tensor, cells: torch.Tensor, system_index: torch.Tensor,
        n_systems: int,
    ) -> torch.Tensor:
        """Mean-field energy (n_systems,) eV of the C6 term the switch removes, for homogeneous periodic cells.

        E_tail = -s6 (2π/V) Σ_ij C6_ij I_{s_i s_j} over all ordered atom pairs of the cell (i = j included: an
        atom's own images), with I_ab from :func:`tail_integrals`. C6_ij = Σ_ab w_ia w_jb C6ref is bilinear in the
        reference weights, so the double sum is Wᵀ (C6ref ⊙ I) W with W = Σ_i (one-hot(s_i) ⊗ w_i): exact, O(atoms).
        """
        n_elements = self.covalent_radii.shape[0]
        element_one_hot = torch.nn.functional.one_hot(species, n_elements).to(weights.dtype)  # (atoms, elements)
        scattered = (element_one_hot.unsqueeze(2) * weights.unsqueeze(1)).reshape(species.shape[0], -1)  # (atoms, E*R)
        summed = scattered.new_zeros((n_systems, scattered.shape[1])).index_add(0, system_index, scattered)  # (S, E*R)
        double_sum = ((summed @ self.tail_c6) * summed).sum(1)  # (n_systems,) eV·Å³
        volume = torch.linalg.det(cells).abs()  # (n_systems,) Å³
        return (-self.s6 * 2.0 * math.pi) * double_sum / volume

    def pair_energies(self, species: torch.Tensor, pairs: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
        """Dispersion energy (P,) in eV of each listed pair; ``species`` (atoms,) are indices into the tables."""
        return self._pair_energies_and_weights(species, pairs, distances)[0]

    def _pair_energies_and_weights(
        self, species: torch.Tensor, pairs: torch.Tensor, distances: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pair energies (P,) eV and the atoms' D3 reference weights (atoms, R)."""
        r, switch = self._switched_distances(distances)  # (P,), (P,)
        n_elements = self.covalent_radii.shape[0]
        species_j = species.index_select(0, pairs[1])  # (P,)
        species_pair = species.index_select(0, pairs[0]) * n_elements + species_j  # (P,) flat (s_i, s_j)
        _, c6, weights = self._coordination_and_c6(species, pairs, r, switch, species_j, species_pair)
        inverse_r2 = 1.0 / (r * r)  # (P,)
        inverse_r6 = inverse_r2 * inverse_r2 * inverse_r2  # (P,) products, not the slower pow
        r0_squared = (self.r0 * self.r0).view(-1).index_select(0, species_pair)  # (P,)
        ratio6 = r0_squared * r0_squared * r0_squared * inverse_r6  # (P,) (R0/r)^6
        damping = 1.0 + self.damping * ratio6 * ratio6  # (P,) the inverse of the CHG damping
        return (-self.s6) * c6 * inverse_r6 * switch / damping, weights  # (P,), (atoms, R)

    @torch.jit.export
    def coordination_and_c6(
        self, numbers: torch.Tensor, pairs: torch.Tensor, distances: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """D3 coordination numbers (atoms,) and C6 (P,) in eV·Å^6 of the listed pairs, as used by ``forward``."""
        species = self.species_of_number[numbers].clamp(min=0)  # (atoms,)
        r, switch = self._switched_distances(distances)
        species_j = species.index_select(0, pairs[1])  # (P,)
        species_pair = species.index_select(0, pairs[0]) * self.covalent_radii.shape[0] + species_j  # (P,)
        cn, c6, _ = self._coordination_and_c6(species, pairs, r, switch, species_j, species_pair)
        return cn, c6

    def _switched_distances(self, distances: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Distances clamped to the cutoff (safe gradients beyond it) and the switch S(r), both (P,)."""
        within = distances < self.cutoff  # (P,)
        r = torch.where(within, distances, torch.full_like(distances, self.cutoff))  # (P,)
        return r, self._switch(r)

    def _coordination_and_c6(
        self, species: torch.Tensor, pairs: torch.Tensor, r: torch.Tensor, switch: torch.Tensor,
        species_j: torch.Tensor, species_pair: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # Input shapes: (atoms,), (2, P), (P,), (P,), (P,), (P,) -> (atoms,), (P,), (atoms, R)
        n_atoms = species.shape[0]
        covalent_sums = (self.covalent_radii.unsqueeze(1) + self.covalent_radii.unsqueeze(0)).view(-1)  # (E*E,)
        covalent_sum = covalent_sums.index_select(0, species_pair)  # (P,)
        count = switch / (1.0 + torch.exp(-self._k1 * (covalent_sum / r - 1.0)))  # (P,)
        cn = torch.zeros(n_atoms, dtype=r.dtype, device=r.device)
        cn = cn.index_add(0, pairs[0], count).index_add(0, pairs[1], count)  # (atoms,)

        # Gaussian reference weights, normalised per atom (a softmax is the overflow-free form of eq. 16)
        reference_cn = self.reference_cn[species]  # (atoms, R)
        logits = -self._k3 * (cn.unsqueeze(1) - reference_cn) ** 2  # (atoms, R)
        logits = torch.where(reference_cn >= 0, logits, torch.full_like(logits, -math.inf))
        weights = torch.softmax(logits, dim=1)  # (atoms, R)

        # C6_ij = sum_ab w_ia w_jb C6ref[s_i, s_j, a, b] = (w_i^T C6ref)[s_j, b] . w_j, the first product for all
        # target elements at once as one matmul, so no (P, R, R) or (atoms, elements, R, R) tensor is built
        n_elements = self.covalent_radii.shape[0]
        n_references = reference_cn.shape[1]
        element_one_hot = torch.nn.functional.one_hot(species, n_elements).to(weights.dtype)  # (atoms, elements)
        scattered_weights = element_one_hot.unsqueeze(2) * weights.unsqueeze(1)  # (atoms, elements, R)
        half_contracted = scattered_weights.reshape(n_atoms, -1) @ self.reference_c6  # (atoms, elements * R)
        half_contracted = half_contracted.view(n_atoms * n_elements, n_references)  # (atoms * elements, R)
        # one reference column at a time: 1-D index_select (backward: 1-D index_add) and products, ~1.6x faster
        # on CPU than gathering (P, R) rows and summing them
        row = pairs[0] * n_elements + species_j  # (P,)
        half_columns, weight_columns = half_contracted.t(), weights.t()  # (R, atoms * elements), (R, atoms)
        c6 = half_columns[0].index_select(0, row) * weight_columns[0].index_select(0, pairs[1])  # (P,)
        for reference in range(1, n_references):
            c6 = c6 + half_columns[reference].index_select(0, row) * weight_columns[reference].index_select(0, pairs[1])
        return cn, c6, weights

    def _switch(self, r: torch.Tensor) -> torch.Tensor:
        """C2 switch 1 - 10x³ + 15x⁴ - 6x⁵ with x from 0 at cutoff - switch_width to 1 at cutoff."""
        # Input shapes: (P,) -> (P,)
        x = ((r - (self.cutoff - self.switch_width)) / self.switch_width).clamp(0.0, 1.0)
        return _switch_polynomial(x)
