"""The MD protocol as one validated, serialisable settings object.

Defaults are the paper's QRNN protocol ("QRNN aided molecular dynamics"): 0.5 fs step, 300 K, 1 atm,
Nosé-Hoover thermostat with a 50 fs time constant, barostat time constant 2.5 ps, frames every 0.5 ps.

:class:`MdSettingsBase` holds what both MD engines' settings share (temperature, pressure, time step, their
physical bounds, the checks of numbers and choices with errors naming the parameter, ``from_dict``/``to_dict``):
:class:`MDSettings` here (QRNN engine) and :class:`~aiida_qrnn.core.forcefield.md.MdProtocol` (classical OpenMM).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

ENSEMBLES = ('nve', 'nvt', 'npt')
CELL_FLUCTUATIONS = ('isotropic', 'full')
INITIAL_VELOCITIES = ('maxwell_boltzmann', 'keep')
ENGINES = ('torch', 'ase')
ONE_ATMOSPHERE_BAR = 1.01325  # standard atmosphere in bar, exact by definition
#: Physical bounds: beyond them a setting is a typo or a unit mistake, not a simulation.
MAX_TEMPERATURE_K = 10_000.0  # hotter than any condensed-phase MD; polymers decompose far below
MAX_TIMESTEP_FS = 200.0  # atomistic MD uses 0.1-5 fs; up to 200 fs only for tests that provoke instabilities
MAX_PRESSURE_BAR = 1e6  # 100 GPa, in either sign (negative pressure is tension)


@dataclass(frozen=True)
class MdSettingsBase:
    """Temperature, pressure and time step of an MD run, and the checks every MD settings class uses.

    Subclasses set ``KIND`` (how errors name a parameter: ``f'{KIND} {name} ...'``) and call
    ``super().__post_init__()``.
    """

    KIND: ClassVar[str] = 'MD setting'

    temperature_K: float = 300.0
    pressure_bar: float = ONE_ATMOSPHERE_BAR
    timestep_fs: float = 0.5

    def __post_init__(self) -> None:
        self._check_positive_numbers('temperature_K', 'timestep_fs')
        if isinstance(self.pressure_bar, bool) or not isinstance(self.pressure_bar, int | float) \
                or not math.isfinite(self.pressure_bar):
            raise ValueError(f'{self.KIND} pressure_bar must be a finite number, got {self.pressure_bar!r}.')
        if self.temperature_K > MAX_TEMPERATURE_K:
            raise ValueError(f'{self.KIND} temperature_K={self.temperature_K!r} K is above {MAX_TEMPERATURE_K:g} K; '
                             'temperatures are in kelvin.')
        if self.timestep_fs > MAX_TIMESTEP_FS:
            raise ValueError(f'{self.KIND} timestep_fs={self.timestep_fs!r} fs is above {MAX_TIMESTEP_FS:g} fs '
                             '(atomistic MD uses 0.1-5 fs); timesteps are in femtoseconds.')
        if abs(self.pressure_bar) > MAX_PRESSURE_BAR:
            raise ValueError(f'{self.KIND} pressure_bar={self.pressure_bar!r} bar is beyond ±{MAX_PRESSURE_BAR:g} '
                             'bar (100 GPa); pressures are in bar.')

    def _check_choices(self, **allowed: tuple[str, ...]) -> None:
        for name, choices in allowed.items():
            if getattr(self, name) not in choices:
                raise ValueError(f'{self.KIND} {name} must be one of {choices}, got {getattr(self, name)!r}.')

    def _check_positive_numbers(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                    or value <= 0:
                raise ValueError(f'{self.KIND} {name} must be a positive number, got {value!r}.')

    def _check_integers(self, *names: str, minimum: int) -> None:
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                kind = 'a positive' if minimum == 1 else 'a non-negative' if minimum == 0 else f'an (>= {minimum})'
                raise ValueError(f'{self.KIND} {name} must be {kind} integer, got {value!r}.')

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Self:
        """Settings from a plain dictionary (a job folder's JSON), naming any unknown key."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f'unknown {cls.KIND}(s) {unknown}; known: {sorted(known)}.')
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary, the inverse of :meth:`from_dict`."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class MDSettings(MdSettingsBase):
    """What one MD run does; units are in the names (ASE units inside: Å, eV, fs, K, bar, amu).

    ``max_temperature_K`` defaults to three times ``temperature_K``: a liquid that heats that far is exploding,
    not fluctuating (relative temperature fluctuations are sqrt(2 / (3 N)), 14 % for 32 atoms).

    ``committee_interval`` (steps, 0 = off) evaluates a committee every that many steps into ``committee.csv``;
    ``committee_max_force_deviation`` (eV/Å, None = never) stops the run cleanly when the committee's largest
    per-atom force deviation exceeds it (:mod:`.committee`).

    ``engine``: ``'torch'`` (default) integrates on the model's device (:mod:`.engine`), several replicas per
    model call; ``'ase'`` uses ASE's integrators (:mod:`.integrators`), the reference the engine is tested
    against. Both write the same files and checkpoints, so a run may continue on the other engine.
    """

    ensemble: Literal['nve', 'nvt', 'npt'] = 'nvt'
    n_steps: int = 2_000_000
    timestep_fs: float = 0.5
    temperature_K: float = 300.0
    pressure_bar: float = ONE_ATMOSPHERE_BAR
    thermostat_tau_fs: float = 50.0
    barostat_tau_fs: float = 2500.0
    cell_fluctuations: Literal['isotropic', 'full'] = 'isotropic'
    thermostat_chain: int = 3
    barostat_chain: int = 3
    initial_velocities: Literal['maxwell_boltzmann', 'keep'] = 'maxwell_boltzmann'
    trajectory_interval: int = 1000
    log_interval: int = 100
    checkpoint_interval: int = 10_000
    guard_interval: int = 10
    min_distance_A: float = 0.5
    max_temperature_K: float | None = None
    write_velocities: bool = True
    walltime_s: float | None = None
    progress_bar: bool = False
    committee_interval: int = 0
    committee_max_force_deviation: float | None = None
    engine: Literal['torch', 'ase'] = 'torch'

    def __post_init__(self) -> None:
        self._check_choices(ensemble=ENSEMBLES, cell_fluctuations=CELL_FLUCTUATIONS,
                            initial_velocities=INITIAL_VELOCITIES, engine=ENGINES)
        super().__post_init__()
        self._check_integers('n_steps', 'committee_interval', minimum=0)
        self._check_integers('thermostat_chain', 'barostat_chain', 'trajectory_interval', 'log_interval',
                             'checkpoint_interval', 'guard_interval', minimum=1)
        limit = self.committee_max_force_deviation
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int | float) or not 0 < limit < math.inf:
                raise ValueError(f'MD setting committee_max_force_deviation must be None or a positive number, '
                                 f'got {limit!r}.')
            if self.committee_interval == 0:
                raise ValueError('MD setting committee_max_force_deviation needs committee_interval > 0.')
        self._check_positive_numbers('thermostat_tau_fs', 'barostat_tau_fs', 'min_distance_A')
        limit = self.max_temperature_K
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int | float)
                                  or not limit > self.temperature_K):
            raise ValueError(f'MD setting max_temperature_K must be None or above temperature_K='
                             f'{self.temperature_K!r} K (a run stops when it exceeds it), got {limit!r}.')
        if self.walltime_s is not None and (not isinstance(self.walltime_s, int | float) or not self.walltime_s >= 0):
            raise ValueError(f'MD setting walltime_s must be None or a non-negative number, got {self.walltime_s!r}.')

    @property
    def temperature_limit_K(self) -> float:
        """Temperature above which the run is stopped as a runaway."""
        return 3.0 * self.temperature_K if self.max_temperature_K is None else float(self.max_temperature_K)
