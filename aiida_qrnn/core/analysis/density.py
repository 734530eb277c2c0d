"""Mass density of an NPT run with a block-averaged uncertainty.

rho = M / V, M the total mass; 1 amu/Å^3 = 1.66054 g/cm^3. The paper averages over the last 800 ps of 1 ns
(``discard_fraction=0.2``) and starts NVT from the NPT frame whose density is closest to that mean
(:func:`frame_closest_to_mean`). :func:`equilibrated_density` (the property protocol) keeps that window as a
minimum, lets the data push it later (:mod:`.equilibration`) and gives the error with the statistical inefficiency.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..units import AMU_PER_CUBIC_ANGSTROM_TO_G_PER_CM3
from ._plot import new_axes, save
from .equilibration import (
    DEFAULT_MIN_DISCARD_FRACTION,
    DEFAULT_MIN_INDEPENDENT_SAMPLES,
    mean_and_error,
    production_window,
)
from .statistics import DEFAULT_DISCARD_FRACTION, DEFAULT_N_BLOCKS, block_average, production

if t.TYPE_CHECKING:
    from .frames import FrameReader


@dataclass(frozen=True)
class DensityResult:
    """Mean of the last ``n_samples``; ``n_independent`` and ``too_short`` when the window came from the data."""

    mean_g_cm3: float
    standard_error_g_cm3: float
    n_samples: int
    statistical_inefficiency: float = float('nan')
    n_independent: float = float('nan')
    too_short: bool = False


def density_g_cm3(total_mass_amu: float, volumes_A3: np.ndarray) -> np.ndarray:
    """Densities in g/cm^3 of a mass in cells of the given volumes."""
    return total_mass_amu / np.asarray(volumes_A3, dtype=np.float64) * AMU_PER_CUBIC_ANGSTROM_TO_G_PER_CM3


def average_density(volumes_A3: np.ndarray, total_mass_amu: float, *,
                    discard_fraction: float = DEFAULT_DISCARD_FRACTION,
                    n_blocks: int = DEFAULT_N_BLOCKS) -> DensityResult:
    """Mean density of the production part of a run, with its block standard error."""
    densities = production(density_g_cm3(total_mass_amu, volumes_A3), discard_fraction)
    mean, error = block_average(densities, n_blocks)
    return DensityResult(mean_g_cm3=mean, standard_error_g_cm3=error, n_samples=len(densities))


def equilibrated_density(volumes_A3: np.ndarray, total_mass_amu: float, *,
                         min_discard_fraction: float = DEFAULT_MIN_DISCARD_FRACTION,
                         min_independent_samples: float = DEFAULT_MIN_INDEPENDENT_SAMPLES) -> DensityResult:
    """Mean density over the production window detected in the density series, error std / sqrt(N / g)."""
    densities = density_g_cm3(total_mass_amu, volumes_A3)
    window = production_window(densities, min_discard_fraction=min_discard_fraction,
                               min_independent_samples=min_independent_samples)
    mean, error = mean_and_error(densities[window.start:], window.statistical_inefficiency)
    return DensityResult(mean_g_cm3=mean, standard_error_g_cm3=error, n_samples=window.n_samples,
                         statistical_inefficiency=window.statistical_inefficiency,
                         n_independent=window.n_independent, too_short=window.too_short)


def frame_closest_to_mean(frame_densities_g_cm3: np.ndarray, mean_g_cm3: float) -> int:
    """Index of the frame whose density is closest to ``mean_g_cm3`` (the NVT start in the paper)."""
    return int(np.argmin(np.abs(np.asarray(frame_densities_g_cm3) - mean_g_cm3)))


def mean_density_frame(volumes_A3: np.ndarray, log_steps: np.ndarray, trajectory: FrameReader, *,
                       min_discard_fraction: float = DEFAULT_MIN_DISCARD_FRACTION,
                       min_independent_samples: float = DEFAULT_MIN_INDEPENDENT_SAMPLES) -> tuple[int, DensityResult]:
    """The frame of an NPT ``trajectory`` whose density is closest to the mean density of the production window
    detected in the log (``volumes_A3`` at ``log_steps``), searched within that window (all frames if it holds none),
    and that mean. Only the frames' cells are used."""
    total_mass = float(trajectory.masses.sum())
    density = equilibrated_density(volumes_A3, total_mass, min_discard_fraction=min_discard_fraction,
                                   min_independent_samples=min_independent_samples)
    first_step = log_steps[len(log_steps) - density.n_samples]
    candidates = np.flatnonzero(trajectory.steps >= first_step)
    if len(candidates) == 0:
        candidates = np.arange(trajectory.n_frames)
    frame_densities = density_g_cm3(total_mass, np.abs(np.linalg.det(trajectory.cells[candidates])))
    return int(candidates[frame_closest_to_mean(frame_densities, density.mean_g_cm3)]), density


def plot_density(times_fs: np.ndarray, densities_g_cm3: np.ndarray, result: DensityResult, path: Path | str) -> Path:
    """Density against time with the production mean and its uncertainty band."""
    figure, axes = new_axes('time / ps', 'density / g cm$^{-3}$')
    times_ps = np.asarray(times_fs) / 1000.0
    axes.plot(times_ps, densities_g_cm3, lw=0.8, color='0.4')
    start = times_ps[len(times_ps) - result.n_samples]
    axes.axvspan(start, times_ps[-1], color='C0', alpha=0.08, label='production')
    axes.axhline(result.mean_g_cm3, color='C0',
                 label=f'{result.mean_g_cm3:.4f} ± {result.standard_error_g_cm3:.4f} g/cm$^3$')
    axes.legend(frameon=False)
    return save(figure, path)
