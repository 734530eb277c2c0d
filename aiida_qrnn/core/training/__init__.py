"""Training the QRNN: batches without padding, the multitask loss, the trainer, committees, transfer learning."""

from .committee import member_config, train_committee
from .data import BatchPrefetcher, ClusterBatch, FileClusters, InMemoryClusters, PairCache, epoch_order, split_indices
from .loss import MultitaskLoss
from .self_energies import composition_matrix, fit_self_energies
from .trainer import Trainer, TrainingConfig, TrainingDiverged, TrainingResult, TrainingStatus, plain_model, predict
from .transfer import parent_model

__all__ = (
    'BatchPrefetcher', 'ClusterBatch', 'FileClusters', 'InMemoryClusters', 'MultitaskLoss', 'PairCache', 'Trainer',
    'TrainingConfig',
    'TrainingDiverged', 'TrainingResult', 'TrainingStatus', 'composition_matrix', 'epoch_order', 'fit_self_energies',
    'member_config', 'parent_model', 'plain_model', 'predict', 'split_indices', 'train_committee',
)
