"""Pair and torsion scans with GFN2-xTB (real xtb) as the reference engine, OPLS-AA and a small QRNN."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_qrnn.core.structures import pack_cell
from aiida_qrnn.testing.models import small_qrnn_node
from aiida_qrnn.workchains.scans import PairScanWorkChain, TorsionScanWorkChain


def test_pair_scan_of_two_ethylene_glycols(xtb_code):
    frame = orm.StructureData(ase=pack_cell(1, 10, density_g_cm3=0.9, seed=1))
    results, node = run_get_node(
        PairScanWorkChain, structure=frame, parameters=orm.Dict({'n_points': 6}), model=small_qrnn_node(),
        reference={'engine': orm.Str('xtb'), 'code': xtb_code},
    )
    assert node.is_finished_ok, node.exit_message
    curves = results['curves']
    distances = curves.get_array('centre_distance_A')
    assert len(distances) == 6 and distances[-1] == pytest.approx(4.0 * distances[0])
    assert results['clusters'].level_of_theory == 'gfn2-xtb'
    assert set(results['clusters'].get_arrays().kind) == {'scan'}
    for name in ('reference', 'classical', 'qrnn'):
        curve = curves.get_array(f'{name}_relative_energy_eV')
        assert curve.shape == (6,) and curve[-1] == 0.0 and np.isfinite(curve).all()
    # Physics: squeezed to 0.75 of the nearest-neighbour distance the pair repels, with xtb and with OPLS-AA; at 3x
    # the interaction is nearly gone (|E(2.55 d) - E(3 d)| well below the squeezed value).
    for name in ('reference', 'classical'):
        curve = curves.get_array(f'{name}_relative_energy_eV')
        assert curve[0] > 0 and abs(curve[-2]) < 0.2 * curve[0]
    assert results['plot'].get_content(mode='rb')[:4] == b'\x89PNG'


@pytest.mark.slow  # ~30 s; the pair scan covers the shared steps in CI
def test_rigid_torsion_scan_of_diethylene_glycol(xtb_code):
    results, node = run_get_node(
        TorsionScanWorkChain, parameters=orm.Dict({'step_deg': 60.0}),
        reference={'engine': orm.Str('xtb'), 'code': xtb_code},
    )
    assert node.is_finished_ok, node.exit_message
    curves = results['curves']
    assert curves.get_array('dihedral_deg').tolist() == [-180.0, -120.0, -60.0, 0.0, 60.0, 120.0]
    for name in ('reference', 'classical'):
        curve = curves.get_array(f'{name}_relative_energy_eV')
        assert curve.min() == 0.0
        assert curve[3] == curve.max()  # eclipsed O-C-C-O (0 degrees) is the top of the barrier
    assert 'qrnn_relative_energy_eV' not in curves.get_arraynames()
