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

from ._plot import new_axes, save


def _half_min_width(cell: np.ndarray) -> float:
    volume = abs(np.linalg.det(cell))
    widths = [volume / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3])) for k in range(3)]
    return 0.5 * min(widths)


def radial_distribution_function(positions: np.ndarray, cells: np.ndarray, selection_a: np.ndarray,
                                 selection_b: np.ndarray, *, r_max_A: float, n_bins: int = 200,
                                 molecule_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Bin centres ``(n_bins,)`` in Å and g(r) ``(n_bins,)`` over frames ``(n_frames, n_atoms, 3)``.

    Selections are atom indices; ``molecule_ids`` (n_atoms,), if given, excludes intramolecular pairs.
    """
    positions = np.asarray(positions, dtype=np.float64)
    cells = np.asarray(cells, dtype=np.float64)
    selection_a, selection_b = np.asarray(selection_a), np.asarray(selection_b)
    in_a = np.zeros(positions.shape[1], dtype=bool)
    in_b = np.zeros(positions.shape[1], dtype=bool)
    in_a[selection_a], in_b[selection_b] = True, True
    n_common = int((in_a & in_b).sum())
    edges = np.linspace(0.0, r_max_A, n_bins + 1)
    shell_volumes = 4.0 / 3.0 * np.pi * np.diff(edges**3)  # (n_bins,)
    neighbours = NeighborList(cutoff=r_max_A, full_list=True)
    counts = np.zeros(n_bins)
    ideal = np.zeros(n_bins)
    for frame, cell in zip(positions, cells, strict=True):
        if r_max_A > _half_min_width(cell) + 1e-9:
            raise ValueError(f'r_max_A={r_max_A} exceeds half the smallest cell width ({_half_min_width(cell):.3f} Å).')
        first, second, distances = neighbours.compute(frame, cell, True, quantities='ijd')  # (pairs,) each
        keep = in_a[first] & in_b[second]
        if molecule_ids is not None:
            keep &= molecule_ids[first] != molecule_ids[second]
        counts += np.histogram(distances[keep], bins=edges)[0]
        volume = abs(np.linalg.det(cell))
        ideal += (len(selection_a) * len(selection_b) - n_common) / volume * shell_volumes
    return 0.5 * (edges[1:] + edges[:-1]), counts / ideal


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
