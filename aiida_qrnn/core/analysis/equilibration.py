"""Where a run is equilibrated, how correlated its samples are, and whether it is long enough to mean anything.

Equilibration is detected from the data (Chodera, J. Chem. Theory Comput. 12, 1799 (2016), "A simple method for
automated equilibration detection in molecular simulations"): the production window starts at the t0 that
maximises the number of effectively uncorrelated samples N_eff = (N - t0) / g(t0), g the statistical inefficiency
(g = 1 + 2 tau_int, Flyvbjerg and Petersen, J. Chem. Phys. 91, 461 (1989)); g is pymbar 4's
``timeseries.statistical_inefficiency``, the reference implementation of that paper. The scan is pymbar's
``detect_equilibration`` with one change: t0 is sought in the first half of the run only. Scanning to the end lets
a short, strongly correlated run pick a t0 near its end, where a handful of samples look uncorrelated (measured:
27 of 600 samples of an AR(1) series with g = 199 gave N_eff = 7.5); a run that has not equilibrated by its half
is too short anyway. The standard error of a mean is std / sqrt(N_eff).

The paper's own rule (average over the last 800 ps of 1 ns) is kept as a minimum: the window never starts before
``min_discard_fraction`` of the run; the data can only push it later. A value whose window holds fewer than
``min_independent_samples`` uncorrelated samples is flagged ``too_short``: the run is too short for the value, or
its error bar, to mean anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_MIN_DISCARD_FRACTION = 0.2  # the paper averages over the last 800 ps of 1 ns
#: Below 10 uncorrelated samples the error bar itself is unreliable (relative error of a standard deviation from
#: N_eff samples ~ 1/sqrt(2 (N_eff - 1)): 24 % at 10) and g is underestimated (a run shorter than its correlation
#: time cannot show it): such values are flagged.
DEFAULT_MIN_INDEPENDENT_SAMPLES = 10.0
#: Trial origins of the equilibration scan over the first half of the run: each costs one O(N) statistical
#: inefficiency, and a 1 ns log of 20 000 rows needs no finer t0 than 1/200 of the run.
EQUILIBRATION_TRIAL_ORIGINS = 100


@dataclass(frozen=True)
class ProductionWindow:
    """The production part of a series: first sample ``start``, ``n_samples`` from there, ``statistical_inefficiency``
    g of that part, ``n_independent`` = n_samples / g, ``detected_start`` the t0 pymbar found on its own."""

    start: int
    n_samples: int
    statistical_inefficiency: float
    n_independent: float
    detected_start: int
    too_short: bool


def statistical_inefficiency(values: np.ndarray) -> float:
    """g >= 1 of a series (1 for uncorrelated samples); a constant series counts as uncorrelated."""
    from pymbar import timeseries
    from pymbar.utils import ParameterError

    values = np.asarray(values, dtype=np.float64)
    if len(values) < 3 or np.ptp(values) == 0.0:
        return 1.0
    try:
        return max(1.0, float(timeseries.statistical_inefficiency(values, fast=False)))
    except ParameterError:
        return 1.0


def production_window(values: np.ndarray, *, min_discard_fraction: float = DEFAULT_MIN_DISCARD_FRACTION,
                      min_independent_samples: float = DEFAULT_MIN_INDEPENDENT_SAMPLES) -> ProductionWindow:
    """The production window of ``values`` (a time series, oldest first): the later of the detected equilibration
    point and ``min_discard_fraction`` of the run, with its statistical inefficiency."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) < 4:
        raise ValueError(f'equilibration detection needs a 1-d series of at least 4 samples, got shape {values.shape}.')
    if not np.all(np.isfinite(values)):
        raise ValueError('the series has non-finite values (NaN or inf): the run did not log this quantity.')
    if not 0.0 <= min_discard_fraction < 1.0:
        raise ValueError(f'min_discard_fraction must be in [0, 1), got {min_discard_fraction!r}.')
    origins = range(0, len(values) // 2 + 1, max(1, len(values) // (2 * EQUILIBRATION_TRIAL_ORIGINS)))
    n_effective = [(len(values) - origin) / statistical_inefficiency(values[origin:]) for origin in origins]
    detected = origins[int(np.argmax(n_effective))]
    start = max(detected, round(min_discard_fraction * len(values)))
    production = values[start:]
    inefficiency = statistical_inefficiency(production)
    n_independent = len(production) / inefficiency
    return ProductionWindow(start=start, n_samples=len(production), statistical_inefficiency=inefficiency,
                            n_independent=n_independent, detected_start=detected,
                            too_short=bool(n_independent < min_independent_samples))


def mean_and_error(values: np.ndarray, inefficiency: float) -> tuple[float, float]:
    """Mean and its standard error std / sqrt(N / g) for a series of statistical inefficiency g."""
    values = np.asarray(values, dtype=np.float64)
    n_independent = len(values) / max(inefficiency, 1.0)
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(n_independent)) if len(values) > 1 else 0.0
