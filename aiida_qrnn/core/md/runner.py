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
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
from tqdm import tqdm

from ..topology import make_molecules_whole
from ..units import AMU_PER_CUBIC_ANGSTROM_TO_G_PER_CM3
from . import guards
from .checkpoint import Checkpoint
from .committee import COMMITTEE_COLUMNS, COMMITTEE_FILE, committee_disagreement
from .integrators import build_integrator, conserved_energy, get_integrator_state, set_integrator_state
from .outputs import (
    CHECKPOINT_FILE,
    LOG_COLUMNS,
    LOG_FILE,
    STATUS_FILE,
    TRAJECTORY_FILE,
    UNSTABLE_FILE,
    CsvLog,
    MDResult,
    check_compatible,
    molecular_charge_statistics,
    read_log,
    write_status,
    write_unstable,
)
from .replicas import run_md_replicas
from .settings import MDSettings
from .status import MDStatus
from .trajectory import TrajectoryWriter

if t.TYPE_CHECKING:
    from ..model.committee import Committee

__all__ = ('CHECKPOINT_FILE', 'LOG_COLUMNS', 'LOG_FILE', 'STATUS_FILE', 'TRAJECTORY_FILE', 'UNSTABLE_FILE', 'MDResult',
           'read_log', 'run_md')


