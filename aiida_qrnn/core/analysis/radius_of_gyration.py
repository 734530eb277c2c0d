"""Radius of gyration of chains and its distribution.

    R_g^2 = sum_i m_i |r_i - r_cm|^2 / sum_i m_i

Chains must be whole (unwrapped trajectories from ``aiida_qrnn.core.md`` keep them so). The paper compares the
R_g distribution of one 100-mer under QRNN and OPLS (its Fig. 12b): a wider distribution, a more flexible chain.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._plot import new_axes, save
from .base import AnalysisBase
from .frames import FrameReader

#: Width of the bins of the R_g distribution.
RG_BIN_WIDTH_A = 0.1


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


class RadiusOfGyration(AnalysisBase):
    """R_g of every molecule in every frame and their distribution (whole molecules: unwrapped positions).

    Results: ``rg_A`` ``(n_frames, n_molecules)`` (``np.unique(molecule)`` order), ``bin_centres_A`` and
    ``probability_density_per_A`` of all values in bins of ``bin_width_A`` starting one bin below floor(min).
    """

    def __init__(self, trajectory: FrameReader, *, bin_width_A: float = RG_BIN_WIDTH_A) -> None:
        super().__init__(trajectory)
        if trajectory.molecule is None:
            raise ValueError(f'{trajectory.name} has no molecule ids: the radius of gyration needs them.')
        if not bin_width_A > 0:
            raise ValueError(f'bin_width_A must be positive, got {bin_width_A!r}.')
        self.bin_width_A = bin_width_A
        molecule = np.asarray(trajectory.molecule)
        self._members = [molecule == value for value in np.unique(molecule)]  # n_molecules x (n_atoms,)

    def _prepare(self) -> None:
        self.results.rg_A = np.zeros((self.n_frames, len(self._members)))

    def _single_frame(self) -> None:
        positions, masses = self._frame.positions, self._trajectory.masses
        self.results.rg_A[self._frame_index] = [radius_of_gyration(positions[member][None], masses[member])[0]
                                                for member in self._members]

    def _conclude(self) -> None:
        values, width = self.results.rg_A.ravel(), self.bin_width_A
        edges = np.arange(np.floor(values.min()) - width, values.max() + 2 * width, width)
        self.results.probability_density_per_A, _ = np.histogram(values, bins=edges, density=True)
        self.results.bin_centres_A = 0.5 * (edges[1:] + edges[:-1])


def plot_radius_of_gyration_distribution(values_A: np.ndarray, path: Path | str, *, bins: int = 40,
                                         label: str = 'R$_g$') -> Path:
    """Normalised histogram of R_g values (all frames and chains given)."""
    figure, axes = new_axes('R$_g$ / Å', 'probability density')
    values_A = np.ravel(values_A)
    axes.hist(values_A, bins=bins, density=True, alpha=0.7,
              label=f'{label}: {values_A.mean():.2f} ± {values_A.std():.2f} Å')
    axes.legend(frameon=False)
    return save(figure, path)
