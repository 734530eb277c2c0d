"""Experimental data of the second families (propylene glycol, glyme): every value has a source, families are the
polymer definitions' names, and values without a stated temperature are never interpolated."""

from __future__ import annotations

import numpy as np
import pytest

from aiida_qrnn.core.analysis.experimental import experimental, load_experimental_data
from aiida_qrnn.core.polymer import POLYMERS


def test_every_record_names_a_known_source_family_and_oligomer():
    data = load_experimental_data()
    oligomers = {(entry['family'], entry['n_units']) for entry in data['oligomers']}
    for table in ('density_g_cm3', 'heat_capacity_J_mol_K'):
        for record in data[table]:
            assert record['source'] in data['sources'], record
            assert (record['family'], record['n_units']) in oligomers, record
    assert {family for family, _ in oligomers} <= set(POLYMERS)


def test_propylene_glycol_and_glyme_values():
    density = experimental('density', 298.15, source='perry_105', family='propylene glycol')
    assert density.n_units.tolist() == [1]
    np.testing.assert_allclose(density.values, [1.03257], rtol=1e-12)
    # per gram: 368.68 J/(mol K) / 178.226 g/mol for triglyme at 298.15 K
    heat_capacity = experimental('heat_capacity', 298.15, source='zabransky_cp_spline', family='glyme')
    assert heat_capacity.n_units.tolist() == [1, 3, 4]
    np.testing.assert_allclose(heat_capacity.values, [193.29 / 90.121, 368.68 / 178.226, 458.66 / 222.279])
    # two independent sources agree on PG's and monoglyme's cp within 0.5 %
    for family in ('propylene glycol', 'glyme'):
        crc = experimental('heat_capacity', 298.15, source='crc_thermo', family=family).values[0]
        spline = experimental('heat_capacity', 298.15, source='zabransky_cp_spline', family=family).values[0]
        assert crc == pytest.approx(spline, rel=5e-3)


def test_values_without_a_stated_temperature_are_refused():
    with pytest.raises(ValueError, match=r"density of glyme from source 'crc_constants' at a stated temperature"):
        experimental('density', 300.0, source='crc_constants', family='glyme')
    with pytest.raises(ValueError, match=r"family 'nylon'; known: \['ethylene glycol', 'glyme'"):
        experimental('density', 300.0, family='nylon')
