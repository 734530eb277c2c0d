"""Isobaric heat capacity from enthalpy fluctuations in NPT.

    c_p = (<H^2> - <H>^2) / (k_B T^2 M),   H = E_pot + E_kin + p V

with T the thermostat temperature and M the total mass. This is eq. 3 of the paper, which writes the total
energy E; at constant pressure it is the enthalpy that fluctuates (Allen and Tildesley, Computer Simulation of
Liquids, 2nd ed., eq. 2.80), which is what ``md_log.csv`` logs as ``enthalpy_eV`` (with the external p).
Classical c_p over-estimates experiment for stiff X-H modes; :mod:`.quantum_correction` gives the harmonic
correction from the vibrational density of states. :func:`heat_capacity_from_enthalpy` takes a fixed production
window and block errors; :func:`equilibrated_heat_capacity` (the property protocol) detects the window from the
data (:mod:`.equilibration`) and takes the error of the mean squared deviation with its statistical inefficiency.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import units

from ._plot import new_axes, save
from .equilibration import (
    DEFAULT_MIN_DISCARD_FRACTION,
    DEFAULT_MIN_INDEPENDENT_SAMPLES,
    mean_and_error,
    production_window,
    statistical_inefficiency,
)
from .statistics import DEFAULT_DISCARD_FRACTION, DEFAULT_N_BLOCKS, blocks, production

EV_PER_AMU_TO_J_PER_G = units._e / (units._amu * 1e3)  # 1 eV/amu in J/g, CODATA via ase.units


@dataclass(frozen=True)
class HeatCapacityResult:
    """c_p of the last ``n_samples``; ``n_independent`` and ``too_short`` when the window came from the data."""

    cp_J_per_gK: float
    standard_error_J_per_gK: float
    n_samples: int
    statistical_inefficiency: float = float('nan')
    n_independent: float = float('nan')
    too_short: bool = False


def heat_capacity_from_enthalpy(enthalpy_eV: np.ndarray, temperature_K: float, total_mass_amu: float, *,
                                discard_fraction: float = DEFAULT_DISCARD_FRACTION,
                                n_blocks: int = DEFAULT_N_BLOCKS) -> HeatCapacityResult:
    """c_p in J/(g K) of the production part of an NPT enthalpy series."""
    if not temperature_K > 0 or not total_mass_amu > 0:
        raise ValueError(f'temperature_K and total_mass_amu must be positive, got {temperature_K!r}, '
                         f'{total_mass_amu!r}.')
    enthalpy = production(np.asarray(enthalpy_eV, dtype=np.float64), discard_fraction)

    def cp(series: np.ndarray) -> float:
        return float(series.var(ddof=1) / (units.kB * temperature_K**2) / total_mass_amu * EV_PER_AMU_TO_J_PER_G)

    per_block = np.array([cp(block) for block in blocks(enthalpy, n_blocks)])
    return HeatCapacityResult(cp_J_per_gK=cp(enthalpy),
                              standard_error_J_per_gK=float(per_block.std(ddof=1) / np.sqrt(n_blocks)),
                              n_samples=len(enthalpy))


def equilibrated_heat_capacity(enthalpy_eV: np.ndarray, temperature_K: float, total_mass_amu: float, *,
                               min_discard_fraction: float = DEFAULT_MIN_DISCARD_FRACTION,
                               min_independent_samples: float = DEFAULT_MIN_INDEPENDENT_SAMPLES,
                               ) -> HeatCapacityResult:
    """c_p in J/(g K) over the production window detected in the enthalpy series; its error is that of the mean of
    (H - <H>)^2 with that series' own statistical inefficiency."""
    if not temperature_K > 0 or not total_mass_amu > 0:
        raise ValueError(f'temperature_K and total_mass_amu must be positive, got {temperature_K!r}, '
                         f'{total_mass_amu!r}.')
    enthalpy = np.asarray(enthalpy_eV, dtype=np.float64)
    window = production_window(enthalpy, min_discard_fraction=min_discard_fraction,
                               min_independent_samples=min_independent_samples)
    production = enthalpy[window.start:]
    squared_deviation = (production - production.mean()) ** 2
    variance, error = mean_and_error(squared_deviation, statistical_inefficiency(squared_deviation))
    scale = 1.0 / (units.kB * temperature_K**2) / total_mass_amu * EV_PER_AMU_TO_J_PER_G
    return HeatCapacityResult(cp_J_per_gK=float(variance * scale), standard_error_J_per_gK=float(error * scale),
                              n_samples=window.n_samples, statistical_inefficiency=window.statistical_inefficiency,
                              n_independent=window.n_independent, too_short=window.too_short)


def plot_enthalpy_histogram(enthalpy_eV: np.ndarray, result: HeatCapacityResult, path: Path | str) -> Path:
    """Histogram of the production enthalpies, labelled with c_p."""
    figure, axes = new_axes('H - <H> / eV', 'probability density')
    enthalpy = np.asarray(enthalpy_eV)[-result.n_samples:]
    axes.hist(enthalpy - enthalpy.mean(), bins=50, density=True, color='C1', alpha=0.7,
              label=f'c$_p$ = {result.cp_J_per_gK:.3f} ± {result.standard_error_J_per_gK:.3f} J g$^{{-1}}$ K$^{{-1}}$')
    axes.legend(frameon=False)
    return save(figure, path)
