"""The three ensembles on ASE's integrators, and their complete dynamical state for checkpoints.

* NVE: velocity Verlet (``ase.md.verlet.VelocityVerlet``).
* NVT: Nosé-Hoover chain (``ase.md.nose_hoover_chain.NoseHooverChainNVT``; Martyna, Klein, Tuckerman,
  J. Chem. Phys. 97, 2635 (1992)), fourth-order Suzuki-Yoshida factorisation of the chain.
* NPT: Martyna-Tobias-Klein (``IsotropicMTKNPT`` for ``cell_fluctuations='isotropic'``, ``MTKNPT`` for
  ``'full'``; J. Chem. Phys. 101, 4177 (1994)). MTK is the Parrinello-Rahman extended-cell barostat with the
  corrections that make the NPT ensemble exact, and it has a conserved quantity (``get_conserved_energy``);
  ASE's older ``ase.md.npt.NPT`` (Melchionna) has neither, so it is not offered.

The checkpoint state reads and writes the integrators' private attributes (ASE 3.29): the bit-for-bit
restart test in ``tests/core/md/test_runner.py`` fails if a future ASE renames them.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms, units
from ase.md.md import MolecularDynamics
from ase.md.nose_hoover_chain import MTKNPT, IsotropicMTKNPT, NoseHooverChainNVT
from ase.md.verlet import VelocityVerlet

from .settings import MDSettings


def build_integrator(settings: MDSettings, atoms: Atoms) -> MolecularDynamics:
    """The ASE integrator for ``settings.ensemble`` acting on ``atoms`` (which carries its calculator)."""
    timestep = settings.timestep_fs * units.fs
    if settings.ensemble == 'nve':
        return VelocityVerlet(atoms, timestep=timestep)
    thermostat = {'temperature_K': settings.temperature_K, 'tdamp': settings.thermostat_tau_fs * units.fs,
                  'tchain': settings.thermostat_chain}
    if settings.ensemble == 'nvt':
        return NoseHooverChainNVT(atoms, timestep=timestep, **thermostat)
    if not atoms.pbc.all():
        raise ValueError('NPT needs a cell periodic in all three directions; the structure has pbc='
                         f'{atoms.pbc.tolist()}.')
    integrator = IsotropicMTKNPT if settings.cell_fluctuations == 'isotropic' else MTKNPT
    return integrator(atoms, timestep=timestep, pressure_au=settings.pressure_bar * units.bar,
                      pdamp=settings.barostat_tau_fs * units.fs, pchain=settings.barostat_chain, **thermostat)


def get_integrator_state(integrator: MolecularDynamics) -> dict[str, np.ndarray]:
    """Every variable the next step depends on besides the calculator: particles, thermostat, barostat, cell."""
    state = {'positions': integrator.atoms.get_positions(), 'momenta': integrator.atoms.get_momenta(),
             'cell': integrator.atoms.cell.array.copy()}
    if isinstance(integrator, NoseHooverChainNVT | IsotropicMTKNPT | MTKNPT):
        state.update(positions=integrator._q.copy(), momenta=integrator._p.copy(),
                     thermostat_eta=integrator._thermostat._eta.copy(),
                     thermostat_p_eta=integrator._thermostat._p_eta.copy())
    if isinstance(integrator, IsotropicMTKNPT | MTKNPT):
        state.update(barostat_xi=integrator._barostat._xi.copy(), barostat_p_xi=integrator._barostat._p_xi.copy())
    if isinstance(integrator, IsotropicMTKNPT):
        state.update(reference_cell=integrator._cell0.copy(), reference_volume=np.float64(integrator._volume0),
                     log_volume_strain=np.float64(integrator._eps), volume_momentum=np.float64(integrator._p_eps))
    if isinstance(integrator, MTKNPT):
        state.update(cell=integrator._h.copy(), cell_momentum=integrator._p_g.copy())
    return state


def set_integrator_state(integrator: MolecularDynamics, state: dict[str, np.ndarray]) -> None:
    """Restore what :func:`get_integrator_state` returned, so the next step is the one the saved run made."""
    integrator.atoms.set_cell(state['cell'], scale_atoms=False)
    integrator.atoms.set_positions(state['positions'])
    integrator.atoms.set_momenta(state['momenta'])
    if isinstance(integrator, NoseHooverChainNVT | IsotropicMTKNPT | MTKNPT):
        integrator._q = np.array(state['positions'], dtype=np.float64)
        integrator._p = np.array(state['momenta'], dtype=np.float64)
        integrator._thermostat._eta = np.array(state['thermostat_eta'], dtype=np.float64)
        integrator._thermostat._p_eta = np.array(state['thermostat_p_eta'], dtype=np.float64)
    if isinstance(integrator, IsotropicMTKNPT | MTKNPT):
        integrator._barostat._xi = np.array(state['barostat_xi'], dtype=np.float64)
        integrator._barostat._p_xi = np.array(state['barostat_p_xi'], dtype=np.float64)
    if isinstance(integrator, IsotropicMTKNPT):
        integrator._cell0 = np.array(state['reference_cell'], dtype=np.float64)
        integrator._volume0 = float(state['reference_volume'])
        integrator._eps = float(state['log_volume_strain'])
        integrator._p_eps = float(state['volume_momentum'])
    if isinstance(integrator, MTKNPT):
        integrator._h = np.array(state['cell'], dtype=np.float64)
        integrator._p_g = np.array(state['cell_momentum'], dtype=np.float64)


def conserved_energy(integrator: MolecularDynamics) -> float:
    """The integrator's conserved quantity in eV: total energy for NVE, the extended energy otherwise.

    The terms of ASE's ``get_conserved_energy``, without its ``force_consistent=True`` request, which fails
    for calculators (such as most machine-learned ones) that do not implement ``free_energy``.
    """
    atoms = integrator.atoms
    energy = atoms.get_potential_energy() + atoms.get_kinetic_energy()
    if isinstance(integrator, NoseHooverChainNVT | IsotropicMTKNPT | MTKNPT):
        energy += integrator._thermostat.get_thermostat_energy()
    if isinstance(integrator, IsotropicMTKNPT):
        energy += (integrator._barostat.get_barostat_energy() + integrator._p_eps**2 / (2 * integrator._barostat.W)
                   + integrator._pressure_au * integrator._get_volume())
    if isinstance(integrator, MTKNPT):
        energy += (integrator._barostat.get_barostat_energy() + integrator._get_cell_kinetic_energy()
                   + integrator._pressure_au * integrator._get_volume())
    return float(energy)
