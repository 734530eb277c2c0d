"""Normal stress by strain differences of the energy, for calculators without a virial (OpenMM's OPLS-AA baseline).

Why not ASE's ``FiniteDifferenceCalculator``: its shear strains tilt the first cell vector off x, which OpenMM
refuses. Isotropic NPT needs only the pressure, the trace of the stress, so the normal components suffice;
the shear components are reported as zero, so it must not drive fully flexible cells
(``MDSettings.cell_fluctuations='full'``; the ``md`` job refuses that combination).
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes


class NormalStressCalculator(Calculator):
    """Energy and forces from ``calculator``; stress s_aa = (E(+eps) - E(-eps)) / (2 eps V) per axis, shear 0.

    Homogeneous strain of the cell with the atoms scaled along (the atomic virial, as the barostat expects).
    Six extra energy evaluations per stress.
    """

    implemented_properties = ('energy', 'free_energy', 'forces', 'stress')

    def __init__(self, calculator: Calculator, *, strain: float = 1e-5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.calculator = calculator
        self.strain = strain

    def calculate(self, atoms: Atoms | None = None, properties=('energy',), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        work = self.atoms.copy()
        work.calc = self.calculator
        energy = work.get_potential_energy()
        self.results = {'energy': energy, 'free_energy': energy, 'forces': work.get_forces().copy()}
        if 'stress' in properties:
            self.results['stress'] = self._normal_stress(work)

    def _normal_stress(self, work: Atoms) -> np.ndarray:
        cell = work.cell.array.copy()
        positions = work.positions.copy()
        volume = work.get_volume()
        stress = np.zeros(6)  # Voigt xx, yy, zz, yz, xz, xy; eV/Å³
        for axis in range(3):
            energies = []
            for sign in (1.0, -1.0):
                deformation = np.eye(3)
                deformation[axis, axis] += sign * self.strain
                work.set_cell(cell @ deformation, scale_atoms=False)
                work.set_positions(positions @ deformation)
                energies.append(work.get_potential_energy())
            stress[axis] = (energies[0] - energies[1]) / (2.0 * self.strain * volume)
        work.set_cell(cell, scale_atoms=False)
        work.set_positions(positions)
        return stress
