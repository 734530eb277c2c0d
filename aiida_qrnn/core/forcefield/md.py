"""Relaxation, NPT and NVT of an OPLS-AA cell with OpenMM, written as H5MD trajectories with unwrapped positions.

The protocol follows the paper's classical baseline ("Classical force field molecular dynamics"): a cell packed
at 0.5 g/cm^3 is relaxed (energy minimisation, a short NVT warm-up, a compression at high pressure), then run at
constant pressure (Monte Carlo barostat, 1 atm) and at constant volume. Paper sizes: NPT 2 ns, NVT 10 ns at 300 K;
the defaults here are short.

OpenMM never wraps positions during integration and they are read with ``enforcePeriodicBox=False``, so every
frame holds unwrapped coordinates: molecules stay whole and mean-square displacements are correct. Frames go
through the QRNN engine's :class:`~aiida_qrnn.core.md.trajectory.TrajectoryWriter` (one H5MD format for both
engines), with the stage, step, time and the observables ``TRAJECTORY_OBSERVABLES``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from ase import Atoms

from aiida_qrnn.core.forcefield.system import ANGSTROM_PER_NM, DEFAULT_CUTOFF_NM, build_system
from aiida_qrnn.core.md.settings import MdSettingsBase
from aiida_qrnn.core.md.trajectory import TrajectoryWriter, read_trajectory
from aiida_qrnn.core.structures import density_g_cm3
from aiida_qrnn.core.topology import find_bonds, molecule_ids
from aiida_qrnn.core.units import ATM_TO_BAR, KJ_PER_MOL_TO_EV

if TYPE_CHECKING:
    import openmm

__all__ = ('FINAL_STRUCTURE', 'STAGES', 'TRAJECTORY_OBSERVABLES', 'ClassicalMdRun', 'MdProtocol', 'MdUnstableError',
           'cutoff_for_cell', 'run_classical_md')

#: Trajectory file (H5MD) of each recorded stage.
STAGES = {'npt': 'npt.h5', 'nvt': 'nvt.h5'}
#: Per-frame observables of the trajectories (``info`` keys of :meth:`TrajectoryArrays.to_atoms`).
TRAJECTORY_OBSERVABLES = ('potential_energy_eV', 'temperature_K', 'density_g_cm3')
#: The last configuration (extended XYZ with the cell).
FINAL_STRUCTURE = 'final.extxyz'
#: A run is unstable when the instantaneous temperature exceeds this multiple of the target (or is not finite).
UNSTABLE_TEMPERATURE_FACTOR = 5.0
#: The cutoff must stay below half the box when NPT compresses the cell up to this density (g/cm^3).
MAX_EXPECTED_DENSITY = 1.4


class MdUnstableError(RuntimeError):
    """The integration blew up (non-finite energy or runaway temperature); the message names the stage and step."""


@dataclass(frozen=True)
class MdProtocol(MdSettingsBase):
    """Settings of :func:`run_classical_md`; units in the names. Steps of 0 skip a stage.

    Temperature, pressure, time step, their bounds and ``from_dict``/``to_dict`` come from
    :class:`~aiida_qrnn.core.md.settings.MdSettingsBase`, shared with the QRNN engine's ``MDSettings``.

    OpenMM's Monte Carlo barostat tries a volume move every ``barostat_interval`` steps, each at most ~1 % of the
    volume while about half are accepted: compressing a 0.5 g/cm^3 packing to the liquid needs ~200 trials or more.
    """

    KIND: ClassVar[str] = 'classical-MD parameter'

    pressure_bar: float = ATM_TO_BAR
    timestep_fs: float = 1.0
    friction_per_ps: float = 1.0
    minimize_iterations: int = 1000
    relax_nvt_steps: int = 1000
    relax_npt_steps: int = 5000
    relax_pressure_bar: float = 1000.0
    npt_steps: int = 10000
    nvt_steps: int = 10000
    report_interval: int = 1000
    barostat_interval: int = 25
    cutoff_nm: float | None = None
    hydroxyl: str = 'diol'
    seed: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_positive_numbers('pressure_bar', 'friction_per_ps', 'relax_pressure_bar')
        self._check_integers('report_interval', 'barostat_interval', 'threads', minimum=1)
        self._check_integers('minimize_iterations', 'relax_nvt_steps', 'relax_npt_steps', 'npt_steps', 'nvt_steps',
                             'seed', minimum=0)
        if self.cutoff_nm is not None:
            self._check_positive_numbers('cutoff_nm')


def cutoff_for_cell(atoms: Atoms, *, preferred_nm: float = DEFAULT_CUTOFF_NM) -> float:
    """The preferred cutoff, or less: below half the box edge the cell will have at ``MAX_EXPECTED_DENSITY``."""
    edge_nm = np.min(atoms.cell.cellpar()[:3]) / ANGSTROM_PER_NM
    shrink = (density_g_cm3(atoms) / MAX_EXPECTED_DENSITY) ** (1 / 3)
    return float(min(preferred_nm, 0.49 * edge_nm * min(shrink, 1.0)))


def run_classical_md(
    atoms: Atoms, protocol: MdProtocol, folder: str | Path, *, bonds: np.ndarray | None = None,
    system: openmm.System | None = None,
) -> dict[str, Any]:
    """Relax ``atoms`` (a periodic cell), then NPT and NVT; write ``npt.h5``, ``nvt.h5``, ``final.extxyz``.

    Frames every ``report_interval`` steps (H5MD, :func:`~aiida_qrnn.core.md.trajectory.read_trajectory`) carry
    the stage, ``step``, ``time_fs`` and the observables ``temperature_K``, ``density_g_cm3`` and
    ``potential_energy_eV``. Returns a JSON-able summary: densities, mean NPT density over the second half, the
    final cell and the speed in ns/day. The stages are those of :class:`ClassicalMdRun`.

    ``system`` replaces the OPLS-AA system with a prebuilt one of the same atoms (GAFF2 for any polymer:
    :func:`~aiida_qrnn.core.forcefield.gaff.build_gaff2_system`), built with ``protocol.cutoff_nm`` or
    :func:`cutoff_for_cell`.

    :raises MdUnstableError: the run produced a non-finite energy or a runaway temperature.
    """
    run = ClassicalMdRun(atoms, protocol, folder, bonds=bonds, system=system)
    run.start()
    run.step('relax-nvt', protocol.relax_nvt_steps)
    run.set_barostat(protocol.relax_pressure_bar)
    run.step('relax-npt', protocol.relax_npt_steps)
    run.summary['relaxed_density_g_cm3'] = density_g_cm3(run.snapshot()[0])
    started = time.perf_counter()
    run.set_barostat(protocol.pressure_bar)
    run.step('npt', protocol.npt_steps, record=True)
    run.set_barostat(None)
    run.step('nvt', protocol.nvt_steps, record=True)
    return run.finish(elapsed_s=time.perf_counter() - started)


class ClassicalMdRun:
    """One OpenMM run in ``folder``: :meth:`start`, then :meth:`step` through stages (optionally recorded to
    ``STAGES[stage]``), :meth:`set_barostat` between them, :meth:`checkpoint`/:meth:`resume` the OpenMM state, and
    :meth:`finish` (final structure, summary)."""

    def __init__(self, atoms: Atoms, protocol: MdProtocol, folder: str | Path, *, bonds: np.ndarray | None = None,
                 system: openmm.System | None = None) -> None:
        import openmm

        if not atoms.pbc.all():
            raise ValueError('run_classical_md needs a periodic cell (pbc on in all directions).')
        self.protocol = protocol
        self.folder = Path(folder)
        bonds = find_bonds(atoms) if bonds is None else bonds
        self.atoms = atoms.copy()
        if 'molecule' not in self.atoms.arrays:
            self.atoms.arrays['molecule'] = molecule_ids(len(atoms), bonds)
        cutoff_nm = protocol.cutoff_nm or cutoff_for_cell(atoms)
        if system is None:
            system, _ = build_system(atoms, bonds, hydroxyl=protocol.hydroxyl, cutoff_nm=cutoff_nm)
        self.system = system
        self.integrator = openmm.LangevinMiddleIntegrator(
            protocol.temperature_K, protocol.friction_per_ps, protocol.timestep_fs * 1e-3,
        )
        self.integrator.setRandomNumberSeed(protocol.seed + 1)
        platform = openmm.Platform.getPlatformByName('CPU')
        self.context = openmm.Context(system, self.integrator, platform, {'Threads': str(protocol.threads)})
        self.context.setPositions(atoms.positions / ANGSTROM_PER_NM)
        self._barostat_index: int | None = None
        self.summary: dict[str, Any] = {
            'n_atoms': len(atoms), 'cutoff_nm': cutoff_nm, 'initial_density_g_cm3': density_g_cm3(atoms),
            'timestep_fs': protocol.timestep_fs,
        }
        self.production_steps = 0

    def start(self) -> None:
        """Minimise the energy and draw velocities at the protocol's temperature."""
        import openmm

        if self.protocol.minimize_iterations:
            openmm.LocalEnergyMinimizer.minimize(self.context, 10.0, self.protocol.minimize_iterations)
        self.summary['minimized_energy_eV'] = self.snapshot()[1]
        self.context.setVelocitiesToTemperature(self.protocol.temperature_K, self.protocol.seed + 2)

    def checkpoint(self) -> bytes:
        """The OpenMM state (positions, velocities, box, random numbers) to :meth:`resume` from."""
        return self.context.createCheckpoint()

    def resume(self, checkpoint: bytes) -> None:
        """Continue from :meth:`checkpoint` of a run of the same system and barostat setting."""
        self.context.loadCheckpoint(checkpoint)

    def set_barostat(self, pressure_bar: float | None) -> None:
        """A Monte Carlo barostat at ``pressure_bar`` (one trial every ``barostat_interval`` steps), or none."""
        import openmm

        if pressure_bar is None:
            if self._barostat_index is not None:
                self.system.removeForce(self._barostat_index)
                self._barostat_index = None
                self.context.reinitialize(preserveState=True)
            return
        if self._barostat_index is None:
            barostat = openmm.MonteCarloBarostat(pressure_bar, self.protocol.temperature_K,
                                                 self.protocol.barostat_interval)
            barostat.setRandomNumberSeed(self.protocol.seed + 3)
            self._barostat_index = self.system.addForce(barostat)
            self.context.reinitialize(preserveState=True)
        else:
            self.context.setParameter(openmm.MonteCarloBarostat.Pressure(), pressure_bar)

    def snapshot(self) -> tuple[Atoms, float, float]:
        """The current frame (unwrapped positions, cell), its potential energy (eV) and temperature (K)."""
        from openmm import unit

        state = self.context.getState(getPositions=True, getEnergy=True, enforcePeriodicBox=False)
        box = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer) * ANGSTROM_PER_NM
        positions = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer) * ANGSTROM_PER_NM
        frame = Atoms(numbers=self.atoms.numbers, positions=positions, cell=box, pbc=True)
        energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) * KJ_PER_MOL_TO_EV
        kinetic = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
        # Equipartition over 3N - 3 degrees of freedom (no constraints; the Langevin thermostat keeps the COM free).
        temperature = 2 * kinetic / ((3 * len(frame) - 3) * unit.MOLAR_GAS_CONSTANT_R.value_in_unit(
            unit.kilojoule_per_mole / unit.kelvin))
        return frame, energy, temperature

    def step(self, stage: str, steps: int, *, record: bool = False) -> None:
        """Integrate ``steps`` steps of ``stage``, checking stability every ``report_interval`` steps; with
        ``record``, write those frames to ``STAGES[stage]`` (no file for 0 steps).

        :raises MdUnstableError: non-finite energy or temperature above ``UNSTABLE_TEMPERATURE_FACTOR`` x target.
        """
        protocol = self.protocol
        writer = None
        if record and steps:
            writer = TrajectoryWriter(self.folder / STAGES[stage], self.atoms, write_velocities=False,
                                      observables=TRAJECTORY_OBSERVABLES, stage=stage)
            self.production_steps += steps
        try:
            done = 0
            while done < steps:
                chunk = min(protocol.report_interval, steps - done)
                self.integrator.step(chunk)
                done += chunk
                frame, energy, temperature = self.snapshot()
                if not np.isfinite(energy) or not temperature < UNSTABLE_TEMPERATURE_FACTOR * protocol.temperature_K:
                    raise MdUnstableError(
                        f'{stage} stage unstable at step {done}: potential energy {energy} eV, temperature '
                        f'{temperature:.1f} K (target {protocol.temperature_K} K).'
                    )
                if writer is not None:
                    writer.append(frame, done, done * protocol.timestep_fs, {
                        'potential_energy_eV': energy, 'temperature_K': temperature,
                        'density_g_cm3': density_g_cm3(frame),
                    })
        finally:
            if writer is not None:
                writer.close()

    def finish(self, *, elapsed_s: float) -> dict[str, Any]:
        """Write ``final.extxyz``; the summary with the final state, the NPT mean density and the speed of the
        recorded stages (``elapsed_s`` of wall time)."""
        final, energy, temperature = self.snapshot()
        final.write(self.folder / FINAL_STRUCTURE, format='extxyz')
        steps = self.production_steps
        self.summary.update(
            final_density_g_cm3=density_g_cm3(final),
            final_cell=final.cell.array.tolist(),
            final_potential_energy_eV=energy,
            final_temperature_K=temperature,
            production_steps=steps,
            ns_per_day=(steps * self.protocol.timestep_fs * 1e-6) / (elapsed_s / 86400) if steps else None,
        )
        if (self.folder / STAGES['npt']).is_file():
            densities = read_trajectory(self.folder / STAGES['npt']).observables['density_g_cm3']
            self.summary['npt_density_g_cm3'] = float(np.mean(densities[len(densities) // 2:]))
        return self.summary
