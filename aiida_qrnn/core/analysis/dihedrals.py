"""Dihedral angles (such as the backbone OCCO torsion) and their distribution.

For atoms a-b-c-d with b1 = b - a, b2 = c - b, b3 = d - c (IUPAC sign convention, Blondel and Karplus,
J. Comput. Chem. 17, 1132 (1996)):

    phi = atan2( |b2| b1 . (b2 x b3),  (b1 x b2) . (b2 x b3) )   in (-180, 180] degrees

cis = 0, trans = 180. Molecules must be whole (unwrapped positions).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms

from ..topology import find_bonds
from ._plot import new_axes, save
from .base import AnalysisBase
from .frames import FrameReader


def dihedral_angles(positions: np.ndarray, quadruplets: np.ndarray) -> np.ndarray:
    """Angles in degrees ``(..., n_dihedrals)`` for positions ``(..., n_atoms, 3)`` and indices ``(n_dihedrals, 4)``."""
    positions = np.asarray(positions, dtype=np.float64)
    quadruplets = np.asarray(quadruplets, dtype=np.int64).reshape(-1, 4)
    a, b, c, d = (positions[..., quadruplets[:, k], :] for k in range(4))  # (..., K, 3) each
    b1, b2, b3 = b - a, c - b, d - c
    n1, n2 = np.cross(b1, b2), np.cross(b2, b3)
    y = np.linalg.norm(b2, axis=-1) * (b1 * n2).sum(axis=-1)
    x = (n1 * n2).sum(axis=-1)
    return np.degrees(np.arctan2(y, x))


def find_dihedrals(atoms: Atoms, pattern: tuple[str, str, str, str] = ('O', 'C', 'C', 'O')) -> np.ndarray:
    """Bonded quadruplets ``(n, 4)`` whose elements match ``pattern`` (in either direction, each listed once).

    Bonds: :func:`aiida_qrnn.core.topology.find_bonds` (the package's one bond criterion).
    """
    neighbours: list[set[int]] = [set() for _ in range(len(atoms))]
    for i, j in find_bonds(atoms).tolist():
        neighbours[i].add(j)
        neighbours[j].add(i)
    symbols = atoms.get_chemical_symbols()
    found = set()
    for b in range(len(atoms)):
        for c in neighbours[b]:
            for a in neighbours[b] - {c}:
                for d in neighbours[c] - {b, a}:
                    quadruplet = (a, b, c, d)
                    if tuple(symbols[k] for k in quadruplet) == tuple(pattern):
                        found.add(min(quadruplet, quadruplet[::-1]))
    return np.array(sorted(found), dtype=np.int64).reshape(-1, 4)


def dihedral_distribution(angles_deg: np.ndarray, *, bin_width_deg: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """Bin centres and probability density (per degree) of angles over (-180, 180]."""
    edges = np.arange(-180.0, 180.0 + bin_width_deg / 2, bin_width_deg)
    density, _ = np.histogram(np.ravel(angles_deg), bins=edges, density=True)
    return 0.5 * (edges[1:] + edges[:-1]), density


class DihedralDistribution(AnalysisBase):
    """Angles of every bonded quadruplet matching ``pattern`` (bonds of the first selected frame) and their
    distribution over (-180, 180] in bins of ``bin_width_deg``.

    Results: ``quadruplets`` ``(n_dihedrals, 4)``, ``angles_deg`` ``(n_frames, n_dihedrals)``, ``angle_deg`` (bin
    centres) and ``probability_density_per_deg``.
    """

    def __init__(self, trajectory: FrameReader, *, pattern: tuple[str, str, str, str] = ('O', 'C', 'C', 'O'),
                 bin_width_deg: float = 5.0) -> None:
        super().__init__(trajectory)
        if len(pattern) != 4:
            raise ValueError(f'pattern must name four elements, got {pattern!r}.')
        if not bin_width_deg > 0:
            raise ValueError(f'bin_width_deg must be positive, got {bin_width_deg!r}.')
        self.pattern, self.bin_width_deg = tuple(pattern), bin_width_deg

    def _prepare(self) -> None:
        self.results.quadruplets = find_dihedrals(self._trajectory.atoms(int(self.frames[0])), self.pattern)
        self.results.angles_deg = np.zeros((self.n_frames, len(self.results.quadruplets)))

    def _single_frame(self) -> None:
        self.results.angles_deg[self._frame_index] = dihedral_angles(self._frame.positions, self.results.quadruplets)

    def _conclude(self) -> None:
        centres, density = dihedral_distribution(self.results.angles_deg, bin_width_deg=self.bin_width_deg)
        self.results.angle_deg, self.results.probability_density_per_deg = centres, density


def plot_dihedral_distribution(angles_deg: np.ndarray, path: Path | str, *, label: str = 'OCCO',
                               bin_width_deg: float = 5.0) -> Path:
    figure, axes = new_axes('dihedral / degree', 'probability density / degree$^{-1}$')
    centres, density = dihedral_distribution(angles_deg, bin_width_deg=bin_width_deg)
    axes.step(centres, density, where='mid', label=label)
    axes.set_xlim(-180, 180)
    axes.set_xticks(np.arange(-180, 181, 60))
    axes.legend(frameon=False)
    return save(figure, path)
