"""Harmonic quantum correction of a classical heat capacity from the vibrational density of states (VDOS).

Berens, Mackay, White and Wilson, J. Chem. Phys. 79, 2375 (1983): treat the liquid as a set of harmonic modes
distributed as the VDOS S(nu) of the classical run, normalised to the 3N degrees of freedom
(int S(nu) dnu = 3N). A classical mode contributes k_B to the heat capacity, a quantum one k_B W(u), so

    Delta C = k_B int S(nu) [W(u) - 1] dnu,   W(u) = u^2 e^u / (e^u - 1)^2,   u = h nu / (k_B T)

(W is the Einstein function: -> 1 for h nu << k_B T, -> 0 for the stiff X-H stretches at 300 K). The same
Delta C is added to c_p: the harmonic modes have no p dV term, the classical c_p - c_v difference is kept.

S(nu) is the mass-weighted power spectrum of the atomic velocities, S(nu) ~ sum_i m_i |v_i(nu)|^2 (Fourier
transform of the mass-weighted velocity autocorrelation, Wiener-Khinchin), Hann-windowed against leakage, then
scaled to 3N. The velocities must be sampled densely enough that the fastest mode (O-H stretch, ~3700 cm^-1) is
below the Nyquist frequency: a frame every 4 fs or less (``MIN_NYQUIST_CM1``); coarser frames alias the stiff
modes to low frequencies and the correction would vanish silently, so they are refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import units

from .base import AnalysisBase
from .frames import FrameReader

SPEED_OF_LIGHT_CM_PER_FS = 2.99792458e-5  # c in cm/fs: nu [1/fs] / c = wavenumber [cm^-1]
MIN_NYQUIST_CM1 = 4000.0


@dataclass(frozen=True)
class VibrationalSpectrum:
    """``wavenumbers_cm1`` and ``density_per_cm1`` (states per cm^-1; integrates to ``degrees_of_freedom``)."""

    wavenumbers_cm1: np.ndarray
    density_per_cm1: np.ndarray
    degrees_of_freedom: int


def einstein_function(wavenumbers_cm1: np.ndarray, temperature_K: float) -> np.ndarray:
    """W(u) = u^2 e^u / (e^u - 1)^2 of harmonic modes (1 at zero frequency): quantum over classical heat capacity."""
    u = np.asarray(wavenumbers_cm1, dtype=np.float64) * units._hplanck * units._c * 100.0 / (units._k * temperature_K)
    u = np.maximum(u, 1e-12)
    with np.errstate(over='ignore'):
        half = np.exp(-0.5 * u)  # W = u^2 e^-u / (1 - e^-u)^2 = (u e^{-u/2} / (1 - e^-u))^2, stable for large u
        return np.where(u < 1e-6, 1.0, (u * half / -np.expm1(-u)) ** 2)


def check_velocity_sampling(velocities_shape: tuple[int, ...], masses_shape: tuple[int, ...],
                            frame_interval_fs: float) -> None:
    """Refuse velocities ``(n_frames, n_atoms, 3)`` that are fewer than 8 frames, not of the atoms of ``masses``,
    or too sparse for the stiffest mode (``MIN_NYQUIST_CM1``)."""
    if len(velocities_shape) != 3 or velocities_shape[1:] != (masses_shape[0], 3) or velocities_shape[0] < 8:
        raise ValueError(f'velocities {tuple(velocities_shape)} and masses {tuple(masses_shape)} do not describe at '
                         'least 8 frames of the same atoms.')
    nyquist_cm1 = 0.5 / frame_interval_fs / SPEED_OF_LIGHT_CM_PER_FS
    if nyquist_cm1 < MIN_NYQUIST_CM1:
        raise ValueError(f'velocities every {frame_interval_fs:g} fs resolve modes up to {nyquist_cm1:.0f} cm^-1 '
                         f'only; the VDOS needs {MIN_NYQUIST_CM1:.0f} cm^-1 (O-H stretch): save frames every '
                         f'{0.5 / MIN_NYQUIST_CM1 / SPEED_OF_LIGHT_CM_PER_FS:.2f} fs or less.')


def vibrational_density_of_states(velocities_A_per_fs: np.ndarray, masses_amu: np.ndarray,
                                  frame_interval_fs: float) -> VibrationalSpectrum:
    """The VDOS of ``velocities`` ``(n_frames, n_atoms, 3)`` sampled every ``frame_interval_fs``."""
    velocities = np.asarray(velocities_A_per_fs, dtype=np.float64)
    masses = np.asarray(masses_amu, dtype=np.float64)
    check_velocity_sampling(velocities.shape, masses.shape, frame_interval_fs)
    window = np.hanning(len(velocities))[:, None, None]
    spectrum = np.abs(np.fft.rfft(velocities * window, axis=0)) ** 2  # (n_freq, n_atoms, 3)
    power = np.einsum('fad,a->f', spectrum, masses)
    power[1:] *= 2.0  # one-sided: fold the negative frequencies
    if len(velocities) % 2 == 0:
        power[-1] /= 2.0  # the Nyquist bin has no mirror
    wavenumbers = np.fft.rfftfreq(len(velocities), d=frame_interval_fs) / SPEED_OF_LIGHT_CM_PER_FS
    step = wavenumbers[1] - wavenumbers[0]
    degrees_of_freedom = 3 * len(masses)
    return VibrationalSpectrum(wavenumbers_cm1=wavenumbers,
                               density_per_cm1=power / (power.sum() * step) * degrees_of_freedom,
                               degrees_of_freedom=degrees_of_freedom)


def quantum_heat_capacity_correction_J_per_K(spectrum: VibrationalSpectrum, temperature_K: float) -> float:
    """Delta C = k_B int S (W - 1) dnu in J/K for the whole system (negative: quantum modes freeze out)."""
    if not temperature_K > 0:
        raise ValueError(f'temperature_K must be positive, got {temperature_K!r}.')
    step = spectrum.wavenumbers_cm1[1] - spectrum.wavenumbers_cm1[0]
    weight = einstein_function(spectrum.wavenumbers_cm1, temperature_K) - 1.0
    return float(units._k * np.sum(spectrum.density_per_cm1 * weight) * step)


def quantum_heat_capacity_correction_J_per_gK(velocities_A_per_fs: np.ndarray, masses_amu: np.ndarray,
                                              frame_interval_fs: float, temperature_K: float) -> float:
    """Delta c in J/(g K) to add to a classical c_p of the system with these atoms."""
    spectrum = vibrational_density_of_states(velocities_A_per_fs, masses_amu, frame_interval_fs)
    total_mass_g = float(np.sum(masses_amu)) * units._amu * 1e3
    return quantum_heat_capacity_correction_J_per_K(spectrum, temperature_K) / total_mass_g


class VibrationalDensityOfStates(AnalysisBase):
    """The VDOS of the velocities of evenly spaced frames (:func:`vibrational_density_of_states`).

    The selected frames must be evenly spaced in time, at least 8, and dense enough for the O-H stretch (checked
    before the pass, :func:`check_velocity_sampling`). Results: ``velocities_A_per_fs`` ``(n_frames, n_atoms, 3)``,
    ``spectrum`` (:class:`VibrationalSpectrum`) and, with ``temperature_K``, ``correction_J_per_gK`` (to add to a
    classical c_p of these atoms).
    """

    def __init__(self, trajectory: FrameReader, *, temperature_K: float | None = None) -> None:
        super().__init__(trajectory)
        if not trajectory.has_velocities:
            raise ValueError(f'{trajectory.name} has no velocities: the VDOS needs them.')
        if temperature_K is not None and not temperature_K > 0:
            raise ValueError(f'temperature_K must be positive, got {temperature_K!r}.')
        self.temperature_K = temperature_K

    def _prepare(self) -> None:
        interval = np.diff(self.times_fs)
        if len(interval) == 0 or not np.allclose(interval, interval[0]):
            raise ValueError(f'{self._trajectory.name}: the velocity frames are not evenly spaced.')
        self._interval_fs = float(interval[0])
        shape = (self.n_frames, self._trajectory.n_atoms, 3)
        check_velocity_sampling(shape, self._trajectory.masses.shape, self._interval_fs)
        self.results.velocities_A_per_fs = np.zeros(shape)

    def _single_frame(self) -> None:
        self.results.velocities_A_per_fs[self._frame_index] = self._frame.velocities

    def _conclude(self) -> None:
        masses = self._trajectory.masses
        self.results.spectrum = vibrational_density_of_states(self.results.velocities_A_per_fs, masses,
                                                              self._interval_fs)
        if self.temperature_K is not None:
            total_mass_g = float(np.sum(masses)) * units._amu * 1e3
            self.results.correction_J_per_gK = quantum_heat_capacity_correction_J_per_K(
                self.results.spectrum, self.temperature_K) / total_mass_g
