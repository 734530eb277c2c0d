"""Figures without pyplot: an Agg canvas per figure, so plotting works headless and leaks no global state."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def new_axes(xlabel: str, ylabel: str, title: str | None = None):
    """A fresh figure with one labelled axes."""
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
