"""The OpenMM ``System`` of OPLS-AA HO-(CH2CH2O)n-H, periodic (PME) or open, and an ASE calculator on it.

OPLS combines Lennard-Jones parameters geometrically, which OpenMM's ``NonbondedForce`` (Lorentz-Berthelot)
cannot, so the terms are split by force group: Coulomb with PME and 0.5-scaled 1-4 exceptions in a
``NonbondedForce`` whose LJ is switched off, LJ in a ``CustomNonbondedForce`` (geometric rules, cutoff with the
long-range dispersion correction, 1-2/1-3/1-4 excluded) and the 0.5-scaled 1-4 LJ in a ``CustomBondForce``. This
is the usual OpenMM recipe for OPLS.
"""

from __future__ import annotations

import typing as t

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from aiida_qrnn.core.forcefield.parameters import COULOMB_14_SCALE, LJ_14_SCALE
from aiida_qrnn.core.forcefield.topology import OplsTopology, build_topology
from aiida_qrnn.core.topology import find_bonds
from aiida_qrnn.core.units import KJ_PER_MOL_TO_EV

if t.TYPE_CHECKING:
    import openmm

__all__ = ('DEFAULT_CUTOFF_NM', 'FORCE_GROUPS', 'OplsAaCalculator', 'build_system')

#: Force group of each term, so energies can be decomposed with ``getState(groups={group})``.
FORCE_GROUPS = {'bonds': 0, 'angles': 1, 'torsions': 2, 'coulomb': 3, 'lennard_jones': 4, 'lennard_jones_14': 5}
DEFAULT_CUTOFF_NM = 1.0
#: PME accuracy (OpenMM's relative force error estimate); OpenMM's default.
EWALD_TOLERANCE = 5e-4
_LJ = '4*epsilon*((sigma/r)^6*((sigma/r)^6-1))'
ANGSTROM_PER_NM = 10.0


def build_system(
    atoms: Atoms, bonds: np.ndarray | None = None, *, hydroxyl: str = 'diol', cutoff_nm: float = DEFAULT_CUTOFF_NM,
) -> tuple[openmm.System, OplsTopology]:
    """OPLS-AA ``System`` for ``atoms``; periodic with PME when ``atoms.pbc`` is all true, open otherwise.

    ``bonds`` default to :func:`~aiida_qrnn.core.topology.find_bonds`. Raises
    :class:`~aiida_qrnn.core.forcefield.topology.UnsupportedChemistryError` for anything but HO-(CH2CH2O)n-H.
    """
    import openmm

    if atoms.pbc.any() and not atoms.pbc.all():
        raise ValueError(f'periodic boundaries must be on in all three directions or none, got pbc={atoms.pbc}.')
    periodic = bool(atoms.pbc.all())
    bonds = find_bonds(atoms) if bonds is None else np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    topology = build_topology(atoms.numbers, bonds, hydroxyl=hydroxyl)
    if periodic:
        half_box_nm = 0.5 * np.min(atoms.cell.cellpar()[:3]) / ANGSTROM_PER_NM
        if cutoff_nm >= half_box_nm:
            raise ValueError(
                f'cutoff_nm {cutoff_nm} must be below half the shortest box edge ({half_box_nm:.3f} nm); '
                f'use a larger cell or a shorter cutoff.'
            )

    system = openmm.System()
    for mass in topology.masses:
        system.addParticle(mass)
    if periodic:
        system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*row) for row in atoms.cell.array / ANGSTROM_PER_NM))

    bond_force = openmm.HarmonicBondForce()
    for (i, j), (length, k) in zip(topology.bonds, topology.bond_parameters, strict=True):
        bond_force.addBond(int(i), int(j), length, k)
    angle_force = openmm.HarmonicAngleForce()
    for (i, j, k), (theta, k_angle) in zip(topology.angles, topology.angle_parameters, strict=True):
        angle_force.addAngle(int(i), int(j), int(k), theta, k_angle)
    torsion_force = openmm.RBTorsionForce()
    for (i, j, k, m), c in zip(topology.torsions, topology.torsion_parameters, strict=True):
        torsion_force.addTorsion(int(i), int(j), int(k), int(m), *c)

    charges, sigmas, epsilons = topology.charges, topology.sigmas, topology.epsilons
    coulomb = openmm.NonbondedForce()
    coulomb.setNonbondedMethod(openmm.NonbondedForce.PME if periodic else openmm.NonbondedForce.NoCutoff)
    coulomb.setEwaldErrorTolerance(EWALD_TOLERANCE)
    lennard_jones = openmm.CustomNonbondedForce(f'{_LJ}; sigma=sqrt(sigma1*sigma2); epsilon=sqrt(epsilon1*epsilon2)')
    lennard_jones.addPerParticleParameter('sigma')
    lennard_jones.addPerParticleParameter('epsilon')
    if periodic:
        coulomb.setCutoffDistance(cutoff_nm)
        lennard_jones.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffPeriodic)
        lennard_jones.setCutoffDistance(cutoff_nm)
        lennard_jones.setUseLongRangeCorrection(True)
    else:
        lennard_jones.setNonbondedMethod(openmm.CustomNonbondedForce.NoCutoff)
    for charge, sigma, epsilon in zip(charges, sigmas, epsilons, strict=True):
        coulomb.addParticle(charge, 1.0, 0.0)
        lennard_jones.addParticle([sigma, epsilon])

    excluded = {tuple(sorted(map(int, pair))) for pair in topology.bonds}
    excluded |= {tuple(sorted((int(i), int(k)))) for i, _, k in topology.angles}
    pairs_14 = [tuple(map(int, pair)) for pair in topology.pairs_14]
    lennard_jones_14 = openmm.CustomBondForce(_LJ)
    lennard_jones_14.addPerBondParameter('sigma')
    lennard_jones_14.addPerBondParameter('epsilon')
    for i, j in sorted(excluded):
        coulomb.addException(i, j, 0.0, 1.0, 0.0)
        lennard_jones.addExclusion(i, j)
    for i, j in pairs_14:
        coulomb.addException(i, j, COULOMB_14_SCALE * charges[i] * charges[j], 1.0, 0.0)
        lennard_jones.addExclusion(i, j)
        sigma_14, epsilon_14 = np.sqrt(sigmas[i] * sigmas[j]), LJ_14_SCALE * np.sqrt(epsilons[i] * epsilons[j])
        lennard_jones_14.addBond(i, j, [sigma_14, epsilon_14])

    forces = {
        'bonds': bond_force, 'angles': angle_force, 'torsions': torsion_force, 'coulomb': coulomb,
        'lennard_jones': lennard_jones, 'lennard_jones_14': lennard_jones_14,
    }
    for name, force in forces.items():
        force.setForceGroup(FORCE_GROUPS[name])
        if periodic and hasattr(force, 'setUsesPeriodicBoundaryConditions'):
            # Bonded terms through the minimum image: molecules stay correct when a chain crosses the box edge.
            force.setUsesPeriodicBoundaryConditions(True)
        system.addForce(force)
    return system, topology


