"""``run_md_replicas``: several independent MD runs advanced together by the torch engine, one model call per step.

Each replica has its own folder with the files of :func:`~.runner.run_md` (checkpoint, trajectory, log,
committee log, status; :mod:`.outputs`), its own thermostat and barostat, and its own outcome: a replica whose
guard fires is stopped (``unstable.extxyz`` and ``status.json`` in its folder) and dropped from the batch while the
others go on. A folder with a checkpoint continues from it, even one written by the ASE engine.

What crosses from the device to the host, and when (the engine's state stays on the device otherwise):

* every step: one small tensor per replica (finite energy/positions/momenta, kinetic temperature) for the
  per-step guards, and the Verlet list's one rebuild boolean (:mod:`.forcefields`);
* every ``log_interval`` steps the log row, every ``trajectory_interval`` steps the frame, every
  ``guard_interval`` steps the positions for the close-contact guard, every ``committee_interval`` steps the
  configuration for the committee, every ``checkpoint_interval`` steps the state.
"""

from __future__ import annotations

import math
import time
import typing as t
from pathlib import Path

import numpy as np
import torch
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from tqdm import tqdm

from ..units import AMU_PER_CUBIC_ANGSTROM_TO_G_PER_CM3
from . import guards
from .committee import committee_disagreement
from .engine import MDEngine, cell_volumes, initial_state
from .forcefields import CalculatorForceField, QRNNForceField
from .outputs import (
    MDResult,
    molecular_charge_statistics,
    write_unstable,
)
from .run import MdRun
from .settings import MDSettings
from .status import MDStatus

if t.TYPE_CHECKING:
    from ..model.committee import Committee

__all__ = ('run_md_replicas',)

ENERGY_KEY = 'md_potential_energy_eV'  # where a snapshot carries its energy (NaN positions defeat a calculator cache)


def _force_field(calculator: Calculator, atoms_list: list[Atoms], settings: MDSettings):
    """The QRNN on its device when the calculator is one, else the calculator itself on the host."""
    from ..model.calculator import QRNNCalculator

    if isinstance(calculator, QRNNCalculator):
        return QRNNForceField.from_calculator(calculator, atoms_list), calculator.device
    if settings.ensemble == 'npt' and 'stress' not in calculator.implemented_properties:
        raise ValueError(f'NPT needs the stress, which {type(calculator).__name__} does not implement.')
    return CalculatorForceField(calculator, atoms_list), torch.device('cpu')


def run_md_replicas(settings: MDSettings, atoms_list: list[Atoms], calculator: Calculator,
                    workdirs: list[Path | str], *, rngs: list[np.random.Generator | None] | None = None,
                    committee: Committee | None = None) -> list[MDResult]:
    """Run (or continue) one MD run per structure, each in its own folder, on the torch engine; one result each.

    ``calculator``: a :class:`~aiida_qrnn.core.model.calculator.QRNNCalculator` (one model call per step for all
    replicas, on its device) or any ASE calculator (called per replica on the host). ``rngs`` draw each fresh
    replica's Maxwell-Boltzmann velocities. ``committee`` as in :func:`~.runner.run_md`.
    """
    if (committee is None) != (settings.committee_interval == 0):
        raise ValueError('a committee needs MD setting committee_interval > 0, and committee_interval > 0 needs a '
                         f'committee (got committee_interval={settings.committee_interval} and '
                         f'{"no" if committee is None else "a"} committee).')
    if len(atoms_list) != len(workdirs) or not atoms_list:
        raise ValueError(f'run_md_replicas needs one folder per structure, got {len(atoms_list)} structures and '
                         f'{len(workdirs)} folders.')
    if len({Path(w).resolve() for w in workdirs}) != len(workdirs):
        raise ValueError(f'replica folders must differ, got {[str(w) for w in workdirs]}.')
    if settings.ensemble == 'npt' and not all(atoms.pbc.all() for atoms in atoms_list):
        raise ValueError('NPT needs a cell periodic in all three directions; the structures have pbc='
                         f'{[atoms.pbc.tolist() for atoms in atoms_list]}.')
    if len({tuple(atoms.pbc) for atoms in atoms_list}) > 1:
        raise ValueError('replicas in one batch must share their periodicity, got pbc='
                         f'{[atoms.pbc.tolist() for atoms in atoms_list]}; run periodic and open systems apart.')
    constrained = [index for index, atoms in enumerate(atoms_list) if atoms.constraints]
    if constrained:
        raise ValueError(f'structures {constrained} carry ASE constraints, which the torch engine does not apply; '
                         "remove them or use MD setting engine='ase' (NVE/NVT).")
    rngs = rngs or [None] * len(atoms_list)
    replicas = [MdRun(settings, atoms, workdir, rng, with_committee=committee is not None)
                for atoms, workdir, rng in zip(atoms_list, workdirs, rngs, strict=True)]
    for replica in replicas:
        if replica.state is None:
            replica.state = initial_state(settings, replica.atoms.positions, replica.atoms.get_momenta(),
                                          replica.atoms.cell.array)
        if replica.step == settings.n_steps:
            replica.finish(MDStatus.FINISHED,
                           f'already finished: checkpoint at step {replica.step} of {settings.n_steps}')
    active = [replica for replica in replicas if replica.result is None]
    if active:
        force_field, device = _force_field(calculator, [replica.atoms for replica in active], settings)
        engine = MDEngine(settings, force_field, [replica.atoms.get_masses() for replica in active],
                          [replica.state for replica in active], device=device)
        _Loop(settings, engine, active, committee).run()
    return [replica.result for replica in replicas]


