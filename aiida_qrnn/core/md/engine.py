"""A device-resident MD integrator in torch: NVE, Nosé-Hoover chain NVT and MTK NPT for R replicas at once.

The equations, the operator splitting and the conserved quantities are those of the ASE integrators that
:mod:`.integrators` wraps (ASE 3.29, ``ase/md/verlet.py`` and ``ase/md/nose_hoover_chain.py``), so the two
produce the same trajectory to float tolerance (``tests/core/md/test_engine.py``); the state dictionaries have
the same keys, so a checkpoint of one continues on the other. What differs is where the state lives: positions,
momenta, cells and the thermostat/barostat variables are float64 tensors on the force field's device, and R
independent systems (replicas, each with its own thermostat and barostat) advance together, their atoms in one
flat batch (``system_index``), their forces from one call of the force field.

Two departures from ASE's arithmetic, both exact in real numbers:

* inside a Nosé-Hoover chain half step the particle (or cell) momenta are only rescaled, so their kinetic term
  is computed once and the scale factors are multiplied up, instead of rescaling all momenta 6 times;
* the full-cell MTK step diagonalises the cell momentum once per half step instead of three times.

Units are ASE's inside (Å, eV, amu, ASE time); :class:`MDEngine` takes the timestep in fs.

References: Martyna, Klein, Tuckerman, J. Chem. Phys. 97, 2635 (1992) (NHC); Martyna, Tobias, Klein, J. Chem.
Phys. 101, 4177 (1994) (MTK); Yoshida, Phys. Lett. A 150, 262 (1990) (fourth-order factorisation).
"""

from __future__ import annotations

import math
import typing as t
from dataclasses import dataclass

import numpy as np
import torch
from ase import units

from .settings import MDSettings

__all__ = ('FOURTH_ORDER_COEFFICIENTS', 'ForceField', 'ForceResult', 'MDEngine', 'cell_volumes', 'initial_state',
           'segment_sum')

#: Suzuki-Yoshida fourth-order weights of the chain half step (ASE's ``FOURTH_ORDER_COEFFS``).
FOURTH_ORDER_COEFFICIENTS = (1 / (2 - 2 ** (1 / 3)), -(2 ** (1 / 3)) / (2 - 2 ** (1 / 3)), 1 / (2 - 2 ** (1 / 3)))


@dataclass
class ForceResult:
    """One force-field evaluation of all replicas, float64 on the engine's device."""

    energy: torch.Tensor  # (replicas,) eV
    forces: torch.Tensor  # (atoms, 3) eV/Å
    stress: torch.Tensor | None  # (replicas, 3, 3) eV/Å³, ASE sign, without the ideal-gas (kinetic) term
    charges: torch.Tensor | None = None  # (atoms,) e, models with charges only (logged per molecule)


class ForceField(t.Protocol):
    """What the engine needs from a potential: energies, forces and, when asked, the stress of all replicas."""

    def __call__(self, positions: torch.Tensor, cells: torch.Tensor, compute_stress: bool) -> ForceResult: ...

    def select(self, replicas: list[int]) -> ForceField:
        """The same force field for a subset of the replicas (in the order given)."""
        ...


def segment_sum(values: torch.Tensor, system_index: torch.Tensor, n_systems: int) -> torch.Tensor:
    """Per-replica sums of per-atom ``values`` (atoms,) -> (replicas,)."""
    return values.new_zeros(n_systems).index_add_(0, system_index, values)


def cell_volumes(cells: torch.Tensor) -> torch.Tensor:
    """|det h| of (replicas, 3, 3) cells as a triple product (elementwise; ``linalg.det`` is an LU per cell)."""
    return (torch.linalg.cross(cells[:, 0], cells[:, 1], dim=1) * cells[:, 2]).sum(1).abs()


def _exprel(x: torch.Tensor) -> torch.Tensor:
    """(e^x - 1) / x with its limit 1 at x = 0 (``scipy.special.exprel``)."""
    small = x.abs() < 1e-16
    return torch.where(small, torch.ones_like(x), torch.special.expm1(x) / torch.where(small, torch.ones_like(x), x))


