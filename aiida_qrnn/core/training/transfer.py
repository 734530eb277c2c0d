"""Transfer learning: continue from a trained model (its weights, config and self-energies) on new data.

The child starts as an exact copy of the parent, so its first predictions are the parent's; ``freeze`` prefixes
(:class:`~.trainer.TrainingConfig`) keep parts fixed, e.g. ``('charge_networks',)`` to retrain only the energy.
"""

from __future__ import annotations

import pathlib

import torch

from aiida_qrnn.core.model.calculator import ModelSource, load_model

__all__ = ('parent_model',)


def parent_model(source: ModelSource | str | pathlib.Path) -> torch.nn.Module:
    """A trainable copy of a parent model (file or ``ModelData``): train mode, every parameter trainable."""
    model = load_model(source).train()
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return model
