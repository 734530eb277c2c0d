"""Radius of gyration of chains and its distribution.

    R_g^2 = sum_i m_i |r_i - r_cm|^2 / sum_i m_i

Chains must be whole (unwrapped trajectories from ``aiida_qrnn.core.md`` keep them so). The paper compares the
R_g distribution of one 100-mer under QRNN and OPLS (its Fig. 12b): a wider distribution, a more flexible chain.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._plot import new_axes, save


def radius_of_gyration(positions: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """R_g in Å of one molecule: positions ``(n_frames, n_atoms, 3)`` (or one frame ``(n_atoms, 3)``)."""
    positions = np.asarray(positions, dtype=np.float64)
    masses = np.asarray(masses, dtype=np.float64)
    weights = masses / masses.sum()  # (n_atoms,)
    centre = np.einsum('i,...ij->...j', weights, positions)  # (..., 3)
    squared = ((positions - centre[..., None, :]) ** 2).sum(axis=-1)  # (..., n_atoms)
    return np.sqrt(squared @ weights)


def radii_of_gyration(positions: np.ndarray, masses: np.ndarray, molecule_ids: np.ndarray) -> np.ndarray:
    """R_g ``(n_frames, n_molecules)`` of every molecule (``np.unique(molecule_ids)`` order)."""
    positions = np.asarray(positions, dtype=np.float64)
    masses = np.asarray(masses, dtype=np.float64)
    molecule_ids = np.asarray(molecule_ids)
    members = [molecule_ids == molecule for molecule in np.unique(molecule_ids)]
    return np.stack([radius_of_gyration(positions[:, member], masses[member]) for member in members], axis=1)


def plot_radius_of_gyration_distribution(values_A: np.ndarray, path: Path | str, *, bins: int = 40,
                                         label: str = 'R$_g$') -> Path:
    """Normalised histogram of R_g values (all frames and chains given)."""
    figure, axes = new_axes('R$_g$ / Å', 'probability density')
    values_A = np.ravel(values_A)
    axes.hist(values_A, bins=bins, density=True, alpha=0.7,
              label=f'{label}: {values_A.mean():.2f} ± {values_A.std():.2f} Å')
    axes.legend(frameon=False)
    return save(figure, path)
