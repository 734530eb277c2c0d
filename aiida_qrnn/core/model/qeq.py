"""Closed-form charge equilibration with a total-charge constraint, batched over systems (science.md §1.3).

Minimising Σ_i (χ_i q_i + ½ J_i q_i²) subject to Σ_i q_i = Q gives, with the Lagrange multiplier eliminated,

    q_i = -χ_i/J_i + (1/J_i) (Q + Σ_j χ_j/J_j) / (Σ_j 1/J_j)

per system: O(N), no linear solve, exact charge conservation (up to rounding) for any integer or fractional Q.
It is AIMNet2's ``nse`` step with q_raw = -χ/J and flexibility f = 1/J.
"""

from __future__ import annotations

import torch

__all__ = ('charge_equilibration',)


def charge_equilibration(
    electronegativity: torch.Tensor, hardness: torch.Tensor, total_charge: torch.Tensor, system_index: torch.Tensor,
    n_systems: int,
) -> torch.Tensor:
    """Charges (atoms,) from χ (atoms,), J > 0 (atoms,), Q (systems,) and the atoms' system index (atoms,)."""
    assert electronegativity.shape == hardness.shape == system_index.shape, 'χ, J and system_index must be (atoms,)'
    assert total_charge.shape == (n_systems,), 'total_charge must be (systems,)'
    flexibility = 1.0 / hardness  # (atoms,)
    raw_charges = -electronegativity * flexibility  # (atoms,)
    raw_sum = raw_charges.new_zeros(n_systems).index_add(0, system_index, raw_charges)  # (systems,)
    flexibility_sum = flexibility.new_zeros(n_systems).index_add(0, system_index, flexibility)  # (systems,)
    correction = (total_charge.to(raw_charges.dtype) - raw_sum) / flexibility_sum  # (systems,)
    return raw_charges + flexibility * correction[system_index]  # (atoms,)
