"""Combining replicas: mean and sample standard deviation (the paper's error bars), distributions on one grid."""

from __future__ import annotations

import numpy as np
import pytest

from aiida_qrnn.core.analysis.properties import SCALAR_UNITS, combine_distributions, combine_replicas


def test_mean_and_sample_standard_deviation_over_replicas():
    replicas = [{name: value for name in SCALAR_UNITS} for value in (1.0, 2.0, 4.0)]
    combined = combine_replicas(replicas)
    for name, unit in SCALAR_UNITS.items():
        assert combined[name]['value'] == pytest.approx(7.0 / 3.0)
        assert combined[name]['uncertainty'] == pytest.approx(np.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2
                                                                       + (4 - 7 / 3) ** 2) / 2))
        assert combined[name]['unit'] == unit and combined[name]['n_replicas'] == 3
    assert combine_replicas(replicas[:1])['density']['uncertainty'] == 0.0


def test_distributions_on_the_union_grid():
    first = {'x': np.array([0.0, 1.0, 2.0]), 'p': np.array([0.2, 0.6, 0.2])}
    second = {'x': np.array([1.0, 2.0, 3.0]), 'p': np.array([0.4, 0.4, 0.2])}
    combined = combine_distributions([first, second], 'x', 'p')
    np.testing.assert_allclose(combined['x'], [0.0, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(combined['p'], [0.1, 0.5, 0.3, 0.1])  # zero outside a replica's range
    np.testing.assert_allclose(combined['p_std'], np.std([[0.2, 0.6, 0.2, 0.0], [0.0, 0.4, 0.4, 0.2]], axis=0,
                                                         ddof=1))
