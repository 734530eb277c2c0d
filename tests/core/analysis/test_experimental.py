"""Experimental EG..tetraEG data: the file's values come back, per gram, interpolated in temperature."""

from __future__ import annotations

import numpy as np
import pytest

from aiida_qrnn.core.analysis.experimental import experimental, plot_property_vs_chain_length


def test_tabulated_values_and_units():
    density = experimental('density', 298.15)
    assert list(density.n_units) == [1, 2, 3, 4]
    np.testing.assert_allclose(density.values, [1.1101, 1.1147, 1.1194, 1.1223], rtol=1e-12)
    # science.md 5.1 quotes the per-gram values 2.403, 2.302, 2.209, 2.165 J/(g K).
    np.testing.assert_allclose(experimental('heat_capacity', 298.15).values, [2.403, 2.302, 2.209, 2.165], atol=1e-3)


def test_interpolation_between_the_tabulated_temperatures():
    at_300 = experimental('density', 300.0).values
    low, high = experimental('density', 298.15).values, experimental('density', 303.15).values
    np.testing.assert_allclose(at_300, low + (high - low) * (300.0 - 298.15) / 5.0, rtol=1e-12)
    assert experimental('heat_capacity', 300.0, source='zabransky').n_units.tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match='not near 400'):
        experimental('density', 400.0)
    with pytest.raises(ValueError, match='viscosity'):
        experimental('viscosity')


def test_plot_with_two_simulated_series(tmp_path):
    path = plot_property_vs_chain_length(
        'density', {'QRNN': ([1, 2], [1.10, 1.11], [0.01, 0.01]), 'OPLS-AA': ([1, 2], [1.08, 1.09], [0.0, 0.02])},
        tmp_path / 'density.png',
    )
    assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