def initial_state(settings: MDSettings, positions: np.ndarray, momenta: np.ndarray, cell: np.ndarray
                  ) -> dict[str, np.ndarray]:
    """The integrator state of a fresh run (thermostat and barostat at rest), with the keys
    :func:`~.integrators.get_integrator_state` uses for the same ensemble."""
    state = {'positions': np.array(positions, dtype=np.float64), 'momenta': np.array(momenta, dtype=np.float64),
             'cell': np.array(cell, dtype=np.float64)}
    if settings.ensemble in ('nvt', 'npt'):
        state.update(thermostat_eta=np.zeros(settings.thermostat_chain),
                     thermostat_p_eta=np.zeros(settings.thermostat_chain))
    if settings.ensemble == 'npt':
        state.update(barostat_xi=np.zeros(settings.barostat_chain), barostat_p_xi=np.zeros(settings.barostat_chain))
        if settings.cell_fluctuations == 'isotropic':
            state.update(reference_cell=state['cell'].copy(), reference_volume=np.float64(abs(np.linalg.det(cell))),
                         log_volume_strain=np.float64(0.0), volume_momentum=np.float64(0.0))
        else:
            state.update(cell_momentum=np.zeros((3, 3)))
    return state


class _Chain:
    """A Nosé-Hoover chain per replica acting on one kinetic term: the thermostat on the particles or the
    barostat's chain on the cell momentum (ASE's ``NoseHooverChainThermostat``, ``*MTKBarostat``).

    ``coordinates``, ``momenta``, ``masses``: (replicas, chain); ``dof_kT``: (replicas,) the target of the first
    element's kinetic term (degrees of freedom times k_B T).
    """

    def __init__(self, coordinates: torch.Tensor, momenta: torch.Tensor, masses: torch.Tensor,
                 dof_kT: torch.Tensor, kT: float) -> None:
        self.coordinates, self.momenta, self.masses, self.dof_kT, self.kT = coordinates, momenta, masses, dof_kT, kT

    def select(self, replicas: torch.Tensor) -> _Chain:
        return _Chain(self.coordinates[replicas], self.momenta[replicas], self.masses[replicas],
                      self.dof_kT[replicas], self.kT)

    def energy(self) -> torch.Tensor:
        """dof k_B T η_0 + k_B T Σ_{j>0} η_j + Σ p_η²/(2Q): (replicas,) eV."""
        return (self.dof_kT * self.coordinates[:, 0] + self.kT * self.coordinates[:, 1:].sum(1)
                + (0.5 * self.momenta**2 / self.masses).sum(1))

    def half_step(self, twice_kinetic: torch.Tensor, delta: float) -> torch.Tensor:
        """Integrate exp(i L_NHC delta) (one loop, fourth-order factorised) for a driven kinetic term
        ``twice_kinetic`` (replicas,) = Σ p²/m; returns the factor (replicas,) that scales the driven momenta.

        About 300 operations on (replicas,) arrays: on an accelerator they run in torch, where the variables live;
        on the CPU in numpy, or on Python floats for one replica (a torch call costs microseconds, a float
        operation a few tens of nanoseconds)."""
        coordinates, momenta = list(self.coordinates.T), list(self.momenta.T)
        masses = list(self.masses.T)
        if twice_kinetic.device.type != 'cpu':
            scale, coordinates, momenta = _chain_half_step(
                torch.exp, twice_kinetic, coordinates, momenta, masses, self.dof_kT, self.kT, delta)
            self.coordinates, self.momenta = torch.stack(coordinates, 1), torch.stack(momenta, 1)
            return scale
        if twice_kinetic.shape[0] == 1:
            floats = [[float(value[0]) for value in array] for array in (coordinates, momenta, masses)]
            scale, coordinates, momenta = _chain_half_step(
                _float_exp, float(twice_kinetic[0]), *floats, float(self.dof_kT[0]), self.kT, delta)
            self.coordinates = torch.tensor([coordinates], dtype=torch.float64)
            self.momenta = torch.tensor([momenta], dtype=torch.float64)
            return torch.tensor([scale], dtype=torch.float64)
        with np.errstate(over='ignore', invalid='ignore'):  # a diverging chain is reported by the guards
            scale, coordinates, momenta = _chain_half_step(
                np.exp, twice_kinetic.numpy(), [c.numpy() for c in coordinates], [m.numpy() for m in momenta],
                [m.numpy() for m in masses], self.dof_kT.numpy(), self.kT, delta)
        self.coordinates = torch.from_numpy(np.stack(coordinates, 1))
        self.momenta = torch.from_numpy(np.stack(momenta, 1))
        return torch.from_numpy(scale)


