"""Joining cluster sets: ``concatenate`` is the one implementation, ``read_cluster_sets`` the file-level entry."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator

from aiida_qrnn.core.dataset import ClusterArrays, ClusterSetError, read_cluster_sets, write_cluster_set


def water_set(path, shifts, *, labelled=True):
    """One water molecule per shift (Å along x); energies equal to the shift, so order is visible."""
    images = []
    for shift in shifts:
        atoms = molecule('H2O')
        atoms.positions[:, 0] += shift
        if labelled:
            atoms.calc = SinglePointCalculator(atoms, energy=-2000.0 + shift, forces=np.zeros((3, 3)))
        images.append(atoms)
    return write_cluster_set(path, ClusterArrays.from_atoms(images), level_of_theory='gfn2-xtb' if labelled else None)


def test_read_cluster_sets_keeps_order_and_duplicates(tmp_path):
    first = water_set(tmp_path / 'a.h5', [0.0, 0.5])
    second = water_set(tmp_path / 'b.h5', [0.5, 1.0, 1.5])
    arrays = read_cluster_sets([first, second])
    assert arrays.n_clusters == 5
    np.testing.assert_allclose(arrays.labels['energy'], -2000.0 + np.array([0.0, 0.5, 0.5, 1.0, 1.5]))
    np.testing.assert_array_equal(arrays.offsets, np.arange(6) * 3)
    assert arrays.ids[1] == arrays.ids[2]  # the same cluster in both files stays twice: training sets are as given


def test_read_cluster_sets_refuses_sets_with_other_labels(tmp_path):
    labelled = water_set(tmp_path / 'a.h5', [0.0])
    bare = water_set(tmp_path / 'b.h5', [1.0], labelled=False)
    with pytest.raises(ClusterSetError, match=r"'.*b\.h5': labels \[\] differ from those of '.*a\.h5'"):
        read_cluster_sets([labelled, bare])
    with pytest.raises(ClusterSetError, match='no cluster-set files'):
        read_cluster_sets([])
