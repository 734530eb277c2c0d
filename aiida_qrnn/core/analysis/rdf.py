"""Radial distribution function between two atom selections in a periodic cell.

    g_AB(r) = < n_AB(r, r + dr) > / ( (N_A N_B - N_AB) / V * 4/3 pi ((r + dr)^3 - r^3) )

n_AB counts ordered pairs (i in A, j in B, i != j) at distance in the shell, averaged over frames with each
frame's own volume; N_AB is the number of atoms in both selections (self pairs are not counted). An ideal gas
gives g = 1. ``exclude_same_molecule`` drops intramolecular pairs (such as the O-H bond) from the counts but
not from the normalisation, as MDAnalysis's ``InterRDF(exclusion_block=...)`` does, so g then tends to
1 - (intramolecular pairs)/(all pairs) at large r. Distances use all periodic images (``vesin``), and
``r_max_A`` may not exceed half the smallest cell width, so no pair is counted twice.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from vesin import NeighborList

from ..md.trajectory import TrajectoryArrays
from ._plot import new_axes, save
from .base import AnalysisBase
from .frames import FrameReader


def half_min_width(cell: np.ndarray) -> float:
    volume = abs(np.linalg.det(cell))
    widths = [volume / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3])) for k in range(3)]
    return 0.5 * min(widths)


def radial_distribution_function(positions: np.ndarray, cells: np.ndarray, selection_a: np.ndarray,
                                 selection_b: np.ndarray, *, r_max_A: float, n_bins: int = 200,
                                 molecule_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Bin centres ``(n_bins,)`` in Å and g(r) ``(n_bins,)`` over frames ``(n_frames, n_atoms, 3)``.

    Selections are atom indices; ``molecule_ids`` (n_atoms,), if given, excludes intramolecular pairs. The arrays
    version of :class:`InterRDF`.
    """
    positions = np.asarray(positions, dtype=np.float64)
    n_frames, n_atoms = positions.shape[:2]
    arrays = TrajectoryArrays(numbers=np.zeros(n_atoms, dtype=np.int64), masses=np.ones(n_atoms),
                              steps=np.arange(n_frames), times_fs=np.arange(n_frames, dtype=np.float64),
                              positions=positions, cells=np.asarray(cells, dtype=np.float64),
                              pbc=np.ones(3, dtype=bool), velocities=None, molecule=molecule_ids)
    analysis = InterRDF(FrameReader.from_arrays(arrays, name='positions'), selection_a, selection_b,
                        r_max_A=r_max_A, n_bins=n_bins, exclude_same_molecule=molecule_ids is not None).run()
    return analysis.results.r_A, analysis.results.g


