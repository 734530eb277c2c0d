"""Relaxation, NPT and NVT of an OPLS-AA cell with OpenMM, written as ASE trajectories with unwrapped positions.

The protocol follows the paper's classical baseline ("Classical force field molecular dynamics"): a cell packed
at 0.5 g/cm^3 is relaxed (energy minimisation, a short NVT warm-up, a compression at high pressure), then run at
constant pressure (Monte Carlo barostat, 1 atm) and at constant volume. Paper sizes: NPT 2 ns, NVT 10 ns at 300 K;
the defaults here are short.

OpenMM never wraps positions during integration and they are read with ``enforcePeriodicBox=False``, so every
frame holds unwrapped coordinates: molecules stay whole and mean-square displacements are correct.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import Atoms

from aiida_qrnn.core.forcefield.system import ANGSTROM_PER_NM, DEFAULT_CUTOFF_NM, build_system
from aiida_qrnn.core.structures import density_g_cm3
from aiida_qrnn.core.topology import find_bonds
from aiida_qrnn.core.units import ATM_TO_BAR, KJ_PER_MOL_TO_EV

if TYPE_CHECKING:
    import openmm

__all__ = ('FINAL_STRUCTURE', 'STAGES', 'MdProtocol', 'MdUnstableError', 'cutoff_for_cell', 'run_classical_md')

#: Trajectory file of each recorded stage.
STAGES = {'npt': 'npt.traj', 'nvt': 'nvt.traj'}
#: The last configuration (extended XYZ with the cell).
FINAL_STRUCTURE = 'final.extxyz'
#: A run is unstable when the instantaneous temperature exceeds this multiple of the target (or is not finite).
UNSTABLE_TEMPERATURE_FACTOR = 5.0
#: The cutoff must stay below half the box when NPT compresses the cell up to this density (g/cm^3).
MAX_EXPECTED_DENSITY = 1.4


class MdUnstableError(RuntimeError):
    """The integration blew up (non-finite energy or runaway temperature); the message names the stage and step."""


@dataclass(frozen=True)
class MdProtocol:
    """Settings of :func:`run_classical_md`; units in the names. Steps of 0 skip a stage."""

    temperature_K: float = 300.0
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
        positive = ('temperature_K', 'pressure_bar', 'timestep_fs', 'friction_per_ps', 'relax_pressure_bar',
                    'report_interval', 'barostat_interval', 'threads')
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f'MdProtocol.{name} must be a positive number, got {value!r}.')
        for name in ('minimize_iterations', 'relax_nvt_steps', 'relax_npt_steps', 'npt_steps', 'nvt_steps'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f'MdProtocol.{name} must be a non-negative integer, got {value!r}.')
        if self.cutoff_nm is not None and not self.cutoff_nm > 0:
            raise ValueError(f'MdProtocol.cutoff_nm must be positive, got {self.cutoff_nm!r}.')

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MdProtocol:
        """Build from a mapping; unknown keys are refused by name."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f'unknown classical-MD parameter(s) {unknown}; known: {sorted(known)}.')
        return cls(**values)


def cutoff_for_cell(atoms: Atoms, *, preferred_nm: float = DEFAULT_CUTOFF_NM) -> float:
    """The preferred cutoff, or less: below half the box edge the cell will have at ``MAX_EXPECTED_DENSITY``."""
    edge_nm = np.min(atoms.cell.cellpar()[:3]) / ANGSTROM_PER_NM
    shrink = (density_g_cm3(atoms) / MAX_EXPECTED_DENSITY) ** (1 / 3)
    return float(min(preferred_nm, 0.49 * edge_nm * min(shrink, 1.0)))


