"""Mean-squared displacement of molecular centres of mass and the self-diffusivity.

    MSD(tau) = < |r_m(t + tau) - r_m(t)|^2 >_{m, t},      D = lim MSD(tau) / (2 d tau)   (Einstein relation)

averaged over molecules m and all time origins t. :func:`msd_fft` computes all lags in O(F log F) per
molecule (Calandrini et al., Collection SFN 12, 201 (2011), the nMoldyn algorithm, as MDAnalysis's
``EinsteinMSD(fft=True)``); :func:`msd_windowed` is the direct O(F^2) sum, kept to check it. Positions must be
unwrapped (``aiida_qrnn.core.md`` writes them so). D is the slope of a straight-line fit over the linear
(diffusive) regime, by default lags from 10 % to 50 % of the run: short lags are ballistic/caged, long lags
have few origins.

Finite-size correction (Yeh and Hummer, J. Phys. Chem. B 108, 15873 (2004), eq. 13):

    D_inf = D_PBC + k_B T xi / (6 pi eta L),   xi = 2.837297 (cubic cell)

The MD log has the scalar pressure only, not the pressure tensor, so the shear viscosity eta cannot come from a
Green-Kubo integral of the same runs; :func:`experimental_viscosity_Pa_s` gives the experimental value
(``EXPERIMENTAL_VISCOSITY_MPA_S``), and the correction is reported beside the raw D, never instead of it. With a
model whose eta differs from experiment the corrected D carries that error (the correction is ~k_B T/eta L).

A D is flagged ``too_short`` when, at the end of the fit window, the molecules have moved less than their own
size on average (MSD < (2 R_g)^2): the MSD has not reached the diffusive regime and its slope is not a D.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import units

from ._plot import new_axes, save
from .base import AnalysisBase
from .frames import FrameReader

A2_PER_FS_TO_CM2_PER_S = 1e-16 / 1e-15  # Å^2/fs -> cm^2/s
YEH_HUMMER_XI = 2.837297  # cubic lattice constant, Yeh and Hummer (2004)
#: Shear viscosity of HO-(CH2CH2O)n-H in mPa s at (298.15 K, 303.15 K): ChemSep 8.32 databank, DIPPR eq. 101, as
#: evaluated with PyPI ``chemicals`` 1.5.2 (../shared/reference/science.md section 5.1). Longer oligomers: none.
EXPERIMENTAL_VISCOSITY_MPA_S = {1: (17.0, 13.9), 2: (29.5, 23.2), 3: (38.0, 29.8), 4: (45.4, 35.1)}
VISCOSITY_SOURCE = 'ChemSep 8.32 DIPPR eq. 101 (chemicals 1.5.2) at 298.15 and 303.15 K, Arrhenius-interpolated'
_VISCOSITY_TEMPERATURES_K = (298.15, 303.15)


def molecular_centres_of_mass(positions: np.ndarray, masses: np.ndarray, molecule_ids: np.ndarray) -> np.ndarray:
    """Centres of mass ``(n_frames, n_molecules, 3)`` from positions ``(n_frames, n_atoms, 3)``.

    Molecules are numbered by ``np.unique(molecule_ids)`` order.
    """
    positions = np.asarray(positions, dtype=np.float64)
    masses = np.asarray(masses, dtype=np.float64)
    _, index = np.unique(molecule_ids, return_inverse=True)  # (n_atoms,) molecule index 0..M-1
    if positions.shape[1:] != (len(masses), 3) or index.shape != masses.shape:
        raise ValueError(f'positions {positions.shape}, masses {masses.shape} and molecule ids '
                         f'{np.shape(molecule_ids)} do not describe the same atoms.')
    n_molecules = index.max() + 1
    molecule_mass = np.bincount(index, weights=masses, minlength=n_molecules)  # (M,)
    weighted = positions * masses[None, :, None]  # (F, N, 3)
    centres = np.zeros((positions.shape[0], n_molecules, 3))
    np.add.at(centres, (slice(None), index), weighted)
    return centres / molecule_mass[None, :, None]


def msd_fft(positions: np.ndarray) -> np.ndarray:
    """MSD ``(n_frames,)`` at lags 0..F-1 of ``(n_frames, n_particles, 3)`` unwrapped positions, by FFT.

    MSD(m) = S1(m) - 2 S2(m): S2 the position autocorrelation (FFT, zero-padded), S1 by the recursion of
    Calandrini et al. over the squared norms.
    """
    positions = np.asarray(positions, dtype=np.float64)
    n_frames = positions.shape[0]
    squared = (positions**2).sum(axis=2)  # (F, P)
    padded = np.zeros((2 * n_frames, *positions.shape[1:]))
    padded[:n_frames] = positions
    spectrum = np.fft.rfft(padded, axis=0)
    autocorrelation = np.fft.irfft(spectrum * spectrum.conj(), axis=0)[:n_frames].sum(axis=2)  # (F, P)
    autocorrelation /= (n_frames - np.arange(n_frames))[:, None]
    total = 2.0 * squared.sum(axis=0)  # (P,)
    s1 = np.zeros((n_frames, positions.shape[1]))
    for lag in range(n_frames):
        if lag:
            total = total - squared[lag - 1] - squared[n_frames - lag]
        s1[lag] = total / (n_frames - lag)
    return (s1 - 2.0 * autocorrelation).mean(axis=1)


def msd_windowed(positions: np.ndarray, max_lag: int | None = None) -> np.ndarray:
    """MSD by the direct average over all time origins, lags 0..max_lag (O(F^2); reference for :func:`msd_fft`)."""
    positions = np.asarray(positions, dtype=np.float64)
    max_lag = positions.shape[0] - 1 if max_lag is None else max_lag
    msd = np.zeros(max_lag + 1)
    for lag in range(1, max_lag + 1):
        msd[lag] = ((positions[lag:] - positions[:-lag]) ** 2).sum(axis=2).mean()
    return msd


@dataclass(frozen=True)
class DiffusionResult:
    """Self-diffusivity from the MSD slope; ``slope`` in Å^2/fs, ``intercept`` in Å^2."""

    diffusivity_cm2_per_s: float
    slope_A2_per_fs: float
    intercept_A2: float
    fit_start_fs: float
    fit_end_fs: float


def _check_fit_window(fit_start_fraction: float, fit_end_fraction: float) -> None:
    if not 0.0 <= fit_start_fraction < fit_end_fraction <= 1.0:
        raise ValueError(f'Need 0 <= fit_start_fraction < fit_end_fraction <= 1, got {fit_start_fraction!r}, '
                         f'{fit_end_fraction!r}.')


def fit_self_diffusivity(lag_times_fs: np.ndarray, msd_A2: np.ndarray, *, fit_start_fraction: float = 0.1,
                         fit_end_fraction: float = 0.5, dimensions: int = 3) -> DiffusionResult:
    """D = slope / (2 d) of a least-squares line through the MSD between the two fractions of the longest lag."""
    lag_times_fs = np.asarray(lag_times_fs, dtype=np.float64)
    _check_fit_window(fit_start_fraction, fit_end_fraction)
    start, end = fit_start_fraction * lag_times_fs[-1], fit_end_fraction * lag_times_fs[-1]
    window = (lag_times_fs >= start) & (lag_times_fs <= end)
    if window.sum() < 3:
        raise ValueError(f'Only {window.sum()} MSD points between {start} and {end} fs; a fit needs 3 or more.')
    slope, intercept = np.polyfit(lag_times_fs[window], np.asarray(msd_A2)[window], 1)
    return DiffusionResult(diffusivity_cm2_per_s=float(slope / (2 * dimensions) * A2_PER_FS_TO_CM2_PER_S),
                           slope_A2_per_fs=float(slope), intercept_A2=float(intercept),
                           fit_start_fs=float(start), fit_end_fs=float(end))


class CentreOfMassMSD(AnalysisBase):
    """MSD of the molecular centres of mass over all time origins (:func:`msd_fft`) and D from its slope.

    Needs unwrapped positions and molecule ids. Results: ``centres_A`` ``(n_frames, n_molecules, 3)``,
    ``lag_times_fs`` and ``msd_A2`` ``(n_frames,)``, ``fit`` (:class:`DiffusionResult`, lags between the two
    fractions of the longest lag).
    """

    def __init__(self, trajectory: FrameReader, *, fit_start_fraction: float = 0.1,
                 fit_end_fraction: float = 0.5) -> None:
        super().__init__(trajectory)
        if trajectory.molecule is None:
            raise ValueError(f'{trajectory.name} has no molecule ids: the centre-of-mass MSD needs them.')
        _check_fit_window(fit_start_fraction, fit_end_fraction)
        self.fit_start_fraction, self.fit_end_fraction = fit_start_fraction, fit_end_fraction
        self._n_molecules = len(np.unique(trajectory.molecule))

    def _prepare(self) -> None:
        self.results.centres_A = np.zeros((self.n_frames, self._n_molecules, 3))

    def _single_frame(self) -> None:
        self.results.centres_A[self._frame_index] = molecular_centres_of_mass(
            self._frame.positions[None], self._trajectory.masses, self._trajectory.molecule)[0]

    def _conclude(self) -> None:
        self.results.lag_times_fs = self.times_fs - self.times_fs[0]
        self.results.msd_A2 = msd_fft(self.results.centres_A)
        self.results.fit = fit_self_diffusivity(self.results.lag_times_fs, self.results.msd_A2,
                                                fit_start_fraction=self.fit_start_fraction,
                                                fit_end_fraction=self.fit_end_fraction)


def yeh_hummer_correction_cm2_per_s(box_length_A: float, viscosity_Pa_s: float, temperature_K: float) -> float:
    """k_B T xi / (6 pi eta L) in cm^2/s, to add to the periodic-box D (cubic box of edge ``box_length_A``)."""
    if not (box_length_A > 0 and viscosity_Pa_s > 0 and temperature_K > 0):
        raise ValueError('box_length_A, viscosity_Pa_s and temperature_K must be positive, got '
                         f'{box_length_A!r}, {viscosity_Pa_s!r}, {temperature_K!r}.')
    kt_joule = units._k * temperature_K
    correction_m2_per_s = kt_joule * YEH_HUMMER_XI / (6 * np.pi * viscosity_Pa_s * box_length_A * 1e-10)
    return float(correction_m2_per_s * 1e4)


def experimental_viscosity_Pa_s(n_units: int, temperature_K: float) -> float | None:
    """Experimental eta of the n-mer at ``temperature_K`` (ln eta linear in 1/T through the two tabulated points;
    within 5 K of them), or None where there is no measurement."""
    if n_units not in EXPERIMENTAL_VISCOSITY_MPA_S:
        return None
    low, high = _VISCOSITY_TEMPERATURES_K
    if not low - 5.0 <= temperature_K <= high + 5.0:
        return None
    first, second = np.log(EXPERIMENTAL_VISCOSITY_MPA_S[n_units])
    slope = (second - first) / (1.0 / high - 1.0 / low)
    return float(np.exp(first + slope * (1.0 / temperature_K - 1.0 / low)) * 1e-3)


def diffusion_too_short(msd_at_fit_end_A2: float, radius_of_gyration_A: float) -> bool:
    """True when the molecules moved less than their own size, (2 R_g)^2, by the end of the fit window."""
    return bool(msd_at_fit_end_A2 < (2.0 * radius_of_gyration_A) ** 2)


def plot_msd(lag_times_fs: np.ndarray, msd_A2: np.ndarray, result: DiffusionResult, path: Path | str) -> Path:
    """MSD against lag time with the fitted line over its window."""
    figure, axes = new_axes('lag time / ps', 'MSD / Å$^2$')
    lags_ps = np.asarray(lag_times_fs) / 1000.0
    axes.plot(lags_ps, msd_A2, color='0.3', lw=1.0, label='centres of mass')
    fit_fs = np.linspace(result.fit_start_fs, result.fit_end_fs, 2)
    axes.plot(fit_fs / 1000.0, result.intercept_A2 + result.slope_A2_per_fs * fit_fs, color='C3', lw=2,
              label=f'D = {result.diffusivity_cm2_per_s:.3e} cm$^2$/s')
    axes.legend(frameon=False)
    return save(figure, path)
