"""One settings base for both MD engines: shared fields, bounds and errors that name the parameter."""

from __future__ import annotations

import pytest

from aiida_qrnn.core.forcefield.md import MdProtocol
from aiida_qrnn.core.md.settings import MDSettings, MdSettingsBase


@pytest.mark.parametrize(('cls', 'kind'), [(MDSettings, 'MD setting'), (MdProtocol, 'classical-MD parameter')])
@pytest.mark.parametrize(('values', 'message'), [
    ({'temperature_K': -5.0}, 'temperature_K must be a positive number, got -5.0'),
    ({'temperature_K': True}, 'temperature_K must be a positive number, got True'),
    ({'timestep_fs': 0.0}, 'timestep_fs must be a positive number, got 0.0'),
    ({'timestep_fs': 500.0}, r'timestep_fs=500.0 fs is above 200 fs'),
    ({'temperature_K': 3e4}, r'temperature_K=30000.0 K is above 10000 K'),
    ({'pressure_bar': float('inf')}, 'pressure_bar must be a finite number'),
    ({'pressure_bar': 2e6}, r'pressure_bar=2000000.0 bar is beyond'),
    ({'temperature': 300}, r"unknown {kind}\(s\) \['temperature'\]"),
])
def test_both_engines_share_the_checks_and_name_the_parameter(cls, kind, values, message):
    assert issubclass(cls, MdSettingsBase)
    prefix = '' if message.startswith('unknown') else f'{kind} '
    with pytest.raises(ValueError, match=prefix + message.format(kind=kind)):
        cls.from_dict(values)


def test_engine_defaults_and_round_trip():
    """The shared fields keep each engine's default: the paper's 0.5 fs for QRNN MD, 1 fs for OPLS-AA."""
    assert (MDSettings().timestep_fs, MdProtocol().timestep_fs) == (0.5, 1.0)
    assert MDSettings().pressure_bar == MdProtocol().pressure_bar == pytest.approx(1.01325)
    for settings in (MDSettings(ensemble='npt', temperature_K=350.0), MdProtocol(seed=4, report_interval=10)):
        assert type(settings).from_dict(settings.to_dict()) == settings
    with pytest.raises(ValueError, match='classical-MD parameter report_interval must be a positive integer'):
        MdProtocol(report_interval=2.5)