def run_classical_md(
    atoms: Atoms, protocol: MdProtocol, folder: str | Path, *, bonds: np.ndarray | None = None,
    system: openmm.System | None = None,
) -> dict[str, Any]:
    """Relax ``atoms`` (a periodic cell), then NPT and NVT; write ``npt.traj``, ``nvt.traj``, ``final.extxyz``.

    Frames every ``report_interval`` steps carry ``info`` ``stage``, ``step``, ``time_fs``, ``temperature_K``,
    ``density_g_cm3`` and the potential energy (eV) in a single-point calculator. Returns a JSON-able summary:
    densities, mean NPT density over the second half, the final cell and the speed in ns/day.

    ``system`` replaces the OPLS-AA system with a prebuilt one of the same atoms (GAFF2 for any polymer:
    :func:`~aiida_qrnn.core.forcefield.gaff.build_gaff2_system`), built with ``protocol.cutoff_nm`` or
    :func:`cutoff_for_cell`.

    :raises MdUnstableError: the run produced a non-finite energy or a runaway temperature.
    """
    import openmm
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io.trajectory import Trajectory
    from openmm import unit

    if not atoms.pbc.all():
        raise ValueError('run_classical_md needs a periodic cell (pbc on in all directions).')
    folder = Path(folder)
    bonds = find_bonds(atoms) if bonds is None else bonds
    cutoff_nm = protocol.cutoff_nm or cutoff_for_cell(atoms)
    if system is None:
        system, _ = build_system(atoms, bonds, hydroxyl=protocol.hydroxyl, cutoff_nm=cutoff_nm)
    integrator = openmm.LangevinMiddleIntegrator(
        protocol.temperature_K, protocol.friction_per_ps, protocol.timestep_fs * 1e-3,
    )
    integrator.setRandomNumberSeed(protocol.seed + 1)
    platform = openmm.Platform.getPlatformByName('CPU')
    context = openmm.Context(system, integrator, platform, {'Threads': str(protocol.threads)})
    context.setPositions(atoms.positions / ANGSTROM_PER_NM)
    summary: dict[str, Any] = {
        'n_atoms': len(atoms), 'cutoff_nm': cutoff_nm, 'initial_density_g_cm3': density_g_cm3(atoms),
        'timestep_fs': protocol.timestep_fs,
    }

    def snapshot() -> tuple[Atoms, float, float]:
        state = context.getState(getPositions=True, getEnergy=True, enforcePeriodicBox=False)
        box = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer) * ANGSTROM_PER_NM
        positions = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer) * ANGSTROM_PER_NM
        frame = Atoms(numbers=atoms.numbers, positions=positions, cell=box, pbc=True)
        energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) * KJ_PER_MOL_TO_EV
        kinetic = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
        # Equipartition over 3N - 3 degrees of freedom (no constraints; the Langevin thermostat keeps the COM free).
        temperature = 2 * kinetic / ((3 * len(atoms) - 3) * unit.MOLAR_GAS_CONSTANT_R.value_in_unit(
            unit.kilojoule_per_mole / unit.kelvin))
        return frame, energy, temperature

    def run(stage: str, steps: int, writer=None) -> None:
        done = 0
        while done < steps:
            chunk = min(protocol.report_interval, steps - done)
            integrator.step(chunk)
            done += chunk
            frame, energy, temperature = snapshot()
            if not np.isfinite(energy) or not temperature < UNSTABLE_TEMPERATURE_FACTOR * protocol.temperature_K:
                raise MdUnstableError(
                    f'{stage} stage unstable at step {done}: potential energy {energy} eV, temperature '
                    f'{temperature:.1f} K (target {protocol.temperature_K} K).'
                )
            if writer is not None:
                frame.info.update(
                    stage=stage, step=done, time_fs=done * protocol.timestep_fs, temperature_K=temperature,
                    density_g_cm3=density_g_cm3(frame),
                )
                frame.calc = SinglePointCalculator(frame, energy=energy)
                writer.write(frame)

    if protocol.minimize_iterations:
        openmm.LocalEnergyMinimizer.minimize(context, 10.0, protocol.minimize_iterations)
    summary['minimized_energy_eV'] = snapshot()[1]
    context.setVelocitiesToTemperature(protocol.temperature_K, protocol.seed + 2)
    run('relax-nvt', protocol.relax_nvt_steps)

    barostat = openmm.MonteCarloBarostat(
        protocol.relax_pressure_bar, protocol.temperature_K, protocol.barostat_interval,
    )
    barostat.setRandomNumberSeed(protocol.seed + 3)
    barostat_index = system.addForce(barostat)
    context.reinitialize(preserveState=True)
    run('relax-npt', protocol.relax_npt_steps)
    summary['relaxed_density_g_cm3'] = density_g_cm3(snapshot()[0])

    started = time.perf_counter()
    context.setParameter(openmm.MonteCarloBarostat.Pressure(), protocol.pressure_bar)
    with Trajectory(folder / STAGES['npt'], 'w') as writer:
        run('npt', protocol.npt_steps, writer)
    system.removeForce(barostat_index)
    context.reinitialize(preserveState=True)
    with Trajectory(folder / STAGES['nvt'], 'w') as writer:
        run('nvt', protocol.nvt_steps, writer)
    elapsed = time.perf_counter() - started

    final, energy, temperature = snapshot()
    final.write(folder / FINAL_STRUCTURE, format='extxyz')
    production_steps = protocol.npt_steps + protocol.nvt_steps
    summary.update(
        final_density_g_cm3=density_g_cm3(final),
        final_cell=final.cell.array.tolist(),
        final_potential_energy_eV=energy,
        final_temperature_K=temperature,
        production_steps=production_steps,
        ns_per_day=(production_steps * protocol.timestep_fs * 1e-6) / (elapsed / 86400) if production_steps else None,
    )
    if protocol.npt_steps:
        with Trajectory(folder / STAGES['npt']) as frames:
            densities = [frame.info['density_g_cm3'] for frame in frames]
        summary['npt_density_g_cm3'] = float(np.mean(densities[len(densities) // 2:]))
    return summary

