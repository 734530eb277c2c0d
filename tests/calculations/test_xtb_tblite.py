"""GFN2-xTB charges from the xtb program (through ``XtbCalculation``) equal tblite's in-process ones to 1e-4 e."""

from __future__ import annotations

import numpy as np
from aiida.engine import run_get_node
from tblite.interface import Calculator

from aiida_qrnn.calculations.xtb import XtbCalculation
from aiida_qrnn.core.units import BOHR_TO_ANGSTROM, HARTREE_TO_EV
from aiida_qrnn.data.cluster_set import ClusterSetData
from aiida_qrnn.testing.structures import ethylene_glycol, hydronium, make_water_clusters


def test_xtb_and_tblite_charges_agree(xtb_code):
    images = [make_water_clusters(2)[1], ethylene_glycol(), hydronium()]
    results, node = run_get_node(XtbCalculation, code=xtb_code, clusters=ClusterSetData.from_atoms(images))
    assert node.exit_status == 0, node.exit_message
    arrays = results['clusters'].get_arrays()
    for index, atoms in enumerate(images):
        calculator = Calculator(
            'GFN2-xTB', atoms.numbers, atoms.positions / BOHR_TO_ANGSTROM, charge=atoms.info.get('total_charge', 0),
        )
        calculator.set('verbosity', 0)
        result = calculator.singlepoint()
        rows = slice(arrays.offsets[index], arrays.offsets[index + 1])
        np.testing.assert_allclose(arrays.labels['charges'][rows], result.get('charges'), atol=1e-4)
        assert abs(arrays.labels['energy'][index] - result.get('energy') * HARTREE_TO_EV) < 1e-3
