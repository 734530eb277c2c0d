"""RDF, radius of gyration and dihedrals against known shapes; every plot writes a PNG."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from aiida_qrnn.core.analysis import density, dihedrals, heat_capacity, msd, radius_of_gyration, rdf
from aiida_qrnn.core.structures import ethylene_glycol_oligomer


def test_rdf_of_ideal_gas_is_one():
    """Uniform random points (ideal gas) in a triclinic cell: g(r) = 1 within 5 % in every bin beyond 2 Å
    (about 3000 pairs per bin), for a selection against itself and against a disjoint one."""
    rng = np.random.default_rng(0)
    cell = np.array([[20.0, 0.0, 0.0], [3.0, 19.0, 0.0], [2.0, -1.0, 21.0]])
    fractional = rng.uniform(size=(40, 300, 3))
    positions = fractional @ cell  # (frames, atoms, 3)
    cells = np.repeat(cell[None], 40, axis=0)
    r, g_same = rdf.radial_distribution_function(positions, cells, np.arange(300), np.arange(300), r_max_A=9.0,
                                                 n_bins=30)
    _, g_cross = rdf.radial_distribution_function(positions, cells, np.arange(100), np.arange(100, 300),
                                                  r_max_A=9.0, n_bins=30)
    assert np.abs(g_same[r > 2.0] - 1.0).max() < 0.05
    assert np.abs(g_cross[r > 3.0] - 1.0).max() < 0.08
    assert abs(g_same[r > 2.0].mean() - 1.0) < 0.01


def test_rdf_of_fcc_lattice():
    """fcc: first peak at a/sqrt(2) holding 12 neighbours, nothing closer."""
    atoms = bulk('Cu', 'fcc', a=3.6, cubic=True).repeat(4)
    r, g = rdf.radial_distribution_function(atoms.positions[None], atoms.cell.array[None], np.arange(len(atoms)),
                                            np.arange(len(atoms)), r_max_A=3.0, n_bins=300)
    assert r[np.argmax(g)] == pytest.approx(3.6 / np.sqrt(2), abs=0.01)
    assert g[r < 2.5].max() == 0.0
    assert rdf.coordination_number(r, g, (len(atoms) - 1) / atoms.get_volume(), 3.0) == pytest.approx(12.0, rel=1e-9)


def test_rdf_rejects_too_long_range():
    atoms = bulk('Cu', 'fcc', a=3.6, cubic=True).repeat(2)
    with pytest.raises(ValueError, match='exceeds half the smallest cell width'):
        rdf.radial_distribution_function(atoms.positions[None], atoms.cell.array[None], [0], [1], r_max_A=4.0)


def test_radius_of_gyration_of_known_shapes():
    """Ring of radius R: R; rod of n equal masses at spacing b: b sqrt((n^2 - 1) / 12); rigid rotations and
    translations change nothing; per-molecule values pick the right atoms."""
    angles = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    ring = np.stack([2.5 * np.cos(angles), 2.5 * np.sin(angles), np.zeros(360)], axis=1)
    assert radius_of_gyration.radius_of_gyration(ring, np.ones(360)) == pytest.approx(2.5)
    rod = np.stack([1.5 * np.arange(10), np.zeros(10), np.zeros(10)], axis=1)
    expected = 1.5 * np.sqrt((10**2 - 1) / 12)
    rotation = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]
    frames = np.stack([rod, rod @ rotation.T + 7.0])
    np.testing.assert_allclose(radius_of_gyration.radius_of_gyration(frames, np.ones(10)), expected)
    both = np.concatenate([ring, rod])[None]
    values = radius_of_gyration.radii_of_gyration(both, np.ones(370), np.repeat([0, 1], [360, 10]))
    np.testing.assert_allclose(values, [[2.5, expected]])


def test_dihedral_angles_of_constructed_molecule():
    """Four atoms built at a set torsion give it back with sign, across the +-180 wrap; ASE agrees modulo 360."""
    atoms = ethylene_glycol_oligomer(1, seed=0)
    quadruplets = dihedrals.find_dihedrals(atoms)
    assert quadruplets.shape == (1, 4)
    o1, c1, c2, o2 = quadruplets[0]
    for target in (-179.0, -60.0, 0.0, 65.0, 180.0):
        atoms.set_dihedral(o1, c1, c2, o2, target)
        angle = dihedrals.dihedral_angles(atoms.positions, quadruplets)[0]
        assert np.cos(np.radians(angle - target)) == pytest.approx(1.0, abs=1e-12)
        assert angle % 360 == pytest.approx(atoms.get_dihedral(o1, c1, c2, o2) % 360, abs=1e-9)
    assert len(dihedrals.find_dihedrals(ethylene_glycol_oligomer(3, seed=0))) == 3


def test_dihedral_distribution_is_normalised():
    angles = np.random.default_rng(0).uniform(-180, 180, 10_000)
    centres, probability = dihedrals.dihedral_distribution(angles, bin_width_deg=10.0)
    assert len(centres) == 36 and (probability * 10.0).sum() == pytest.approx(1.0)


def test_plots_write_png(tmp_path):
    rng = np.random.default_rng(0)
    times = np.arange(500) * 10.0
    volumes = rng.normal(1000, 5, 500)
    density_result = density.average_density(volumes, 602.214)
    enthalpy = rng.normal(0, 1, 500)
    cp_result = heat_capacity.heat_capacity_from_enthalpy(enthalpy, 300.0, 1000.0)
    walk = np.cumsum(rng.normal(size=(100, 5, 3)), axis=0)
    msd_values = msd.msd_fft(walk)
    fit = msd.fit_self_diffusivity(times[:100], msd_values)
    paths = [
        density.plot_density(times, density.density_g_cm3(602.214, volumes), density_result, tmp_path / 'd.png'),
        heat_capacity.plot_enthalpy_histogram(enthalpy, cp_result, tmp_path / 'h.png'),
        msd.plot_msd(times[:100], msd_values, fit, tmp_path / 'm.png'),
        rdf.plot_rdf(np.linspace(0, 5, 50), np.ones(50), tmp_path / 'r.png', label='O-H'),
        radius_of_gyration.plot_radius_of_gyration_distribution(rng.normal(10, 1, 300), tmp_path / 'g.png'),
        dihedrals.plot_dihedral_distribution(rng.uniform(-180, 180, 300), tmp_path / 't.png'),
    ]
    for path in paths:
        assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and path.stat().st_size > 5000
