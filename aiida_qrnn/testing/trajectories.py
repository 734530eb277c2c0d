"""Small MD-like outputs for the analysis tests: trajectories written by the MD engine's H5MD writer, and a log.

No MD is run: molecules of an ethylene-glycol cell random-walk as rigid bodies with a little thermal noise, in a
cell that breathes (an NPT-like density series), wrapped before every write as an integrator with wrapping would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ('write_liquid_replica',)


def write_liquid_replica(folder: Path, *, seed: int = 0, n_frames: int = 40, n_molecules: int = 8,
                         frame_interval_fs: float = 1.0) -> Path:
    """Write ``trajectory.h5`` and ``vdos.h5`` (``n_frames`` frames every ``frame_interval_fs``, with velocities and
    molecule ids) and ``npt_log.npz`` (``step``, ``volume_A3``, ``enthalpy_eV`` of every frame) into ``folder``."""
    from aiida_qrnn.core.md import TrajectoryWriter
    from aiida_qrnn.core.structures import pack_cell

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    atoms = pack_cell(1, n_molecules, density_g_cm3=1.0, seed=seed)
    molecule = atoms.arrays['molecule']
    reference_cell, reference = atoms.cell.array.copy(), atoms.positions.copy()
    scales = 1.0 + 0.01 * np.sin(np.arange(n_frames) / 3.0) + rng.normal(0.0, 0.002, n_frames)
    drift = np.zeros((int(molecule.max()) + 1, 3))
    volumes = np.empty(n_frames)
    for name in ('trajectory.h5', 'vdos.h5'):
        with TrajectoryWriter(folder / name, atoms) as writer:
            for frame in range(n_frames):
                drift += rng.normal(0.0, 0.05, drift.shape)
                atoms.set_cell(reference_cell * scales[frame])
                atoms.positions = reference * scales[frame] + drift[molecule] + rng.normal(0.0, 0.01, reference.shape)
                atoms.set_velocities(rng.normal(0.0, 0.05, reference.shape))
                atoms.wrap()
                volumes[frame] = atoms.get_volume()
                writer.append(atoms, step=2 * frame, time_fs=frame * frame_interval_fs)
    np.savez(folder / 'npt_log.npz', step=2 * np.arange(n_frames), volume_A3=volumes,
             enthalpy_eV=rng.normal(0.0, 0.3, n_frames))
    return folder