def _float_exp(x: float) -> float:
    """``math.exp`` that overflows to infinity, as numpy's and torch's do, instead of raising."""
    return math.inf if x >= 709.0 else math.exp(x)


def _chain_half_step(exp, twice_kinetic, coordinates: list, momenta: list, masses: list, dof_kT, kT: float,
                     delta: float) -> tuple:
    """The chain half step on per-element lists (element j of the chain: an array over replicas, or a float):
    returns ``(scale, coordinates, momenta)``. ``exp`` is the namespace's exponential (numpy, torch or floats)."""
    scale = twice_kinetic * 0.0 + 1.0
    chain, length = list(momenta), len(momenta)

    def kick(j: int, driven: object, delta2: float, delta4: float) -> None:
        """Update p_η,j by the force of its neighbours in the chain (ASE's ``_integrate_p_eta_j``)."""
        if j < length - 1:
            chain[j] = chain[j] * exp(-delta4 * chain[j + 1] / masses[j + 1])
        force = driven - dof_kT if j == 0 else chain[j - 1] * chain[j - 1] / masses[j - 1] - kT
        chain[j] = chain[j] + delta2 * force
        if j < length - 1:
            chain[j] = chain[j] * exp(-delta4 * chain[j + 1] / masses[j + 1])

    for coefficient in FOURTH_ORDER_COEFFICIENTS:
        sub = coefficient * delta
        for j in reversed(range(length)):
            kick(j, twice_kinetic * scale * scale, sub / 2, sub / 4)
        coordinates = [c + sub * p / m for c, p, m in zip(coordinates, chain, masses, strict=True)]
        scale = scale * exp(-sub * chain[0] / masses[0])
        for j in range(length):
            kick(j, twice_kinetic * scale * scale, sub / 2, sub / 4)
    return scale, coordinates, chain


