"""A committee: N models that differ in their train/validation split and their seed, trained independently.

The paper's committees have five members with 60/40 splits. Member k uses ``seed + k`` for both its weights and
batch order and its split, so every member sees a different training set; the spread of their predictions is the
active-learning signal (:mod:`aiida_qrnn.core.model.committee`).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import typing as t

import torch

from .data import ClusterSource, split_indices
from .trainer import Trainer, TrainingConfig, TrainingResult

__all__ = ('COMMITTEE_VALIDATION_FRACTION', 'member_config', 'train_committee')

COMMITTEE_VALIDATION_FRACTION = 0.4


def member_config(config: TrainingConfig, member: int) -> TrainingConfig:
    """Settings of committee member ``member``: seed and split seed shifted by the member index."""
    seed = config.seed + member
    return dataclasses.replace(config, seed=seed, split_seed=seed)


def train_committee(
    make_model: t.Callable[[], torch.nn.Module], source: ClusterSource, config: TrainingConfig, n_members: int,
    directory: str | os.PathLike, *, device: str | torch.device = 'cpu',
) -> list[tuple[torch.nn.Module, TrainingResult]]:
    """Train ``n_members`` models one after another (``member_k/`` folders); returns (model, result) pairs.

    ``make_model`` builds a fresh model and is called after the member's seed is set, so initial weights differ.
    """
    if n_members < 1:
        raise ValueError(f'a committee needs at least one member, got {n_members}.')
    members = []
    for member in range(n_members):
        settings = member_config(config, member)
        torch.manual_seed(settings.seed)
        model = make_model()
        train, validation = split_indices(len(source), settings.validation_fraction, settings.seed)
        trainer = Trainer(model, source, train, validation, settings, pathlib.Path(directory) / f'member_{member}',
                          device=device)
        result = trainer.fit()
        members.append((trainer.trained_model(), result))
    return members
