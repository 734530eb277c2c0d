"""Stability guards: cheap checks that stop a run that is going wrong before it writes nonsense.

Non-finite numbers and the temperature are checked every step (O(N), free next to a force call); the closest
pair distance needs a neighbour list (``vesin``, O(N)) and is checked every ``guard_interval`` steps.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from vesin import NeighborList

from .status import MDStatus

# vesin's cell list has cells of the cutoff's size: a 0.5 Å cutoff makes ~10^5 cells in a 25 Å box and costs
# 30 ms; searching 2 Å and filtering costs 2.4 ms (1 500 atoms) and 10 ms (8 000) on the benchmark machine.
CONTACT_SEARCH_RADIUS_A = 2.0


def check_finite(atoms: Atoms, energy: float | None = None) -> tuple[MDStatus, str] | None:
    """NaN or infinity in positions, momenta or the potential energy (``energy``, else the calculator's)."""
    energy = atoms.get_potential_energy() if energy is None else energy
    if not (np.isfinite(atoms.positions).all() and np.isfinite(atoms.get_momenta()).all() and np.isfinite(energy)):
        return MDStatus.UNSTABLE_NOT_FINITE, f'non-finite positions, momenta or energy (energy {energy} eV)'
    return None


def check_temperature(atoms: Atoms, limit_K: float) -> tuple[MDStatus, str] | None:
    """Kinetic temperature above ``limit_K``."""
    temperature = atoms.get_temperature()
    if temperature > limit_K:
        return MDStatus.UNSTABLE_TEMPERATURE, f'temperature {temperature:.1f} K exceeds the limit {limit_K:.1f} K'
    return None


def closest_pair(atoms: Atoms, cutoff_A: float) -> tuple[float, int, int] | None:
    """Shortest distance below ``cutoff_A`` (across periodic boundaries) and its atoms, or None if there is none."""
    periodic = bool(atoms.pbc.all())
    if atoms.pbc.any() and not periodic:
        raise ValueError(f'Mixed periodicity {atoms.pbc.tolist()} is not supported by the contact guard.')
    box = atoms.cell.array if periodic else np.zeros((3, 3))
    first, second, distances = NeighborList(cutoff=max(cutoff_A, CONTACT_SEARCH_RADIUS_A), full_list=False).compute(
        atoms.positions, box, periodic, quantities='ijd')
    close = distances < cutoff_A
    first, second, distances = first[close], second[close], distances[close]
    if len(distances) == 0:
        return None
    closest = int(np.argmin(distances))
    return float(distances[closest]), int(first[closest]), int(second[closest])


def check_contacts(atoms: Atoms, min_distance_A: float) -> tuple[MDStatus, str] | None:
    """Two atoms closer than ``min_distance_A``."""
    pair = closest_pair(atoms, min_distance_A)
    if pair is None:
        return None
    distance, first, second = pair
    return (MDStatus.UNSTABLE_CLOSE_CONTACT,
            f'atoms {first} and {second} are {distance:.3f} Å apart, closer than {min_distance_A} Å')