class MDEngine:
    """R replicas of one ensemble advanced together on the force field's device; see the module docstring.

    ``states`` are per-replica integrator states (:func:`initial_state` or a checkpoint's), ``masses`` their
    atomic masses (amu). ``step(compute_stress)`` makes one timestep; the force field is called once per step,
    for all replicas (with ``compute_stress`` forced on for NPT, whose barostat needs it).
    """

    def __init__(self, settings: MDSettings, force_field: ForceField, masses: list[np.ndarray],
                 states: list[dict[str, np.ndarray]], *, device: torch.device | str = 'cpu') -> None:
        self.settings = settings
        self.force_field = force_field
        self.device = torch.device(device)
        self.ensemble = settings.ensemble
        self.full_cell = settings.ensemble == 'npt' and settings.cell_fluctuations == 'full'
        self.timestep = settings.timestep_fs * units.fs
        self.kT = units.kB * settings.temperature_K
        self.pressure = settings.pressure_bar * units.bar  # eV/Å³
        counts = [len(m) for m in masses]
        self.n_replicas = len(states)

        def stack(key: str) -> torch.Tensor:
            return torch.as_tensor(np.stack([np.asarray(s[key], dtype=np.float64) for s in states]),
                                   device=self.device)

        def join(key: str) -> torch.Tensor:
            return torch.as_tensor(np.concatenate([np.asarray(s[key], dtype=np.float64) for s in states]),
                                   device=self.device)

        self.system_index = torch.repeat_interleave(torch.arange(self.n_replicas, device=self.device),
                                                    torch.as_tensor(counts, device=self.device))  # (atoms,)
        self.masses = torch.as_tensor(np.concatenate(masses), dtype=torch.float64, device=self.device)[:, None]
        self.inverse_masses = 1.0 / self.masses  # (atoms, 1)
        self.n_atoms = torch.as_tensor(counts, dtype=torch.float64, device=self.device)  # (replicas,)
        self.positions = join('positions')  # (atoms, 3)
        self.momenta = join('momenta')  # (atoms, 3)
        self.cells = stack('cell')  # (replicas, 3, 3)
        self.thermostat = self.barostat = None
        if self.ensemble in ('nvt', 'npt'):
            tdamp2 = (settings.thermostat_tau_fs * units.fs) ** 2
            masses_chain = torch.full((self.n_replicas, settings.thermostat_chain), self.kT * tdamp2,
                                      dtype=torch.float64, device=self.device)
            masses_chain[:, 0] = 3 * self.n_atoms * self.kT * tdamp2
            self.thermostat = _Chain(stack('thermostat_eta'), stack('thermostat_p_eta'), masses_chain,
                                     3 * self.n_atoms * self.kT, self.kT)
        if self.ensemble == 'npt':
            pdamp2 = (settings.barostat_tau_fs * units.fs) ** 2
            cell_dof = 9.0 if self.full_cell else 1.0
            masses_chain = torch.full((self.n_replicas, settings.barostat_chain), self.kT * pdamp2,
                                      dtype=torch.float64, device=self.device)
            masses_chain[:, 0] = 9 * self.kT * pdamp2
            self.barostat = _Chain(stack('barostat_xi'), stack('barostat_p_xi'), masses_chain,
                                   torch.full_like(self.n_atoms, cell_dof * self.kT), self.kT)
            if self.full_cell:
                self.cell_mass = (self.n_atoms + 1) * self.kT * pdamp2  # (replicas,) W
                self.cell_momentum = stack('cell_momentum')  # (replicas, 3, 3)
            else:
                self.cell_mass = (3 * self.n_atoms + 3) * self.kT * pdamp2
                self.reference_cells = stack('reference_cell')
                self.reference_volumes = stack('reference_volume')  # (replicas,)
                self.log_volume_strain = stack('log_volume_strain')  # (replicas,)
                self.volume_momentum = stack('volume_momentum')  # (replicas,)
                self.cells = self.reference_cells * torch.exp(self.log_volume_strain)[:, None, None]
        self.cell_volumes = cell_volumes(self.cells)  # (replicas,) |det h|, updated with the cells
        self.result: ForceResult = self._evaluate(compute_stress=True)

    # -- state ---------------------------------------------------------------------------------------------------

    def get_states(self) -> list[dict[str, np.ndarray]]:
        """Per-replica states with :func:`~.integrators.get_integrator_state`'s keys (one host transfer)."""
        arrays = {'positions': self.positions, 'momenta': self.momenta}
        per_replica = {'cell': self.cells}
        if self.thermostat is not None:
            per_replica.update(thermostat_eta=self.thermostat.coordinates, thermostat_p_eta=self.thermostat.momenta)
        if self.barostat is not None:
            per_replica.update(barostat_xi=self.barostat.coordinates, barostat_p_xi=self.barostat.momenta)
            if self.full_cell:
                per_replica['cell_momentum'] = self.cell_momentum
            else:
                per_replica.update(reference_cell=self.reference_cells, reference_volume=self.reference_volumes,
                                   log_volume_strain=self.log_volume_strain, volume_momentum=self.volume_momentum)
        host = {key: value.cpu().numpy() for key, value in (arrays | per_replica).items()}
        bounds = np.cumsum([0, *self.n_atoms.long().tolist()])
        return [{key: (value[bounds[r]:bounds[r + 1]].copy() if key in arrays else value[r].copy())
                 for key, value in host.items()} for r in range(self.n_replicas)]

    def select(self, replicas: list[int]) -> None:
        """Keep only ``replicas`` (indices into the current batch, in order), e.g. to drop a stopped one."""
        keep = torch.as_tensor(replicas, dtype=torch.long, device=self.device)
        atom_mask = torch.isin(self.system_index, keep)
        renumber = torch.full((self.n_replicas,), -1, dtype=torch.long, device=self.device)
        renumber[keep] = torch.arange(len(replicas), device=self.device)
        order = torch.argsort(renumber[self.system_index[atom_mask]], stable=True)
        atoms = atom_mask.nonzero().squeeze(1)[order]
        self.positions, self.momenta, self.masses = self.positions[atoms], self.momenta[atoms], self.masses[atoms]
        self.inverse_masses = self.inverse_masses[atoms]
        self.system_index = renumber[self.system_index[atoms]]
        self.n_atoms, self.cells, self.cell_volumes = self.n_atoms[keep], self.cells[keep], self.cell_volumes[keep]
        stress = None if self.result.stress is None else self.result.stress[keep]
        charges = None if self.result.charges is None else self.result.charges[atoms]
        self.result = ForceResult(self.result.energy[keep], self.result.forces[atoms], stress, charges)
        if self.thermostat is not None:
            self.thermostat = self.thermostat.select(keep)
        if self.barostat is not None:
            self.barostat = self.barostat.select(keep)
            self.cell_mass = self.cell_mass[keep]
            if self.full_cell:
                self.cell_momentum = self.cell_momentum[keep]
            else:
                self.reference_cells, self.reference_volumes = self.reference_cells[keep], self.reference_volumes[keep]
                self.log_volume_strain = self.log_volume_strain[keep]
                self.volume_momentum = self.volume_momentum[keep]
        self.force_field = self.force_field.select(replicas)
        self.n_replicas = len(replicas)

    # -- observables ---------------------------------------------------------------------------------------------

    def twice_kinetic(self) -> torch.Tensor:
        """Σ p²/m per replica (replicas,), eV."""
        per_atom = (self.momenta * self.momenta * self.inverse_masses).sum(1)  # (atoms,)
        if self.n_replicas == 1:
            return per_atom.sum().reshape(1)
        return segment_sum(per_atom, self.system_index, self.n_replicas)

    def volumes(self) -> torch.Tensor:
        """(replicas,) Å³; for isotropic MTK the barostat's own V_0 e^{3ε}, as in ASE."""
        if self.barostat is not None and not self.full_cell:
            return self.reference_volumes * torch.exp(3 * self.log_volume_strain)
        return self.cell_volumes

    def stress_with_kinetic(self) -> torch.Tensor:
        """Stress including the ideal-gas term -Σ p pᵀ/(m V) (ASE's ``include_ideal_gas=True``): (replicas, 3, 3)."""
        if self.result.stress is None:
            raise RuntimeError('the last force evaluation computed no stress.')
        outer = torch.einsum('na,nb->nab', self.momenta * self.inverse_masses, self.momenta)  # (atoms, 3, 3)
        kinetic = outer.new_zeros((self.n_replicas, 3, 3)).index_add_(0, self.system_index, outer)
        return self.result.stress - kinetic / self.cell_volumes[:, None, None]

    def pressures(self) -> torch.Tensor:
        """-trace(stress with the ideal-gas term)/3, from the kinetic energy alone (no tensor): (replicas,) eV/Å³."""
        if self.result.stress is None:
            raise RuntimeError('the last force evaluation computed no stress.')
        virial = -torch.diagonal(self.result.stress, dim1=1, dim2=2).sum(1) / 3
        return virial + self.twice_kinetic() / (3 * self.cell_volumes)

    def conserved_energy(self) -> torch.Tensor:
        """The extended energy each ensemble conserves (ASE's ``get_conserved_energy``): (replicas,) eV."""
        energy = self.result.energy + 0.5 * self.twice_kinetic()
        if self.thermostat is not None:
            energy = energy + self.thermostat.energy()
        if self.barostat is not None:
            if self.full_cell:
                cell_kinetic = (self.cell_momentum**2).sum((1, 2)) / (2 * self.cell_mass)
            else:
                cell_kinetic = self.volume_momentum**2 / (2 * self.cell_mass)
            energy = energy + self.barostat.energy() + cell_kinetic + self.pressure * self.volumes()
        return energy

    def temperatures(self) -> torch.Tensor:
        """Kinetic temperature with 3N degrees of freedom (ASE's ``get_temperature``): (replicas,) K."""
        return self.twice_kinetic() / (3 * self.n_atoms * units.kB)

    # -- the step ------------------------------------------------------------------------------------------------

    def step(self, compute_stress: bool = False) -> None:
        """One timestep of all replicas; ``compute_stress`` also evaluates the stress at the new positions."""
        if self.ensemble == 'nve':
            self._step_nve(compute_stress)
        elif self.ensemble == 'nvt':
            self._step_nvt(compute_stress)
        elif self.full_cell:
            self._step_mtk_full()
        else:
            self._step_mtk_isotropic()

    def _per_atom(self, values: torch.Tensor) -> torch.Tensor:
        """Per-replica ``values`` (replicas, ...) for each atom; one replica broadcasts instead of gathering."""
        return values if self.n_replicas == 1 else values[self.system_index]

    def _evaluate(self, compute_stress: bool) -> ForceResult:
        return self.force_field(self.positions, self.cells, compute_stress or self.ensemble == 'npt')

    def _thermostat_half_step(self, delta: float) -> None:
        scale = self.thermostat.half_step(self.twice_kinetic(), delta)  # (replicas,)
        self.momenta = self.momenta * self._per_atom(scale)[:, None]

    def _step_nve(self, compute_stress: bool) -> None:
        """Velocity Verlet (``ase.md.verlet.VelocityVerlet``)."""
        self.momenta = self.momenta + 0.5 * self.timestep * self.result.forces
        self.positions = self.positions + self.timestep * self.momenta * self.inverse_masses
        self.result = self._evaluate(compute_stress)
        self.momenta = self.momenta + 0.5 * self.timestep * self.result.forces

    def _step_nvt(self, compute_stress: bool) -> None:
        """NHC half step, velocity Verlet, NHC half step (``NoseHooverChainNVT.step``)."""
        half = self.timestep / 2
        self._thermostat_half_step(half)
        self.momenta = self.momenta + half * self.result.forces
        self.positions = self.positions + self.timestep * self.momenta * self.inverse_masses
        self.result = self._evaluate(compute_stress)
        self.momenta = self.momenta + half * self.result.forces
        self._thermostat_half_step(half)

    def _step_mtk_isotropic(self) -> None:
        """``IsotropicMTKNPT.step``: barostat chain, thermostat, ε momentum, particles, ε; then the reverse."""
        half = self.timestep / 2
        self.volume_momentum = self.volume_momentum * self.barostat.half_step(
            self.volume_momentum**2 / self.cell_mass, half)
        self._thermostat_half_step(half)
        self._isotropic_kick_cell(half)
        self._isotropic_kick_particles(half)
        x = self.timestep * self.volume_momentum / self.cell_mass  # (replicas,)
        x_atoms = self._per_atom(x)[:, None]  # (atoms, 1)
        self.positions = (self.positions * torch.exp(x_atoms)
                          + self.momenta * self.timestep * self.inverse_masses * _exprel(x_atoms))
        self.log_volume_strain = self.log_volume_strain + self.timestep * self.volume_momentum / self.cell_mass
        self.cells = self.reference_cells * torch.exp(self.log_volume_strain)[:, None, None]
        self.cell_volumes = cell_volumes(self.cells)
        self.result = self._evaluate(True)
        self._isotropic_kick_particles(half)
        self._isotropic_kick_cell(half)
        self._thermostat_half_step(half)
        self.volume_momentum = self.volume_momentum * self.barostat.half_step(
            self.volume_momentum**2 / self.cell_mass, half)

    def _isotropic_kick_particles(self, delta: float) -> None:
        """Integrate exp(i L_2 delta): forces plus the (1 + 1/N) ε-momentum friction."""
        x = self._per_atom((1 + 1 / self.n_atoms) * self.volume_momentum * delta / self.cell_mass)[:, None]
        self.momenta = self.momenta * torch.exp(-x) + delta * self.result.forces * _exprel(-x)

    def _isotropic_kick_cell(self, delta: float) -> None:
        """Integrate exp(i L_ε,2 delta): G = 3V (P_int - P_ext) + Σ p²/m / N."""
        twice_kinetic = self.twice_kinetic()
        pressure = (-torch.diagonal(self.result.stress, dim1=1, dim2=2).sum(1) / 3
                    + twice_kinetic / (3 * self.cell_volumes))  # (replicas,) with the ideal-gas term
        force = 3 * self.volumes() * (pressure - self.pressure) + twice_kinetic / self.n_atoms
        self.volume_momentum = self.volume_momentum + delta * force

    def _step_mtk_full(self) -> None:
        """``MTKNPT.step``: as the isotropic step with a 3x3 cell momentum, integrated in its eigenbasis."""
        half = self.timestep / 2
        self._full_barostat_half_step(half)
        self._thermostat_half_step(half)
        self._full_kick_cell(half)
        eigenvalues, eigenvectors = torch.linalg.eigh(self.cell_momentum)  # (replicas, 3), (replicas, 3, 3)
        self._full_kick_particles(half, eigenvalues, eigenvectors)
        rate = (eigenvalues * self.timestep / self.cell_mass[:, None])  # (replicas, 3)
        q = self._rotate(self.positions, eigenvectors)
        p = self._rotate(self.momenta, eigenvectors)
        solution = (q * self._per_atom(torch.exp(rate))
                    + self.timestep * p * self.inverse_masses * self._per_atom(_exprel(rate)))
        self.positions = self._rotate(solution, eigenvectors.transpose(1, 2))
        cell = torch.bmm(self.cells, eigenvectors) * torch.exp(rate)[:, None, :]
        self.cells = torch.bmm(cell, eigenvectors.transpose(1, 2))
        self.cell_volumes = cell_volumes(self.cells)
        self.result = self._evaluate(True)
        self._full_kick_particles(half, eigenvalues, eigenvectors)
        self._full_kick_cell(half)
        self._thermostat_half_step(half)
        self._full_barostat_half_step(half)

    def _full_barostat_half_step(self, delta: float) -> None:
        twice_kinetic = (self.cell_momentum**2).sum((1, 2)) / self.cell_mass
        self.cell_momentum = self.cell_momentum * self.barostat.half_step(twice_kinetic, delta)[:, None, None]

    def _full_kick_particles(self, delta: float, eigenvalues: torch.Tensor, eigenvectors: torch.Tensor) -> None:
        """Integrate exp(i L_2 delta) in the eigenbasis of the cell momentum."""
        trace = torch.diagonal(self.cell_momentum, dim1=1, dim2=2).sum(1)  # (replicas,)
        kappas = eigenvalues + (trace / (3 * self.n_atoms))[:, None]  # (replicas, 3)
        rate = self._per_atom(-kappas * delta / self.cell_mass[:, None])  # (atoms or 1, 3)
        p = self._rotate(self.momenta, eigenvectors)
        f = self._rotate(self.result.forces, eigenvectors)
        self.momenta = self._rotate(p * torch.exp(rate) + delta * f * _exprel(rate), eigenvectors.transpose(1, 2))

    def _rotate(self, vectors: torch.Tensor, bases: torch.Tensor) -> torch.Tensor:
        """Row vectors (atoms, 3) times their replica's matrix in ``bases`` (replicas, 3, 3): v @ U."""
        if self.n_replicas == 1:
            return vectors @ bases[0]
        return torch.einsum('na,nab->nb', vectors, bases[self.system_index])

    def _full_kick_cell(self, delta: float) -> None:
        """Integrate exp(i L_g,2 delta): G = V (σ_int - P_ext 1) + Σ p²/m / (3N) 1."""
        identity = torch.eye(3, dtype=torch.float64, device=self.device)
        kinetic = (self.twice_kinetic() / (3 * self.n_atoms))[:, None, None]
        force = (self.volumes()[:, None, None] * (-self.stress_with_kinetic() - self.pressure * identity)
                 + kinetic * identity)
        self.cell_momentum = self.cell_momentum + delta * force
