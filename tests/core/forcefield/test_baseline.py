"""Which classical baseline a polymer gets: OPLS-AA for ethylene glycol, GAFF2 (real AmberTools) for the others."""

from __future__ import annotations

import numpy as np
import pytest

from aiida_qrnn.core.forcefield.baseline import baseline_name, polymer_system
from aiida_qrnn.core.forcefield.md import cutoff_for_cell
from aiida_qrnn.core.polymer import ETHYLENE_GLYCOL, GLYME, PROPYLENE_GLYCOL
from aiida_qrnn.core.structures import pack_cell


def test_ethylene_glycol_keeps_opls_aa(tmp_path):
    cell = pack_cell(1, 6, density_g_cm3=0.4, seed=0)
    assert baseline_name(ETHYLENE_GLYCOL) == 'OPLS-AA'
    assert polymer_system(cell, ETHYLENE_GLYCOL, folder=tmp_path, cutoff_nm=0.5) is None
    assert not any(tmp_path.iterdir())


def test_glyme_cell_gets_a_gaff2_system_of_its_atoms(tmp_path):
    cell = pack_cell(2, 6, density_g_cm3=0.4, seed=0, polymer=GLYME)
    system = polymer_system(cell, GLYME, folder=tmp_path, cutoff_nm=cutoff_for_cell(cell))
    assert baseline_name(GLYME) == 'GAFF2'
    assert system.getNumParticles() == len(cell)
    masses = np.array([system.getParticleMass(i)._value for i in range(len(cell))])
    assert np.allclose(masses, cell.get_masses(), atol=1e-2)
    assert (tmp_path / 'cell' / 'cell.prmtop').is_file()


def test_a_cell_of_another_polymer_is_named(tmp_path):
    cell = pack_cell(1, 6, density_g_cm3=0.4, seed=0)  # ethylene glycol, 10 atoms per molecule
    with pytest.raises(ValueError, match='not made of propylene glycol chains'):
        polymer_system(cell, PROPYLENE_GLYCOL, folder=tmp_path, cutoff_nm=0.5)