class InterRDF(AnalysisBase):
    """g(r) between two atom selections over the frames of a periodic trajectory (formula: module docstring).

    Positions are wrapped into each frame's cell before the neighbour search. Results: ``r_A`` (bin centres)
    ``(n_bins,)``, ``counts`` (ordered pairs per bin, summed over frames) and ``g`` ``(n_bins,)``.
    """

    def __init__(self, trajectory: FrameReader, selection_a: np.ndarray, selection_b: np.ndarray, *,
                 r_max_A: float, n_bins: int = 200, exclude_same_molecule: bool = False) -> None:
        super().__init__(trajectory)
        self.selection_a, self.selection_b = np.asarray(selection_a, dtype=np.int64), np.asarray(selection_b,
                                                                                                  dtype=np.int64)
        for name, selection in (('selection_a', self.selection_a), ('selection_b', self.selection_b)):
            if selection.size and (selection.min() < 0 or selection.max() >= trajectory.n_atoms):
                raise ValueError(f'{name} holds atom indices outside 0..{trajectory.n_atoms - 1} of '
                                 f'{trajectory.name}.')
        if not r_max_A > 0 or not isinstance(n_bins, int | np.integer) or n_bins < 1:
            raise ValueError(f'r_max_A must be positive and n_bins a positive integer, got {r_max_A!r}, {n_bins!r}.')
        if exclude_same_molecule and trajectory.molecule is None:
            raise ValueError(f'{trajectory.name} has no molecule ids: intramolecular pairs cannot be excluded.')
        self.r_max_A, self.n_bins, self.exclude_same_molecule = float(r_max_A), int(n_bins), exclude_same_molecule

    def _prepare(self) -> None:
        for cell in self._trajectory.cells[self.frames]:
            if self.r_max_A > half_min_width(cell) + 1e-9:
                raise ValueError(f'r_max_A={self.r_max_A} exceeds half the smallest cell width '
                                 f'({half_min_width(cell):.3f} Å).')
        n_atoms = self._trajectory.n_atoms
        self._in_a, self._in_b = np.zeros(n_atoms, dtype=bool), np.zeros(n_atoms, dtype=bool)
        self._in_a[self.selection_a], self._in_b[self.selection_b] = True, True
        self._edges = np.linspace(0.0, self.r_max_A, self.n_bins + 1)
        self._shell_volumes = 4.0 / 3.0 * np.pi * np.diff(self._edges**3)  # (n_bins,)
        self._n_pairs = len(self.selection_a) * len(self.selection_b) - int((self._in_a & self._in_b).sum())
        self._neighbours = NeighborList(cutoff=self.r_max_A, full_list=True)
        self.results.counts = np.zeros(self.n_bins)
        self._ideal = np.zeros(self.n_bins)

    def _single_frame(self) -> None:
        cell = self._frame.cell
        positions = wrap_positions(self._frame.positions[None], cell[None])[0]  # (n_atoms, 3)
        first, second, distances = self._neighbours.compute(positions, cell, True, quantities='ijd')  # (pairs,)
        keep = self._in_a[first] & self._in_b[second]
        if self.exclude_same_molecule:
            molecule = self._trajectory.molecule
            keep &= molecule[first] != molecule[second]
        self.results.counts += np.histogram(distances[keep], bins=self._edges)[0]
        self._ideal += self._n_pairs / abs(np.linalg.det(cell)) * self._shell_volumes

    def _conclude(self) -> None:
        self.results.r_A = 0.5 * (self._edges[1:] + self._edges[:-1])
        self.results.g = self.results.counts / self._ideal


def wrap_positions(positions: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Positions ``(n_frames, n_atoms, 3)`` wrapped into their frame's cell ``(n_frames, 3, 3)``."""
    fractional = np.einsum('fai,fij->faj', positions, np.linalg.inv(cells))  # (n_frames, n_atoms, 3)
    return np.einsum('faj,fjk->fak', fractional % 1.0, cells)


def coordination_number(r_A: np.ndarray, g: np.ndarray, number_density_per_A3: float, r_cut_A: float) -> float:
    """rho_B int_0^r_cut g(r) 4 pi r^2 dr over whole bins (bin centres ``r_A``): mean B neighbours of an A atom.

    Uses the bins' shell volumes, as the normalisation of g does; with ``number_density_per_A3`` the one g was
    normalised with, (N_A N_B - N_AB) / (N_A V) (so (N - 1) / V for a selection against itself), it returns
    the pair count per A atom exactly.
    """
    r_A = np.asarray(r_A)
    half_width = 0.5 * (r_A[1] - r_A[0])
    inside = r_A <= r_cut_A
    shells = 4.0 / 3.0 * np.pi * ((r_A[inside] + half_width) ** 3 - (r_A[inside] - half_width) ** 3)
    return float(number_density_per_A3 * (np.asarray(g)[inside] * shells).sum())


def plot_rdf(r_A: np.ndarray, g: np.ndarray, path: Path | str, label: str = 'g(r)') -> Path:
    figure, axes = new_axes('r / Å', 'g(r)')
    axes.plot(r_A, g, label=label)
    axes.axhline(1.0, color='0.6', lw=0.8, ls='--')
    axes.legend(frameon=False)
    return save(figure, path)
