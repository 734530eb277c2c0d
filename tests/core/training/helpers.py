"""Synthetic training data: clusters labelled by a random "teacher" QRNN of the architecture being trained, so
that a student of the same architecture can reach zero error (a reachable target for overfit tests)."""

from __future__ import annotations

import numpy as np
import torch

from aiida_qrnn.core.dataset import ClusterArrays
from aiida_qrnn.core.model.aev import AEVConfig
from aiida_qrnn.core.model.qrnn import QRNN, QRNNConfig, evaluate
from tests.conftest import make_water_clusters

TINY_CONFIG = QRNNConfig(
    elements=('H', 'O'),
    aev=AEVConfig(radial_shifts=(0.9, 1.8, 2.7, 3.6, 4.5), angular_shifts=(0.9, 2.2), angle_sections=(0.4, 2.0)),
    charge_hidden=(8,), energy_hidden=(8,), dispersion=None,
)


def tiny_model(seed: int) -> QRNN:
    torch.manual_seed(seed)
    return QRNN(TINY_CONFIG).double()


def teacher_labelled_clusters(n_clusters: int, *, seed: int = 0, teacher_seed: int = 123) -> ClusterArrays:
    """Water clusters (1-3 molecules) with energy, forces, charges and dipole from a random teacher QRNN.

    The teacher's self-energies are set to realistic magnitudes (eV per element), so the self-energy fit matters.
    """
    images = make_water_clusters(n_clusters, seed=seed)
    arrays = ClusterArrays.from_atoms(images)
    teacher = tiny_model(teacher_seed)
    teacher.self_energies.copy_(torch.tensor([-13.6, -2040.0], dtype=torch.float64))
    sizes = np.diff(arrays.offsets)
    output = evaluate(
        teacher, torch.from_numpy(arrays.positions), torch.from_numpy(arrays.numbers.astype(np.int64)),
        torch.from_numpy(np.repeat(np.arange(len(sizes)), sizes)), torch.from_numpy(arrays.cell),
        torch.from_numpy(arrays.pbc), torch.from_numpy(arrays.total_charge.astype(np.float64)),
    )
    arrays.labels = {name: output[name].detach().numpy() for name in ('energy', 'forces', 'charges', 'dipole')}
    return arrays.validate()