class _Loop:
    """The stepping loop of :func:`run_md_replicas`: host work only at the intervals of the settings."""

    def __init__(self, settings: MDSettings, engine: MDEngine, active: list[MdRun],
                 committee: Committee | None) -> None:
        self.settings, self.engine, self.active, self.committee = settings, engine, active, committee
        self.periodic = bool(active[0].atoms.pbc.all())
        self.started = time.monotonic()
        self._host: tuple[list[dict], np.ndarray] | None = None

    def host_states(self) -> tuple[list[dict[str, np.ndarray]], np.ndarray]:
        """Per-replica states and energies on the host, fetched at most once per step."""
        if self._host is None:
            self._host = (self.engine.get_states(), self.engine.result.energy.cpu().numpy())
        return self._host

    def snapshot(self, index: int) -> Atoms:
        """Replica ``index`` as ASE atoms (positions, momenta, cell; the potential energy in ``info``)."""
        states, energies = self.host_states()
        atoms = self.active[index].atoms.copy()
        atoms.set_cell(states[index]['cell'], scale_atoms=False)
        atoms.set_positions(states[index]['positions'])
        atoms.set_momenta(states[index]['momenta'])
        atoms.info[ENERGY_KEY] = float(energies[index])
        return atoms

    def run(self) -> None:
        settings = self.settings
        stopped = [index for index, replica in enumerate(self.active)
                   if replica.step == 0 and self._start(index)]
        self._drop(stopped)
        first = min((replica.step for replica in self.active), default=settings.n_steps)
        progress = tqdm(total=settings.n_steps, initial=first, disable=not settings.progress_bar, unit='step')
        while self.active:
            self._host = None
            progress.update()
            need_stress = self.periodic and any((r.step + 1) % settings.log_interval == 0 for r in self.active)
            self.engine.step(compute_stress=need_stress)
            finite, temperatures = self._health()
            stopped = []
            for index, replica in enumerate(self.active):
                replica.advance()
                if self._after_step(index, bool(finite[index]), float(temperatures[index])):
                    stopped.append(index)
            self._drop(stopped)
        progress.close()

    def _start(self, index: int) -> bool:
        """Step 0 of a fresh replica: guards, first frame, first log row, committee; True if it stopped."""
        replica, atoms = self.active[index], self.snapshot(index)
        problem = self._check(atoms, contacts=True)
        if problem is not None:
            write_unstable(replica.workdir, atoms)
            replica.finish(*problem)
            return True
        replica.writer.append(atoms, 0, 0.0)
        replica.log.write(self._log_rows()[index])
        if self.committee is not None and (message := self._committee_stop(index, atoms)) is not None:
            replica.checkpoint(self.host_states()[0][index])
            replica.finish(MDStatus.COMMITTEE_DISAGREEMENT, message)
            return True
        return False

    def _health(self) -> tuple[np.ndarray, np.ndarray]:
        """Per replica: all of energy, positions and momenta finite; kinetic temperature (one host transfer)."""
        engine = self.engine
        finite_atoms = torch.isfinite(engine.positions).all(1) & torch.isfinite(engine.momenta).all(1)
        bad_atoms = torch.zeros(engine.n_replicas, dtype=torch.float64, device=engine.device).index_add_(
            0, engine.system_index, (~finite_atoms).to(torch.float64))
        finite = torch.isfinite(engine.result.energy) & (bad_atoms == 0)
        health = torch.stack([finite.to(torch.float64), engine.temperatures()]).cpu().numpy()
        return health[0] > 0, health[1]

    def _after_step(self, index: int, finite: bool, temperature: float) -> bool:
        """Guards, outputs and checkpoints of one replica after a step; True if it stopped."""
        settings, replica = self.settings, self.active[index]
        step = replica.step
        problem = None
        if not finite or temperature > settings.temperature_limit_K or step % settings.guard_interval == 0:
            problem = self._check(self.snapshot(index), contacts=step % settings.guard_interval == 0)
        if problem is not None:
            write_unstable(replica.workdir, self.snapshot(index))
            replica.finish(problem[0], f'step {step}: {problem[1]}')
            return True
        if step % settings.log_interval == 0:
            replica.log.write(self._log_rows()[index])
        if step % settings.trajectory_interval == 0:
            replica.writer.append(self.snapshot(index), step, replica.time_fs)
        if self.committee is not None and step % settings.committee_interval == 0 \
                and (message := self._committee_stop(index, self.snapshot(index))) is not None:
            replica.checkpoint(self.host_states()[0][index])
            replica.finish(MDStatus.COMMITTEE_DISAGREEMENT, message)
            return True
        if step % settings.checkpoint_interval == 0 or step == settings.n_steps:
            replica.checkpoint(self.host_states()[0][index])
            if step == settings.n_steps:
                replica.finish(MDStatus.FINISHED, f'finished {settings.n_steps} steps')
                return True
        elif settings.walltime_s is not None and time.monotonic() - self.started > settings.walltime_s:
            replica.checkpoint(self.host_states()[0][index])
            replica.finish(MDStatus.STOPPED_WALLTIME, f'walltime {settings.walltime_s} s reached at step {step}')
            return True
        return False

    def _check(self, atoms: Atoms, *, contacts: bool) -> tuple[MDStatus, str] | None:
        problem = (guards.check_finite(atoms, atoms.info[ENERGY_KEY])
                   or guards.check_temperature(atoms, self.settings.temperature_limit_K))
        if problem is None and contacts:
            problem = guards.check_contacts(atoms, self.settings.min_distance_A)
        return problem

    def _committee_stop(self, index: int, atoms: Atoms) -> str | None:
        """Append the committee's disagreement; a message when it exceeds ``committee_max_force_deviation``."""
        replica = self.active[index]
        rho_f, deviation = committee_disagreement(self.committee, atoms)
        replica.committee_log.write((replica.step, replica.time_fs, rho_f, deviation))
        limit = self.settings.committee_max_force_deviation
        if limit is not None and deviation > limit:
            return (f'step {replica.step}: committee max force deviation {deviation:.4g} eV/Å exceeds '
                    f'committee_max_force_deviation {limit:g} eV/Å (rho_f {rho_f:.4g} (eV/Å)^2)')
        return None

    def _log_rows(self) -> list[tuple[float, ...]]:
        """One ``LOG_COLUMNS`` row per active replica, computed on the device, one transfer."""
        engine, settings = self.engine, self.settings
        kinetic = 0.5 * engine.twice_kinetic()
        columns = [engine.result.energy, kinetic, engine.conserved_energy(), engine.temperatures()]
        nan = torch.full_like(kinetic, math.nan)
        if self.periodic:
            volume = cell_volumes(engine.cells)
            pressure = engine.pressures() / units.bar if engine.result.stress is not None else nan
            columns += [pressure, volume]
        else:
            columns += [nan, nan]
        values = torch.stack(columns).cpu().numpy()  # (6, replicas)
        charges = engine.result.charges.cpu().numpy() if engine.result.charges is not None else None
        offsets = np.cumsum([0] + [len(replica.atoms) for replica in self.active])
        rows = []
        for index, replica in enumerate(self.active):
            potential, kinetic_i, conserved, temperature, pressure, volume = values[:, index]
            density = replica.atoms.get_masses().sum() / volume * AMU_PER_CUBIC_ANGSTROM_TO_G_PER_CM3
            enthalpy = potential + kinetic_i + settings.pressure_bar * units.bar * volume if self.periodic \
                else math.nan
            own = None if charges is None else charges[offsets[index]:offsets[index + 1]]
            rows.append((replica.step, replica.time_fs, potential, kinetic_i, potential + kinetic_i, conserved,
                         enthalpy, temperature, pressure, volume, density,
                         *molecular_charge_statistics(own, replica.atoms.arrays.get('molecule'))))
        return rows

    def _drop(self, stopped: list[int]) -> None:
        if not stopped:
            return
        keep = [index for index in range(len(self.active)) if index not in stopped]
        self.active = [self.active[index] for index in keep]
        if keep:
            self.engine.select(keep)
        self._host = None
