"""The report's own figures (PNG, sizes follow the panel layout) and its Markdown tables."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

from aiida_qrnn.core.analysis.report_figures import (
    format_number,
    markdown_table,
    plot_chain_length_series,
    plot_distribution_panels,
    plot_rho_f_histograms,
)

DPI = 150  # core.analysis._plot.save


def _pixels(path) -> tuple[int, int]:
    """(height, width) of a PNG."""
    assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    return imread(path).shape[:2]


def test_chain_length_series_with_and_without_log_axis(tmp_path):
    series = {'QRNN': ([1, 2, 3], [2e-6, 1e-6, 5e-7], [1e-7, 1e-7, 5e-8]), 'OPLS-AA': ([1, 2], [1e-6, 3e-7], [0, 0])}
    linear = plot_chain_length_series(series, tmp_path / 'd.png', ylabel='D (cm$^2$/s)')
    logarithmic = plot_chain_length_series(series, tmp_path / 'd_log.png', ylabel='D', log_y=True, note='no data')
    assert _pixels(linear) == _pixels(logarithmic) == (int(3.6 * DPI), int(5.0 * DPI))
    assert linear.read_bytes() != logarithmic.read_bytes()
    with pytest.raises(ValueError, match='no series'):
        plot_chain_length_series({}, tmp_path / 'empty.png', ylabel='D')


def test_distribution_panels_one_per_chain_length_three_per_row(tmp_path):
    x = np.linspace(-180, 180, 73)
    curve = (x, np.exp(-((x - 60) / 20) ** 2), 0.1 * np.ones_like(x))
    one = plot_distribution_panels({'n = 1': {'QRNN': curve}}, tmp_path / 'one.png', xlabel='angle', ylabel='p')
    four = plot_distribution_panels(
        {f'n = {n}': {'QRNN': curve, 'OPLS-AA': (x, curve[1] * 0.5, None)} for n in (1, 2, 3, 4)},
        tmp_path / 'four.png', xlabel='angle', ylabel='p')
    assert _pixels(one) == (int(3.4 * DPI), int(4.2 * DPI))
    assert _pixels(four) == (int(2 * 3.4 * DPI), int(3 * 4.2 * DPI))  # 2 rows of 3, the sixth panel hidden
    with pytest.raises(ValueError, match='no distribution'):
        plot_distribution_panels({'n = 1': {}}, tmp_path / 'none.png', xlabel='x', ylabel='y')


def test_rho_f_histograms_need_a_positive_value(tmp_path):
    rng = np.random.default_rng(0)
    path = plot_rho_f_histograms({'round 1': rng.lognormal(size=200), 'round 2': np.r_[rng.lognormal(-2, size=50), 0]},
                                 tmp_path / 'rho.png')
    assert _pixels(path) == (int(3.6 * DPI), int(5.0 * DPI))
    single = plot_rho_f_histograms({'round 1': np.full(5, 0.3)}, tmp_path / 'single.png')  # one value: a decade
    assert single.is_file()
    with pytest.raises(ValueError, match='no positive rho_f'):
        plot_rho_f_histograms({'round 1': np.zeros(3)}, tmp_path / 'zero.png')


def test_markdown_table_and_number_format():
    table = markdown_table(['name', 'value', 'note'], [['density', 1.1234567, None], ['a|b', np.float64(np.nan), 3]])
    assert table.splitlines() == [
        '| name | value | note |',
        '|---|---|---|',
        '| density | 1.123 | – |',
        '| a\\|b | – | 3 |',
    ]
    assert format_number(2.5e-06) == '2.5e-06' and format_number(12345.0, digits=3) == '1.23e+04'
    assert format_number('text') == 'text' and format_number(7) == '7'
    with pytest.raises(ValueError, match='a row has 2 cells, the header 3'):
        markdown_table(['a', 'b', 'c'], [[1, 2]])
