"""Scan geometries: rigid molecules, the right distances and angles, minimum image across the boundary."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from aiida_qrnn.core.analysis.dihedrals import dihedral_angles, find_dihedrals
from aiida_qrnn.core.analysis.scans import pair_scan_geometries, relative_curve, torsion_scan_geometries
from aiida_qrnn.core.structures import ethylene_glycol_oligomer
from aiida_qrnn.core.topology import find_bonds


def _pair_in_box(shift: np.ndarray) -> tuple[Atoms, np.ndarray]:
    molecule = ethylene_glycol_oligomer(1)
    second = molecule.copy()
    second.positions += shift
    pair = molecule + second
    pair.set_cell(np.eye(3) * 20.0)
    pair.pbc = True
    return pair, np.repeat([0, 1], len(molecule))


def _internal_distances(positions: np.ndarray) -> np.ndarray:
    return np.linalg.norm(positions[:, None] - positions[None], axis=-1)


def test_pair_scan_spans_075_to_3_times_the_distance_with_rigid_molecules():
    pair, molecules = _pair_in_box(np.array([4.0, 1.0, 0.0]))
    distances, images = pair_scan_geometries(pair, molecules, 0, 1, 10)
    assert distances[0] == pytest.approx(0.75 * np.linalg.norm([4.0, 1.0, 0.0]))
    assert distances[-1] == pytest.approx(3.0 * np.linalg.norm([4.0, 1.0, 0.0]))
    n = len(molecules) // 2
    for distance, image in zip(distances, images, strict=True):
        assert not image.pbc.any() and image.info['kind'] == 'scan'
        np.testing.assert_allclose(image.positions[:n], pair.positions[:n])  # the first molecule stays
        np.testing.assert_allclose(_internal_distances(image.positions[n:]), _internal_distances(pair.positions[n:]),
                                   atol=1e-12)
        masses = image.get_masses()
        centres = [masses[s] @ image.positions[s] / masses[s].sum() for s in (slice(0, n), slice(n, None))]
        assert np.linalg.norm(centres[1] - centres[0]) == pytest.approx(distance)


def test_pair_scan_uses_the_minimum_image():
    """A partner 16 Å away in a 20 Å box is 4 Å away through the boundary."""
    pair, molecules = _pair_in_box(np.array([16.0, 0.0, 0.0]))
    distances, _ = pair_scan_geometries(pair, molecules, 0, 1, 4)
    assert distances[0] == pytest.approx(0.75 * 4.0)
    with pytest.raises(ValueError, match='no molecule 5'):
        pair_scan_geometries(pair, molecules, 0, 5, 4)


def test_torsion_scan_sets_the_angle_and_keeps_bonds():
    molecule = ethylene_glycol_oligomer(2)
    bonds = find_bonds(molecule)
    quadruplet = find_dihedrals(molecule)[0]
    angles = np.arange(-180.0, 180.1, 30.0)
    images = torsion_scan_geometries(molecule, quadruplet, angles, bonds)
    for angle, image in zip(angles, images, strict=True):
        measured = dihedral_angles(image.positions[None], quadruplet[None])[0, 0]
        assert (measured - angle + 180.0) % 360.0 - 180.0 == pytest.approx(0.0, abs=1e-6)
        lengths = np.linalg.norm(image.positions[bonds[:, 0]] - image.positions[bonds[:, 1]], axis=1)
        np.testing.assert_allclose(lengths, np.linalg.norm(
            molecule.positions[bonds[:, 0]] - molecule.positions[bonds[:, 1]], axis=1), atol=1e-9)


def test_relative_curves():
    assert relative_curve(np.array([3.0, 1.0, 2.0]), 'last').tolist() == [1.0, -1.0, 0.0]
    assert relative_curve(np.array([3.0, 1.0, 2.0]), 'minimum').tolist() == [2.0, 0.0, 1.0]
