"""``MdRun``: one MD run in its folder, the object both engines step.

It owns what does not depend on the integrator: :meth:`MdRun.start` (molecules made whole, Maxwell-Boltzmann
velocities, a new trajectory and logs) or :meth:`MdRun.resume` (from ``checkpoint.npz``, trajectory and logs cut
back to it), the step counter, :meth:`MdRun.checkpoint` and :meth:`MdRun.finish` (``status.json``). An engine
advances it: the torch engine's loop (:mod:`.replicas`, several runs per model call) or
:class:`~.runner.AseMdRun` (ASE's integrators, the reference). The integrator state in a checkpoint has the same
keys for both, so a run started on one engine may continue on the other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

from ..topology import make_molecules_whole
from .checkpoint import Checkpoint
from .committee import COMMITTEE_COLUMNS, COMMITTEE_FILE
from .outputs import (
    CHECKPOINT_FILE,
    LOG_COLUMNS,
    LOG_FILE,
    TRAJECTORY_FILE,
    CsvLog,
    MDResult,
    check_compatible,
    write_status,
)
from .settings import MDSettings
from .status import MDStatus
from .trajectory import TrajectoryWriter

__all__ = ('MdRun',)


class MdRun:
    """One run folder: its files, step counter and random generator, on the host.

    Opening it starts a fresh run, or resumes when ``workdir`` holds a checkpoint (``resumed`` is then True and
    ``state`` holds the checkpoint's integrator state; for a fresh run ``state`` is None and the engine makes its
    own from ``atoms``).
    """

    def __init__(self, settings: MDSettings, atoms: Atoms, workdir: Path | str, rng: np.random.Generator | None = None,
                 *, with_committee: bool = False) -> None:
        self.settings, self.workdir = settings, Path(workdir)
        self.rng = np.random.default_rng() if rng is None else rng
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.atoms = atoms.copy()
        self.atoms.calc = None
        self.result: MDResult | None = None
        self.state: dict[str, np.ndarray] | None = None
        path = self.workdir / CHECKPOINT_FILE
        self.resumed = path.is_file()
        if self.resumed:
            self.resume(Checkpoint.load(path))
        else:
            self.start()
        keep_until = self.step if self.resumed else None
        self.log = CsvLog(self.workdir / LOG_FILE, LOG_COLUMNS, keep_until_step=keep_until)
        self.committee_log = CsvLog(self.workdir / COMMITTEE_FILE, COMMITTEE_COLUMNS, keep_until_step=keep_until) \
            if with_committee else None

    def start(self) -> None:
        """Step 0: molecules whole (when the atoms carry ``arrays['molecule']``), velocities, a new trajectory."""
        settings, atoms = self.settings, self.atoms
        self.step, self.time_fs = 0, 0.0
        if 'molecule' in atoms.arrays and atoms.pbc.any():
            atoms.set_positions(make_molecules_whole(atoms, molecule_ids=atoms.arrays['molecule']))
        if settings.initial_velocities == 'maxwell_boltzmann':
            MaxwellBoltzmannDistribution(atoms, temperature_K=settings.temperature_K, rng=self.rng)
            Stationary(atoms)
        self.writer = TrajectoryWriter(self.workdir / TRAJECTORY_FILE, atoms,
                                       write_velocities=settings.write_velocities)

    def resume(self, checkpoint: Checkpoint) -> None:
        """Continue from ``checkpoint``: step, time, random state, cell, positions, momenta; trajectory cut back."""
        check_compatible(checkpoint, self.settings, self.atoms, self.workdir / CHECKPOINT_FILE)
        self.step, self.time_fs = checkpoint.step, checkpoint.time_fs
        if checkpoint.rng_state is not None:
            self.rng.bit_generator.state = checkpoint.rng_state
        saved = checkpoint.integrator_state
        self.state = {key: value for key, value in saved.items() if not key.startswith('writer_')}
        self.atoms.set_cell(self.state['cell'], scale_atoms=False)
        self.atoms.set_positions(self.state['positions'])
        self.atoms.set_momenta(self.state['momenta'])
        self.writer = TrajectoryWriter(self.workdir / TRAJECTORY_FILE, self.atoms,
                                       write_velocities=self.settings.write_velocities,
                                       keep_frames=checkpoint.n_frames)
        self.writer.set_state({k.removeprefix('writer_'): v for k, v in saved.items() if k.startswith('writer_')})

    @property
    def done(self) -> bool:
        """All ``settings.n_steps`` steps are behind (a checkpoint of a finished run)."""
        return self.step >= self.settings.n_steps

    def advance(self) -> None:
        """Count one step."""
        self.step += 1
        self.time_fs += self.settings.timestep_fs

    def checkpoint(self, state: dict[str, np.ndarray]) -> None:
        """Save the integrator ``state`` with the step, trajectory length, unwrapping and random state."""
        self.writer.flush()
        self.log.flush()
        full = dict(state) | {f'writer_{key}': value for key, value in self.writer.get_state().items()}
        Checkpoint(step=self.step, time_fs=self.time_fs, n_frames=self.writer.n_frames,
                   numbers=self.atoms.numbers.copy(), ensemble=self.settings.ensemble,
                   cell_fluctuations=self.settings.cell_fluctuations, integrator_state=full,
                   rng_state=self.rng.bit_generator.state).save(self.workdir / CHECKPOINT_FILE)

    def finish(self, status: MDStatus, message: str) -> MDResult:
        """Close the files and write ``status.json``; the result is also kept in ``result``."""
        self.writer.close()
        self.log.close()
        if self.committee_log is not None:
            self.committee_log.close()
        self.result = write_status(self.workdir, MDResult(status=status, step=self.step, time_fs=self.time_fs,
                                                          message=message))
        return self.result
