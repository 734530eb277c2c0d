"""NormalStressCalculator: strain differences of the energy reproduce an analytic stress's normal components."""

from __future__ import annotations

import numpy as np
from ase.build import bulk
from ase.calculators.lj import LennardJones

from aiida_qrnn.core.md.numerical_stress import NormalStressCalculator


def test_normal_stress_matches_lennard_jones():
    atoms = bulk('Ar', 'fcc', a=5.1, cubic=True).repeat((2, 2, 2))
    atoms.set_cell(atoms.cell.array @ np.diag([1.02, 0.99, 1.0]), scale_atoms=True)  # anisotropic stress
    atoms.rattle(0.05, seed=1)
    analytic = LennardJones(sigma=3.4, epsilon=0.0104, rc=8.0, smooth=True)
    atoms.calc = analytic
    reference = atoms.get_stress()
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    atoms.calc = NormalStressCalculator(LennardJones(sigma=3.4, epsilon=0.0104, rc=8.0, smooth=True), strain=1e-5)
    np.testing.assert_allclose(atoms.get_stress()[:3], reference[:3], rtol=1e-6, atol=1e-9)
    assert np.all(atoms.get_stress()[3:] == 0.0)
    assert atoms.get_potential_energy() == energy
    np.testing.assert_array_equal(atoms.get_forces(), forces)
