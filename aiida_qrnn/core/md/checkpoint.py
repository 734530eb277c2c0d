"""The restart checkpoint: one ``.npz`` file, replaced atomically so a killed run never leaves half of one.

Contents: the integrator state (:func:`~aiida_qrnn.core.md.integrators.get_integrator_state`), the step and
the simulated time, the number of trajectory frames written, the random generator state and the settings that
must not change across a restart. Restoring all of it makes the continued run bit-for-bit identical to an
uninterrupted one (for a deterministic calculator).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CHECKPOINT_FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """Everything a run needs to continue where it stopped."""

    step: int
    time_fs: float
    n_frames: int
    numbers: np.ndarray  # (n_atoms,) atomic numbers, checked against the structure on restart
    ensemble: str
    cell_fluctuations: str
    integrator_state: dict[str, np.ndarray]
    rng_state: dict | None

    def save(self, path: Path) -> None:
        """Write to ``path`` through a temporary file and ``os.replace`` (atomic on POSIX)."""
        path = Path(path)
        temporary = path.with_name(path.name + '.tmp')
        arrays = {f'state/{key}': np.asarray(value) for key, value in self.integrator_state.items()}
        meta = {'format_version': CHECKPOINT_FORMAT_VERSION, 'step': self.step, 'time_fs': self.time_fs,
                'n_frames': self.n_frames, 'ensemble': self.ensemble, 'cell_fluctuations': self.cell_fluctuations,
                'rng_state': self.rng_state}
        with temporary.open('wb') as handle:
            np.savez(handle, numbers=np.asarray(self.numbers), meta=np.array(json.dumps(meta, default=_jsonable)),
                     **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        """Read a checkpoint, with an error naming the file if it is not one."""
        try:
            with np.load(Path(path), allow_pickle=False) as data:
                meta = json.loads(str(data['meta']))
                state = {key.removeprefix('state/'): data[key] for key in data.files if key.startswith('state/')}
                numbers = data['numbers']
        except (OSError, KeyError, ValueError) as exception:
            raise ValueError(f'{path} is not a readable MD checkpoint: {exception}') from exception
        if meta.get('format_version') != CHECKPOINT_FORMAT_VERSION:
            raise ValueError(f'{path} has checkpoint format {meta.get("format_version")}, '
                             f'this version reads {CHECKPOINT_FORMAT_VERSION}.')
        return cls(step=int(meta['step']), time_fs=float(meta['time_fs']), n_frames=int(meta['n_frames']),
                   numbers=numbers, ensemble=meta['ensemble'], cell_fluctuations=meta['cell_fluctuations'],
                   integrator_state=state, rng_state=meta['rng_state'])


def _jsonable(value: object) -> object:
    """Random generator states may hold arrays (MT19937); JSON stores them as lists."""
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f'{type(value).__name__} cannot be stored in a checkpoint.')