class OplsAaCalculator(Calculator):
    """ASE calculator for OPLS-AA HO-(CH2CH2O)n-H (open clusters or periodic cells) through OpenMM's CPU platform.

    Results: ``energy`` (eV, scalar), ``forces`` (eV/Å, ``(n_atoms, 3)``). The bond graph is found once from the
    first geometry (or given as ``bonds``) and kept, so a stretched bond stays a bond. ``platform='Reference'``
    evaluates in double precision (slow, exact); ``'CPU'`` in OpenMM's mixed single precision.
    """

    implemented_properties = ('energy', 'forces')

    def __init__(
        self, bonds: np.ndarray | None = None, *, hydroxyl: str = 'diol', cutoff_nm: float = DEFAULT_CUTOFF_NM,
        threads: int = 1, platform: str = 'CPU', **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.bonds = bonds
        self.hydroxyl = hydroxyl
        self.cutoff_nm = cutoff_nm
        self.threads = threads
        self.platform = platform
        self._context = None

    def calculate(self, atoms: Atoms | None = None, properties=('energy',), system_changes=all_changes) -> None:
        import openmm

        super().calculate(atoms, properties, system_changes)
        if self._context is None or {'numbers', 'pbc'} & set(system_changes):
            if self.bonds is None:
                self.bonds = find_bonds(self.atoms)
            system, _ = build_system(self.atoms, self.bonds, hydroxyl=self.hydroxyl, cutoff_nm=self.cutoff_nm)
            platform = openmm.Platform.getPlatformByName(self.platform)
            properties = {'Threads': str(self.threads)} if self.platform == 'CPU' else {}
            self._context = openmm.Context(system, openmm.VerletIntegrator(1.0), platform, properties)
        if self.atoms.pbc.all():
            self._context.setPeriodicBoxVectors(*(openmm.Vec3(*row) for row in self.atoms.cell.array / ANGSTROM_PER_NM))
        self._context.setPositions(self.atoms.positions / ANGSTROM_PER_NM)
        state = self._context.getState(getEnergy=True, getForces=True)
        energy = state.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)
        forces = state.getForces(asNumpy=True).value_in_unit(openmm.unit.kilojoule_per_mole / openmm.unit.nanometer)
        self.results['energy'] = energy * KJ_PER_MOL_TO_EV
        self.results['forces'] = np.asarray(forces) * KJ_PER_MOL_TO_EV / ANGSTROM_PER_NM  # (n_atoms, 3)