def run_md(settings: MDSettings, atoms: Atoms, calculator: Calculator, workdir: Path | str, *,
           rng: np.random.Generator | None = None, committee: Committee | None = None) -> MDResult:
    """Run (or continue) MD of ``atoms`` with any ASE ``calculator`` in ``workdir``; see the module docstring.

    ``rng`` draws the initial Maxwell-Boltzmann velocities of a fresh run (its state is checkpointed).
    ``committee`` (models other than the calculator's) is evaluated every ``settings.committee_interval`` steps.
    With ``settings.engine == 'torch'`` this is :func:`~.replicas.run_md_replicas` with one replica.
    """
    if settings.engine == 'torch':
        return run_md_replicas(settings, [atoms], calculator, [workdir], rngs=[rng], committee=committee)[0]
    if (committee is None) != (settings.committee_interval == 0):
        raise ValueError('a committee needs MD setting committee_interval > 0, and committee_interval > 0 needs a '
                         f'committee (got committee_interval={settings.committee_interval} and '
                         f'{"no" if committee is None else "a"} committee).')
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng() if rng is None else rng
    atoms = atoms.copy()
    atoms.calc = calculator
    checkpoint_path = workdir / CHECKPOINT_FILE
    checkpoint = Checkpoint.load(checkpoint_path) if checkpoint_path.is_file() else None

    if checkpoint is None:
        step, time_fs = 0, 0.0
        if 'molecule' in atoms.arrays and atoms.pbc.any():
            atoms.set_positions(make_molecules_whole(atoms, molecule_ids=atoms.arrays['molecule']))
        if settings.initial_velocities == 'maxwell_boltzmann':
            MaxwellBoltzmannDistribution(atoms, temperature_K=settings.temperature_K, rng=rng)
            Stationary(atoms)
        integrator = build_integrator(settings, atoms)
        writer = TrajectoryWriter(workdir / TRAJECTORY_FILE, atoms, write_velocities=settings.write_velocities)
        log = CsvLog(workdir / LOG_FILE, LOG_COLUMNS, keep_until_step=None)
        committee_log = CsvLog(workdir / COMMITTEE_FILE, COMMITTEE_COLUMNS, keep_until_step=None) if committee \
            else None
    else:
        check_compatible(checkpoint, settings, atoms, checkpoint_path)
        step, time_fs = checkpoint.step, checkpoint.time_fs
        if checkpoint.rng_state is not None:
            rng.bit_generator.state = checkpoint.rng_state
        state = checkpoint.integrator_state
        atoms.set_cell(state['cell'], scale_atoms=False)
        atoms.set_positions(state['positions'])
        atoms.set_momenta(state['momenta'])
        integrator = build_integrator(settings, atoms)
        set_integrator_state(integrator, {k: v for k, v in state.items() if not k.startswith('writer_')})
        writer = TrajectoryWriter(workdir / TRAJECTORY_FILE, atoms, write_velocities=settings.write_velocities,
                                  keep_frames=checkpoint.n_frames)
        writer.set_state({k.removeprefix('writer_'): v for k, v in state.items() if k.startswith('writer_')})
        log = CsvLog(workdir / LOG_FILE, LOG_COLUMNS, keep_until_step=step)
        committee_log = CsvLog(workdir / COMMITTEE_FILE, COMMITTEE_COLUMNS, keep_until_step=step) if committee \
            else None

    def committee_stop() -> str | None:
        """Append the committee's disagreement; a message when it exceeds ``committee_max_force_deviation``."""
        rho_f, deviation = committee_disagreement(committee, atoms)
        committee_log.write((step, time_fs, rho_f, deviation))
        limit = settings.committee_max_force_deviation
        if limit is not None and deviation > limit:
            return (f'step {step}: committee max force deviation {deviation:.4g} eV/Å exceeds '
                    f'committee_max_force_deviation {limit:g} eV/Å (rho_f {rho_f:.4g} (eV/Å)^2)')
        return None

    def save_checkpoint() -> None:
        writer.flush()
        log.flush()
        state = get_integrator_state(integrator)
        state.update({f'writer_{key}': value for key, value in writer.get_state().items()})
        Checkpoint(step=step, time_fs=time_fs, n_frames=writer.n_frames, numbers=atoms.numbers.copy(),
                   ensemble=settings.ensemble, cell_fluctuations=settings.cell_fluctuations,
                   integrator_state=state, rng_state=rng.bit_generator.state).save(checkpoint_path)

    def finish(status: MDStatus, message: str) -> MDResult:
        writer.close()
        log.close()
        if committee_log is not None:
            committee_log.close()
        return write_status(workdir, MDResult(status=status, step=step, time_fs=time_fs, message=message))

    started = time.monotonic()
    timestep_fs = settings.timestep_fs
    if step == 0:
        problem = _check(atoms, settings, contacts=True)
        if problem is not None:
            write_unstable(workdir, atoms)
            return finish(*problem)
        writer.append(atoms, step, time_fs)
        log.write(_observables(integrator, settings, step, time_fs))
        if committee is not None and (message := committee_stop()) is not None:
            save_checkpoint()
            return finish(MDStatus.COMMITTEE_DISAGREEMENT, message)
    with tqdm(total=settings.n_steps, initial=step, disable=not settings.progress_bar, unit='step') as progress:
        while step < settings.n_steps:
            problem = _step(integrator)
            step += 1
            time_fs += timestep_fs
            progress.update()
            problem = problem or _check(atoms, settings, contacts=step % settings.guard_interval == 0)
            if problem is not None:
                write_unstable(workdir, atoms)
                return finish(problem[0], f'step {step}: {problem[1]}')
            if step % settings.log_interval == 0:
                log.write(_observables(integrator, settings, step, time_fs))
            if step % settings.trajectory_interval == 0:
                writer.append(atoms, step, time_fs)
            if committee is not None and step % settings.committee_interval == 0 \
                    and (message := committee_stop()) is not None:
                save_checkpoint()
                return finish(MDStatus.COMMITTEE_DISAGREEMENT, message)
            if step % settings.checkpoint_interval == 0 or step == settings.n_steps:
                save_checkpoint()
            elif settings.walltime_s is not None and time.monotonic() - started > settings.walltime_s:
                save_checkpoint()
                return finish(MDStatus.STOPPED_WALLTIME, f'walltime {settings.walltime_s} s reached at step {step}')
    if checkpoint is not None and checkpoint.step == settings.n_steps:
        return finish(MDStatus.FINISHED, f'already finished: checkpoint at step {step} of {settings.n_steps}')
    return finish(MDStatus.FINISHED, f'finished {settings.n_steps} steps')


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


