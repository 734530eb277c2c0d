"""``run_md``: one restartable MD run in a folder, the entry point of the job-folder executable.

Contract: ``run_md(settings, atoms, calculator, workdir)`` runs ``settings.n_steps`` steps in total. If
``workdir`` holds a checkpoint it continues from it (the structure only supplies the atoms and must match the
checkpoint's atomic numbers; the trajectory and log are cut back to the checkpoint), otherwise it starts fresh
(overwriting old outputs). It returns an :class:`MDResult` whose :class:`~.status.MDStatus` says how it ended;
the same is written to ``status.json``. Files in ``workdir``:

* ``checkpoint.npz``: state to continue from (:mod:`.checkpoint`), every ``checkpoint_interval`` steps, at the
  end and when ``walltime_s`` is reached; never written from an unstable state.
* ``trajectory.h5``: H5MD frames every ``trajectory_interval`` steps, positions unwrapped (:mod:`.trajectory`).
* ``md_log.csv``: every ``log_interval`` steps: energies, temperature, pressure, volume, density, enthalpy.
* ``committee.csv``: with a ``committee``, every ``committee_interval`` steps: the committee's disagreement
  (:mod:`.committee`); a continued run appends to it.
* ``status.json``: the outcome; ``unstable.extxyz``: the offending structure when a guard fired.

Two engines write these files (``MDSettings.engine``): ``'torch'`` (default), the device-resident integrator of
:mod:`.engine` run by :func:`~.replicas.run_md_replicas`, and ``'ase'``, ASE's integrators (:mod:`.integrators`)
driven step by step below, kept as the reference the torch engine is tested against. Their checkpoints have the
same state keys, so a run may continue on the other engine.
"""

from __future__ import annotations

import math
import time
import typing as t
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from tqdm import tqdm

from ..units import AMU_PER_CUBIC_ANGSTROM_TO_G_PER_CM3
from . import guards
from .committee import committee_disagreement
from .integrators import build_integrator, conserved_energy, get_integrator_state, set_integrator_state
from .outputs import (
    CHECKPOINT_FILE,
    LOG_COLUMNS,
    LOG_FILE,
    STATUS_FILE,
    TRAJECTORY_FILE,
    UNSTABLE_FILE,
    MDResult,
    molecular_charge_statistics,
    read_log,
    write_unstable,
)
from .replicas import run_md_replicas
from .run import MdRun
from .settings import MDSettings
from .status import MDStatus

if t.TYPE_CHECKING:
    from ..model.committee import Committee

__all__ = ('CHECKPOINT_FILE', 'LOG_COLUMNS', 'LOG_FILE', 'STATUS_FILE', 'TRAJECTORY_FILE', 'UNSTABLE_FILE', 'AseMdRun',
           'MDResult', 'read_log', 'run_md')


def run_md(settings: MDSettings, atoms: Atoms, calculator: Calculator, workdir: Path | str, *,
           rng: np.random.Generator | None = None, committee: Committee | None = None) -> MDResult:
    """Run (or continue) MD of ``atoms`` with any ASE ``calculator`` in ``workdir``; see the module docstring.

    ``rng`` draws the initial Maxwell-Boltzmann velocities of a fresh run (its state is checkpointed).
    ``committee`` (models other than the calculator's) is evaluated every ``settings.committee_interval`` steps.
    With ``settings.engine == 'torch'`` this is :func:`~.replicas.run_md_replicas` with one replica, else
    :class:`AseMdRun`.
    """
    if settings.engine == 'torch':
        return run_md_replicas(settings, [atoms], calculator, [workdir], rngs=[rng], committee=committee)[0]
    return AseMdRun(settings, atoms, calculator, workdir, rng=rng, committee=committee).run()


