"""Pair and torsion scans (the paper's Figs. 1, 9, 10): the geometries, and the plot of the energy curves.

* Pair scan: two molecules taken from a frame (whole, the second at its minimum image of the first); the second is
  translated rigidly along the line joining their centres of mass, from 0.75x to 3x the initial centre distance.
  Curves are relative to the farthest point (an interaction energy).
* Torsion scan: the OCCO dihedral of a molecule set from -180 to 180 degrees in steps (5 degrees in the paper) by
  rotating the atoms on one side of the C-C bond rigidly (ASE ``set_dihedral`` with the side as mask). A rigid scan,
  not a constrained relaxation: every engine sees the same geometries, so the curves compare the energy functions
  themselves; barriers are higher than relaxed ones. Curves are relative to their minimum.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from ase import Atoms

from ._plot import new_axes, save

PAIR_SCAN_RANGE = (0.75, 3.0)


def _centre_of_mass(atoms: Atoms, members: np.ndarray) -> np.ndarray:
    masses = atoms.get_masses()[members]
    return masses @ atoms.positions[members] / masses.sum()


def pair_scan_geometries(atoms: Atoms, molecule_ids: np.ndarray, first: int, second: int, n_points: int,
                         ) -> tuple[np.ndarray, list[Atoms]]:
    """Centre distances ``(n_points,)`` in Å and the open two-molecule clusters of a pair scan.

    ``atoms`` holds whole molecules (e.g. an unwrapped MD frame); in a periodic cell the second molecule is first
    moved to the image of its centre nearest to the first molecule's centre.
    """
    if first == second:
        raise ValueError(f'pair scan: the two molecules must differ, got {first} twice.')
    if n_points < 2:
        raise ValueError(f'pair scan: n_points must be at least 2, got {n_points}.')
    molecule_ids = np.asarray(molecule_ids)
    members = [np.flatnonzero(molecule_ids == index) for index in (first, second)]
    for index, member in zip((first, second), members, strict=True):
        if len(member) == 0:
            raise ValueError(f'pair scan: there is no molecule {index} (molecules 0..{molecule_ids.max()}).')
    positions = atoms.positions.copy()
    centre_a, centre_b = (_centre_of_mass(atoms, member) for member in members)
    separation = centre_b - centre_a  # (3,)
    if atoms.pbc.any():
        fractional = np.linalg.solve(atoms.cell.array.T, separation)
        shift = (np.round(fractional) * atoms.pbc) @ atoms.cell.array  # (3,)
        positions[members[1]] -= shift
        separation = separation - shift
    distance = float(np.linalg.norm(separation))
    direction = separation / distance
    factors = np.linspace(*PAIR_SCAN_RANGE, n_points)
    keep = np.concatenate(members)
    images = []
    for factor in factors:
        moved = positions.copy()
        moved[members[1]] += (factor - 1.0) * distance * direction
        image = Atoms(numbers=atoms.numbers[keep], positions=moved[keep], pbc=False)
        image.arrays['molecule'] = np.repeat(np.arange(2, dtype=np.int32), [len(m) for m in members])
        image.info.update(kind='scan', source=f'pair scan molecules {first},{second} factor={factor:.6f}')
        images.append(image)
    return factors * distance, images


def torsion_scan_geometries(molecule: Atoms, quadruplet: Sequence[int], angles_deg: np.ndarray,
                            bonds: np.ndarray) -> list[Atoms]:
    """Copies of ``molecule`` with the dihedral ``quadruplet`` (a, b, c, d) set to each angle, rotating rigidly the
    atoms bonded on the c side of the b-c bond (found from ``bonds`` (n_bonds, 2) with b-c cut)."""
    a, b, c, d = (int(index) for index in quadruplet)
    side = _side(len(molecule), bonds, cut=(b, c), start=c)
    if b in side:
        raise ValueError(f'torsion scan: atoms {b} and {c} are in a ring; a rigid rotation is undefined.')
    mask = np.zeros(len(molecule), dtype=bool)
    mask[list(side)] = True
    images = []
    for angle in np.asarray(angles_deg, dtype=float):
        image = molecule.copy()
        image.set_dihedral(a, b, c, d, angle, mask=mask)
        image.info.update(kind='scan', source=f'torsion scan {a}-{b}-{c}-{d} angle={angle:.3f}')
        image.arrays['molecule'] = np.zeros(len(image), dtype=np.int32)
        images.append(image)
    return images


def _side(n_atoms: int, bonds: np.ndarray, cut: tuple[int, int], start: int) -> set[int]:
    neighbours: list[set[int]] = [set() for _ in range(n_atoms)]
    for i, j in np.asarray(bonds).reshape(-1, 2).tolist():
        if {i, j} != set(cut):
            neighbours[i].add(j)
            neighbours[j].add(i)
    seen, todo = {start}, [start]
    while todo:
        for neighbour in neighbours[todo.pop()] - seen:
            seen.add(neighbour)
            todo.append(neighbour)
    return seen


def relative_curve(energies_eV: np.ndarray, reference: str) -> np.ndarray:
    """Energies relative to the ``'last'`` point (pair scans) or the ``'minimum'`` (torsion scans)."""
    energies = np.asarray(energies_eV, dtype=np.float64)
    if reference == 'last':
        return energies - energies[-1]
    if reference == 'minimum':
        return energies - np.nanmin(energies)
    raise ValueError(f"reference must be 'last' or 'minimum', got {reference!r}.")


def plot_scan(x: np.ndarray, curves: Mapping[str, np.ndarray], path: Path | str, *, xlabel: str,
              title: str | None = None, ymax_kcal_per_mol: float | None = None) -> Path:
    """One curve per engine (label → relative energies in eV), in kcal/mol as the paper's figures; the energy axis
    optionally cut at ``ymax_kcal_per_mol`` (the repulsive wall of a pair scan hides the well otherwise)."""
    from ..units import EV_TO_KCAL_PER_MOL

    figure, axes = new_axes(xlabel, 'relative energy (kcal mol$^{-1}$)', title)
    for (label, energies), style in zip(curves.items(), ('k-', 'b--', 'r-.', 'g:'), strict=False):
        axes.plot(x, np.asarray(energies) * EV_TO_KCAL_PER_MOL, style, marker='o', markersize=3, label=label)
    if ymax_kcal_per_mol is not None:
        lowest = min(float(np.min(energies)) for energies in curves.values()) * EV_TO_KCAL_PER_MOL
        axes.set_ylim(min(lowest, 0.0) * 1.3 - 0.5, ymax_kcal_per_mol)
    axes.legend()
    return save(figure, path)
