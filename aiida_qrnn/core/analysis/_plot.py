"""Figures without pyplot: an Agg canvas per figure, so plotting works headless and leaks no global state.

matplotlib is imported when a figure is made, not with the analyses (the analysis job draws nothing)."""

from __future__ import annotations

import typing as t
from pathlib import Path

if t.TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_axes(xlabel: str, ylabel: str, title: str | None = None):
    """A fresh figure with one labelled axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.0, 3.6), layout='constrained')
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    if title:
        axes.set_title(title)
    return figure, axes


def save(figure: Figure, path: Path | str) -> Path:
    """Write ``figure`` as PNG to ``path`` and return the path."""
    path = Path(path)
    figure.savefig(path, dpi=150, format='png')
    return path
