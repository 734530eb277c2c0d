"""A tiny random QRNN for MD tests: cheap, smooth and short-ranged, not physical."""

from __future__ import annotations

import torch

from aiida_qrnn.core.model.aev import AEVConfig
from aiida_qrnn.core.model.qrnn import QRNN, QRNNConfig


def tiny_qrnn(seed: int = 0) -> QRNN:
    """Random weights, small layers, 4 Å cutoff, no Coulomb and no dispersion; float64."""
    torch.manual_seed(seed)
    config = QRNNConfig(aev=AEVConfig(radial_cutoff=4.0, radial_shifts=(0.9, 1.8, 2.7, 3.6), angular_shifts=(0.9, 2.2),
                                      angle_sections=(0.4, 2.0)),
                        charge_hidden=(8,), energy_hidden=(8,), coulomb=None, dispersion=None)
    return QRNN(config).double()
