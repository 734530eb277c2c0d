"""A vectorised Lennard-Jones calculator for the MD tests: ASE's ``LennardJones(smooth=True)`` term for term,
on a ``vesin`` half neighbour list instead of a Python loop over atoms (about 10x faster for 100 atoms).

``test_lennard_jones_matches_ase`` checks energy, forces and stress against ASE's own calculator.
"""

from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.lj import cutoff_function, d_cutoff_function
from vesin import NeighborList

ARGON = {'sigma': 3.4, 'epsilon': 0.0104, 'rc': 8.5}  # Å, eV, Å; epsilon / k_B = 120.7 K


class VectorLennardJones(Calculator):
    """Smooth-cutoff LJ: u(r) = 4 eps [(s/r)^12 - (s/r)^6] f(r^2), f from 1 at ro = 0.66 rc to 0 at rc."""

    implemented_properties = ['energy', 'free_energy', 'forces', 'stress']

    def __init__(self, sigma: float, epsilon: float, rc: float) -> None:
        super().__init__()
        self.sigma, self.epsilon, self.rc, self.ro = sigma, epsilon, rc, 0.66 * rc
        self._neighbors = NeighborList(cutoff=rc, full_list=False)

    def calculate(self, atoms=None, properties=None, system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        first, second, vectors = self._neighbors.compute(
            self.atoms.positions, self.atoms.cell.array, True, quantities='ijD')  # (pairs,), (pairs,), (pairs, 3)
        r2 = (vectors**2).sum(axis=1)  # (pairs,)
        c6 = (self.sigma**2 / r2) ** 3
        c12 = c6**2
        pair_energy = 4 * self.epsilon * (c12 - c6)
        du = -24 * self.epsilon * (2 * c12 - c6) / r2
        cut = cutoff_function(r2, self.rc**2, self.ro**2)
        du = cut * du + 2 * d_cutoff_function(r2, self.rc**2, self.ro**2) * pair_energy  # (pairs,)
        pair_forces = du[:, None] * vectors  # (pairs, 3) force on i, pointing towards j
        forces = np.zeros((len(self.atoms), 3))
        np.add.at(forces, first, pair_forces)
        np.add.at(forces, second, -pair_forces)
        virial = pair_forces.T @ vectors  # (3, 3)
        stress = virial / self.atoms.get_volume()
        self.results['energy'] = self.results['free_energy'] = float((pair_energy * cut).sum())
        self.results['forces'] = forces
        self.results['stress'] = stress.ravel()[[0, 4, 8, 5, 2, 1]]
