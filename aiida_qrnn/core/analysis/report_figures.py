"""Figures and tables of ``aiida-qrnn report`` that the other plot helpers do not already draw (no AiiDA here).

The report reuses :func:`~aiida_qrnn.core.training.plots.plot_parity`,
:func:`~aiida_qrnn.core.selection.plot_error_vs_rho_f`, :func:`~aiida_qrnn.core.analysis.scans.plot_scan` and
:func:`~aiida_qrnn.core.analysis.experimental.plot_property_vs_chain_length` as they are; this module adds what
they lack: properties without experimental data against chain length (self-diffusivity, mean R_g), binned
distributions of several methods side by side per chain length (the paper's Fig. 12), the ρ^f distribution of each
active-learning round, and plain-text tables.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ._plot import new_axes, save

__all__ = ('Curve', 'format_number', 'markdown_table', 'plot_chain_length_series', 'plot_distribution_panels',
           'plot_rho_f_histograms')

#: One distribution of one method: x, mean y and the standard deviation of y over replicas (or ``None``).
Curve = tuple[np.ndarray, np.ndarray, np.ndarray | None]
#: Panels per row of :func:`plot_distribution_panels`.
PANELS_PER_ROW = 3


def plot_chain_length_series(
    series: Mapping[str, tuple[Sequence[int], Sequence[float], Sequence[float]]], path: Path | str, *,
    ylabel: str, log_y: bool = False, note: str | None = None,
) -> Path:
    """A property against chain length, one line with error bars per method (``series``: label → (n_units,
    values, std over replicas)); for properties with no experimental data in ``experimental.yaml``. ``note`` is
    written in the corner (e.g. 'no experimental data')."""
    if not series:
        raise ValueError('plot_chain_length_series: no series to plot.')
    figure, axes = new_axes('repeat units n in HO-(CH$_2$CH$_2$O)$_n$-H', ylabel)
    for label, (n_units, values, errors) in series.items():
        axes.errorbar(n_units, values, yerr=errors, marker='o', capsize=3, label=label)
    if log_y:
        axes.set_yscale('log')
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # chain lengths are whole numbers
    if note:
        axes.text(0.02, 0.02, note, transform=axes.transAxes, fontsize=7, color='0.4')
    axes.legend(fontsize=8, framealpha=0.6)
    return save(figure, path)


def plot_distribution_panels(
    panels: Mapping[str, Mapping[str, Curve]], path: Path | str, *, xlabel: str, ylabel: str,
) -> Path:
    """One panel per key of ``panels`` (a chain length), one line per method with a ±std band over replicas.

    ``panels``: panel title → method label → :data:`Curve`.
    """
    if not panels or not any(panels.values()):
        raise ValueError('plot_distribution_panels: no distribution to plot.')
    n_columns = min(PANELS_PER_ROW, len(panels))
    n_rows = math.ceil(len(panels) / n_columns)
    figure = Figure(figsize=(4.2 * n_columns, 3.4 * n_rows), layout='constrained')
    FigureCanvasAgg(figure)
    axes = figure.subplots(n_rows, n_columns, squeeze=False).ravel()
    for axis, (title, curves) in zip(axes, panels.items(), strict=False):
        for label, (x, y, spread) in curves.items():
            x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
            line, = axis.plot(x, y, label=label)
            if spread is not None:
                spread = np.asarray(spread, dtype=float)
                axis.fill_between(x, y - spread, y + spread, color=line.get_color(), alpha=0.25, linewidth=0)
        axis.set_title(title)
        axis.set_xlabel(xlabel)
        axis.set_ylabel(ylabel)
        axis.legend(fontsize=8)
    for axis in axes[len(panels):]:
        axis.set_visible(False)
    return save(figure, path)


def plot_rho_f_histograms(rounds: Mapping[str, np.ndarray], path: Path | str, *, bins: int | None = None) -> Path:
    """The ρ^f distribution of the candidates of each round (label → ρ^f per cluster), on shared logarithmic bins
    (ρ^f spans decades; default √N bins per decade for the largest round N, 5 to 60 in all); non-positive values,
    which a log axis cannot show, are counted in the legend."""
    positive = {label: np.asarray(values, dtype=float) for label, values in rounds.items()}
    pooled = np.concatenate([values[values > 0] for values in positive.values()]) if positive else np.zeros(0)
    if pooled.size == 0:
        raise ValueError('plot_rho_f_histograms: no positive rho_f value to plot.')
    low, high = pooled.min(), pooled.max()
    if bins is None:
        decades = max(1.0, np.log10(high / low))
        bins = int(np.clip(np.sqrt(max(values.size for values in positive.values())) * decades, 5, 60))
    edges = np.geomspace(low, high * (1.0 + 1e-9) if high > low else low * 10.0, bins + 1)
    figure, axes = new_axes('ρ$^f$ / (eV/Å)$^2$', 'candidate clusters', 'committee disagreement per round')
    for label, values in positive.items():
        dropped = int(np.sum(values <= 0))
        suffix = f', {dropped} ≤ 0 not shown' if dropped else ''
        axes.hist(values[values > 0], bins=edges, histtype='step', linewidth=1.5,
                  label=f'{label} ({values.size} clusters{suffix})')
    axes.set_xscale('log')
    axes.legend(fontsize=8)
    return save(figure, path)


def format_number(value: object, digits: int = 4) -> str:
    """``value`` for a table cell: floats with ``digits`` significant digits, ``None``/NaN as '–'."""
    if value is None:
        return '–'
    if isinstance(value, float | np.floating):
        return '–' if not np.isfinite(value) else f'{float(value):.{digits}g}'
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table; cells through :func:`format_number`, '|' escaped."""
    def cell(value: object) -> str:
        return format_number(value).replace('|', '\\|').replace('\n', ' ')

    lines = ['| ' + ' | '.join(cell(header) for header in headers) + ' |',
             '|' + '|'.join('---' for _ in headers) + '|']
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f'markdown_table: a row has {len(row)} cells, the header {len(headers)}.')
        lines.append('| ' + ' | '.join(cell(value) for value in row) + ' |')
    return '\n'.join(lines)