class AseMdRun:
    """An :class:`~.run.MdRun` advanced by ASE's integrators (:mod:`.integrators`), step by step on the host:
    :meth:`run` loops :meth:`step` with the guards, outputs and checkpoints of the settings."""

    def __init__(self, settings: MDSettings, atoms: Atoms, calculator: Calculator, workdir: Path | str, *,
                 rng: np.random.Generator | None = None, committee: Committee | None = None) -> None:
        if (committee is None) != (settings.committee_interval == 0):
            raise ValueError('a committee needs MD setting committee_interval > 0, and committee_interval > 0 needs '
                             f'a committee (got committee_interval={settings.committee_interval} and '
                             f'{"no" if committee is None else "a"} committee).')
        self.settings, self.committee = settings, committee
        self.md = MdRun(settings, atoms, workdir, rng, with_committee=committee is not None)
        self.atoms = self.md.atoms
        self.atoms.calc = calculator
        self.integrator = build_integrator(settings, self.atoms)
        if self.md.state is not None:
            set_integrator_state(self.integrator, self.md.state)

    def checkpoint(self) -> None:
        self.md.checkpoint(get_integrator_state(self.integrator))

    def finish(self, status: MDStatus, message: str) -> MDResult:
        return self.md.finish(status, message)

    def step(self) -> tuple[MDStatus, str] | None:
        """One integrator step and the per-step guards; a problem (status, message) or None."""
        problem = _step(self.integrator)
        self.md.advance()
        return problem or _check(self.atoms, self.settings, contacts=self.md.step % self.settings.guard_interval == 0)

    def _committee_stop(self) -> str | None:
        """Append the committee's disagreement; a message when it exceeds ``committee_max_force_deviation``."""
        md, limit = self.md, self.settings.committee_max_force_deviation
        rho_f, deviation = committee_disagreement(self.committee, self.atoms)
        md.committee_log.write((md.step, md.time_fs, rho_f, deviation))
        if limit is not None and deviation > limit:
            return (f'step {md.step}: committee max force deviation {deviation:.4g} eV/Å exceeds '
                    f'committee_max_force_deviation {limit:g} eV/Å (rho_f {rho_f:.4g} (eV/Å)^2)')
        return None

    def run(self) -> MDResult:
        """Step to ``settings.n_steps``, or until a guard fires, the committee disagrees or the walltime is up."""
        settings, md, atoms = self.settings, self.md, self.atoms
        started = time.monotonic()
        if md.step == 0:
            problem = _check(atoms, settings, contacts=True)
            if problem is not None:
                write_unstable(md.workdir, atoms)
                return self.finish(*problem)
            md.writer.append(atoms, md.step, md.time_fs)
            md.log.write(_observables(self.integrator, settings, md.step, md.time_fs))
            if self.committee is not None and (message := self._committee_stop()) is not None:
                self.checkpoint()
                return self.finish(MDStatus.COMMITTEE_DISAGREEMENT, message)
        already_finished = md.resumed and md.done
        with tqdm(total=settings.n_steps, initial=md.step, disable=not settings.progress_bar, unit='step') as progress:
            while not md.done:
                problem = self.step()
                progress.update()
                if problem is not None:
                    write_unstable(md.workdir, atoms)
                    return self.finish(problem[0], f'step {md.step}: {problem[1]}')
                if md.step % settings.log_interval == 0:
                    md.log.write(_observables(self.integrator, settings, md.step, md.time_fs))
                if md.step % settings.trajectory_interval == 0:
                    md.writer.append(atoms, md.step, md.time_fs)
                if self.committee is not None and md.step % settings.committee_interval == 0 \
                        and (message := self._committee_stop()) is not None:
                    self.checkpoint()
                    return self.finish(MDStatus.COMMITTEE_DISAGREEMENT, message)
                if md.step % settings.checkpoint_interval == 0 or md.step == settings.n_steps:
                    self.checkpoint()
                elif settings.walltime_s is not None and time.monotonic() - started > settings.walltime_s:
                    self.checkpoint()
                    return self.finish(MDStatus.STOPPED_WALLTIME,
                                       f'walltime {settings.walltime_s} s reached at step {md.step}')
        if already_finished:
            return self.finish(MDStatus.FINISHED,
                               f'already finished: checkpoint at step {md.step} of {settings.n_steps}')
        return self.finish(MDStatus.FINISHED, f'finished {settings.n_steps} steps')


def _step(integrator) -> tuple[MDStatus, str] | None:
    """One integrator step; overflow inside it (a thermostat variable exploding) becomes a status, not a crash.

    A calculator that raises on the non-finite positions of such a step is reported as UNSTABLE_NOT_FINITE;
    a calculator error on finite positions is a real error and propagates.
    """
    try:
        with np.errstate(over='ignore', invalid='ignore'):
            integrator.step()
    except Exception as exception:
        state = get_integrator_state(integrator)
        if np.isfinite(state['positions']).all() and np.isfinite(state['momenta']).all():
            raise
        return MDStatus.UNSTABLE_NOT_FINITE, f'non-finite positions or momenta ({exception})'
    return None


def _check(atoms: Atoms, settings: MDSettings, *, contacts: bool) -> tuple[MDStatus, str] | None:
    problem = guards.check_finite(atoms) or guards.check_temperature(atoms, settings.temperature_limit_K)
    if problem is None and contacts:
        problem = guards.check_contacts(atoms, settings.min_distance_A)
    return problem


def _observables(integrator, settings: MDSettings, step: int, time_fs: float) -> tuple[float, ...]:
    """One log row in the order of ``LOG_COLUMNS``."""
    atoms = integrator.atoms
    potential = atoms.get_potential_energy()
    kinetic = atoms.get_kinetic_energy()
    periodic = bool(atoms.pbc.all())
    volume = atoms.get_volume() if periodic else math.nan
    pressure = math.nan
    if periodic and 'stress' in atoms.calc.implemented_properties:
        stress = atoms.get_stress(voigt=False, include_ideal_gas=True)  # (3, 3) eV/Å^3
        pressure = -np.trace(stress) / 3 / units.bar
    density = atoms.get_masses().sum() / volume * AMU_PER_CUBIC_ANGSTROM_TO_G_PER_CM3
    enthalpy = potential + kinetic + settings.pressure_bar * units.bar * volume if periodic else math.nan
    charges = atoms.calc.results.get('charges') if atoms.calc is not None else None
    return (step, time_fs, potential, kinetic, potential + kinetic, conserved_energy(integrator), enthalpy,
            atoms.get_temperature(), pressure, volume, density,
            *molecular_charge_statistics(charges, atoms.arrays.get('molecule')))


