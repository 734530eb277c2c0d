"""Training a :class:`~aiida_qrnn.core.model.qrnn.QRNN` on energies, forces and charges or dipoles.

The paper's settings are the defaults (AdamW, lr 1e-3, weight decay 1e-4, batch 256, validation batch 1024,
weight normalisation, multitask loss with learned σ, 90/10 split). Per epoch: a shuffled pass (or
``samples_per_epoch`` samples), a validation pass, a ReduceLROnPlateau step, early stopping on the validation
score, a row in ``metrics.csv`` and a checkpoint. The checkpoint holds everything the run depends on (model,
loss weights, optimizer, scheduler, torch RNG, epoch, batch within the epoch, the epoch's running sums, the best
weights, the history), and the batch order is a function of (seed, epoch), so a resumed run continues exactly:
on CPU its weights are bit-identical to those of an uninterrupted run.

The validation score that drives the scheduler and early stopping is Σ_t MSE_t / scale_t over the loss tasks,
with scale_t the mean square of the task's training labels (energies after the self-energy fit): dimensionless
and independent of the learned σ, which move during training.

When a process group of several ranks is initialised (``torchrun`` or ``srun``, :mod:`.distributed`), the trainer
trains data-parallel with ``DistributedDataParallel``: every rank takes its contiguous part of each global batch,
the loss is normalised by the counts of the global batch so that the averaged gradients are those of the whole
batch, self-energies and label scales are computed on rank 0 and broadcast, validation is split over the ranks and
gathered, stops at ``max_time_s`` are decided together, and rank 0 alone writes the checkpoint and ``metrics.csv``.
The checkpoint does not depend on the number of ranks. With one process nothing of this is used.

Speed (issue 19): batches are gathered from pre-indexed flat arrays and prepared in a background thread
(:class:`~.data.BatchPrefetcher`, pinned memory and asynchronous copies on CUDA) with their pair lists from a
:class:`~.data.PairCache` (found once per cluster: the geometry does not change); the running sums of the losses stay
on the device and are read once per epoch (and before a checkpoint), and so is the check for a non-finite loss,
so a step does not wait for the device. ``precision='tf32'`` or ``'bf16'`` (float32 on CUDA only) lets the element
networks' matrix products run in TF32 or under bf16 autocast; ``compile=True`` compiles the gradient clipping
and optimizer step with ``torch.compile`` (the model itself cannot be: force training differentiates it twice, which
``torch.compile`` does not support).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import enum
import math
import os
import pathlib
import time
import typing as t

import numpy as np
import torch

from . import distributed
from .data import BatchPrefetcher, ClusterBatch, ClusterSource, PairCache, batch_slices, epoch_order, to_device
from .loss import MultitaskLoss, task_errors
from .self_energies import composition_matrix, fit_self_energies

__all__ = ('CHECKPOINT_FILE', 'METRICS_FILE', 'Trainer', 'TrainingConfig', 'TrainingDiverged', 'TrainingResult',
           'TrainingStatus', 'plain_model', 'predict')

CHECKPOINT_FILE = 'checkpoint.pt'
METRICS_FILE = 'metrics.csv'
CHECKPOINT_VERSION = 1
DTYPES = {'float32': torch.float32, 'float64': torch.float64}
#: Values of ``TrainingConfig.energy_loss``: the energy error per cluster (paper) or per atom.
ENERGY_LOSSES = ('total', 'per_atom')
#: Values of ``TrainingConfig.precision``: float32 as it is, TF32 matrix products, bf16 autocast (CUDA only).
PRECISIONS = ('highest', 'tf32', 'bf16')
#: Settings a checkpoint may be continued with changed (budget, display, speed and device-precision options).
RESUMABLE_CHANGES = frozenset({'max_time_s', 'progress', 'max_epochs', 'precision', 'compile'})
#: Labels whose MAE/RMSE are reported when the set has them (loss task or not).
METRIC_LABELS = ('energy', 'forces', 'charges', 'dipole')


class TrainingStatus(enum.IntEnum):
    FINISHED = 0  # ran max_epochs
    EARLY_STOPPED = 1  # validation score stopped improving
    STOPPED_WALLTIME = 2  # max_time_s reached; a checkpoint is left to continue from


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Settings of one training run; :meth:`from_dict` refuses unknown keys and bad values, naming them."""

    tasks: tuple[str, ...] = ('energy', 'forces', 'charges')
    learned_weights: bool = True  # Kendall σ's; False: fixed loss_weights
    loss_weights: dict = dataclasses.field(default_factory=dict)  # fixed weights per task (default 1)
    energy_loss: str = 'total'  # energy error per cluster ('total', the paper's) or per atom ('per_atom')
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    validation_batch_size: int = 1024
    max_epochs: int = 500
    samples_per_epoch: int | None = None  # None: one pass over the training set
    validation_fraction: float = 0.1
    seed: int = 0  # weights and batch order
    split_seed: int | None = None  # train/validation split; None: seed
    weight_norm: bool = True
    gradient_clip: float | None = 10.0  # max global gradient norm; None: off
    scheduler_factor: float = 0.5
    scheduler_patience: int = 10  # epochs
    min_learning_rate: float = 1e-6
    early_stopping_patience: int = 50  # epochs without a better validation score
    fit_self_energies: bool = True  # least-squares per-element energies before training (fresh models)
    freeze: tuple[str, ...] = ()  # parameter-name prefixes kept fixed (transfer learning)
    dtype: str = 'float64'
    max_time_s: float | None = None  # wall-clock budget of this invocation; then checkpoint and stop
    progress: bool = False  # tqdm bar over the batches of an epoch
    precision: str = 'highest'  # float32 matrix products: 'highest', 'tf32' or 'bf16' autocast (CUDA only)
    compile: bool = False  # torch.compile the gradient clipping and optimizer step

    def __post_init__(self) -> None:
        positive = {'learning_rate': self.learning_rate, 'batch_size': self.batch_size,
                    'validation_batch_size': self.validation_batch_size, 'max_epochs': self.max_epochs,
                    'scheduler_patience': self.scheduler_patience + 1,
                    'early_stopping_patience': self.early_stopping_patience}
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f'training setting {name} must be positive, got {value!r}.')
        if self.weight_decay < 0:
            raise ValueError(f'training setting weight_decay must be >= 0, got {self.weight_decay}.')
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(
                f'training setting validation_fraction must lie in (0, 1), got {self.validation_fraction}.')
        if self.dtype not in DTYPES:
            raise ValueError(f'training setting dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}.')
        if not 0.0 < self.scheduler_factor < 1.0:
            raise ValueError(f'training setting scheduler_factor must lie in (0, 1), got {self.scheduler_factor}.')
        if self.gradient_clip is not None and self.gradient_clip <= 0:
            raise ValueError(f'training setting gradient_clip must be positive or None, got {self.gradient_clip}.')
        if self.samples_per_epoch is not None and self.samples_per_epoch < 1:
            raise ValueError(f'training setting samples_per_epoch must be positive, got {self.samples_per_epoch}.')
        if self.max_time_s is not None and self.max_time_s < 0:
            raise ValueError(f'training setting max_time_s must be >= 0, got {self.max_time_s}.')
        if 'charges' in self.tasks and 'dipole' in self.tasks:
            raise ValueError("training setting tasks: use either 'charges' or 'dipole' as the charge task, not both.")
        if self.precision not in PRECISIONS:
            raise ValueError(f'training setting precision must be one of {list(PRECISIONS)}, got {self.precision!r}.')
        if self.precision != 'highest' and self.dtype != 'float32':
            raise ValueError(f"training setting precision={self.precision!r} lowers float32 matrix products; it needs "
                             f"dtype='float32', got dtype={self.dtype!r}.")
        if self.energy_loss not in ENERGY_LOSSES:
            raise ValueError(f'training setting energy_loss must be one of {list(ENERGY_LOSSES)}, '
                             f'got {self.energy_loss!r}.')
        self.loss()  # validates tasks and weights

    def loss(self) -> MultitaskLoss:
        """The loss these settings describe."""
        return MultitaskLoss(self.tasks, learned=self.learned_weights, weights=self.loss_weights,
                             energy_per_atom=self.energy_loss == 'per_atom')

    @classmethod
    def from_dict(cls, values: t.Mapping) -> TrainingConfig:
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f'unknown training setting(s) {unknown}; known: {sorted(known)}.')
        values = dict(values)
        for name in ('tasks', 'freeze'):
            if name in values:
                values[name] = tuple(values[name])
        try:
            return cls(**values)
        except TypeError as exception:
            raise ValueError(f'training settings: {exception}') from None

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values.update(tasks=list(self.tasks), freeze=list(self.freeze))
        return values


@dataclasses.dataclass
class TrainingResult:
    status: TrainingStatus
    epochs: int  # epochs completed
    best_epoch: int | None
    best_metrics: dict[str, float]  # validation metrics of the best epoch (the weights the model ends with)


def apply_weight_norm(model: torch.nn.Module) -> None:
    """Weight normalisation (w = g v/|v|) on every linear layer of the element networks."""
    for networks in (model.charge_networks, model.energy_networks):
        for module in networks.modules():
            if isinstance(module, torch.nn.Linear):
                torch.nn.utils.parametrizations.weight_norm(module)


def plain_model(model: torch.nn.Module) -> torch.nn.Module:
    """A new ``QRNN`` with the weights of ``model``, without weight-norm parametrisations.

    Built from the config and a computed state dict: removing parametrisations from a deep copy would also strip
    them from ``model`` (the parametrised classes are shared between copies).
    """
    from aiida_qrnn.core.model.qrnn import QRNN

    state = {}
    for name, module in model.named_modules():
        prefix = f'{name}.' if name else ''
        if torch.nn.utils.parametrize.is_parametrized(module):
            for tensor_name in module.parametrizations:
                state[prefix + tensor_name] = getattr(module, tensor_name).detach().clone()
        for tensor_name, tensor in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
            if '.parametrizations.' not in f'.{prefix}':  # the parametrisation's own tensors (original0/1)
                state[prefix + tensor_name] = tensor.detach().clone()
    reference = next(model.parameters())
    plain = QRNN(model.config).to(device=reference.device, dtype=reference.dtype)
    plain.load_state_dict({name: state[name] for name in plain.state_dict()}, strict=True)  # persistent tensors
    return plain


def _evaluate(model, batch: ClusterBatch, *, forces: bool, create_graph: bool) -> dict[str, torch.Tensor]:
    from aiida_qrnn.core.model.qrnn import evaluate

    pairs = None
    if batch.pairs is not None:  # cached (open clusters: no cell shifts)
        pairs = (batch.pairs, batch.positions.new_zeros((batch.pairs.shape[1], 3)))
    return evaluate(model, batch.positions, batch.numbers, batch.system_index, batch.cells, batch.pbc,
                    batch.total_charge, compute_forces=forces, create_graph=create_graph, pairs=pairs)


class _ReducedPrecision:
    """TF32 matrix products, or bf16 autocast of the element networks, while training steps run (CUDA, float32).

    bf16 covers only the element networks' layers (forward hooks on each network; outputs back to float32), so
    geometry, AEVs, charge equilibration, Coulomb, dispersion, self-energies and the loss stay in float32.
    """

    def __init__(self, model: torch.nn.Module, precision: str, device_type: str) -> None:
        self.precision = precision
        self.device_type = device_type
        self._handles = []
        self._active = False
        if precision == 'bf16':
            for networks in (model.charge_networks, model.energy_networks):
                for network in networks.networks:
                    self._handles.append(network.register_forward_pre_hook(self._enter))
                    self._handles.append(network.register_forward_hook(self._exit))
        self._autocast: list = []

    def _enter(self, module, inputs):
        if self._active:
            context = torch.autocast(self.device_type, dtype=torch.bfloat16)
            context.__enter__()
            self._autocast.append(context)

    def _exit(self, module, inputs, output):
        if self._autocast:
            self._autocast.pop().__exit__(None, None, None)
            return output.float()
        return output

    @contextlib.contextmanager
    def __call__(self):
        """Reduced precision inside the block (a training step)."""
        if self.precision == 'tf32':
            previous = torch.get_float32_matmul_precision()
            torch.set_float32_matmul_precision('high')
            try:
                yield
            finally:
                torch.set_float32_matmul_precision(previous)
        else:
            self._active = self.precision == 'bf16'
            try:
                yield
            finally:
                self._active = False


def _device_batch(source: ClusterSource, indices: np.ndarray, sizes: np.ndarray, pair_cache: PairCache | None,
                  device: torch.device, dtype: torch.dtype) -> ClusterBatch:
    """The clusters ``indices`` of ``source`` on ``device`` in ``dtype``, with their cached pairs (open clusters)."""
    host = source.batch(indices)
    cuda = device.type == 'cuda'  # pinned memory and an asynchronous copy
    batch = (host.pin() if cuda else host).to(device, dtype, non_blocking=cuda)
    if pair_cache is not None and not bool(host.pbc.any()):
        batch.pairs = pair_cache.pairs(indices, sizes[indices], host, device)
    return batch


def predict(model, source: ClusterSource, indices: np.ndarray, *, batch_size: int = 1024,
            device: str | torch.device = 'cpu') -> dict[str, np.ndarray]:
    """Predictions and labels of ``indices`` (parity plots, metrics of a stored model): ``{name: (pred, label)}``
    for energy (clusters,), forces (atoms, 3), charges (atoms,), dipole (clusters, 3), plus ``n_atoms`` (clusters,).

    Batches are prepared in a background thread with their pair lists from a :class:`~.data.PairCache` (the same
    pairs as the model's own search)."""
    dtype = next(model.parameters()).dtype
    device = torch.device(device)
    indices = np.asarray(indices, dtype=np.int64)
    cutoff = getattr(model, 'open_cluster_cutoff', None)
    pair_cache = PairCache(cutoff) if isinstance(cutoff, float) else None
    all_sizes = np.asarray(source.sizes(), dtype=np.int64)
    collected: dict[str, tuple[list, list]] = {name: ([], []) for name in source.label_names}
    sizes = []
    parts = [indices[part] for part in batch_slices(len(indices), batch_size)]
    with BatchPrefetcher(lambda part: _device_batch(source, part, all_sizes, pair_cache, device, dtype),
                         parts) as batches:
        for part, batch in zip(parts, batches, strict=True):
            output = _evaluate(model, batch, forces='forces' in source.label_names, create_graph=False)
            sizes.append(all_sizes[part])
            for name, (predicted, labels) in collected.items():
                predicted.append(output[name].detach().cpu().numpy())
                labels.append(getattr(batch, name).cpu().numpy())
    result = {name: (np.concatenate(predicted), np.concatenate(labels)) for name, (predicted, labels)
              in collected.items()}
    result['n_atoms'] = np.concatenate(sizes)
    return result


def error_metrics(predictions: dict[str, t.Any]) -> dict[str, float]:
    """MAE and RMSE per label (eV, eV/Å, e, e·Å) and the energy per atom (eV/atom)."""
    metrics = {}
    for name in METRIC_LABELS:
        if name in predictions:
            error = predictions[name][0] - predictions[name][1]
            metrics[f'{name}_mae'] = float(np.abs(error).mean())
            metrics[f'{name}_rmse'] = float(np.sqrt(np.square(error).mean()))
            if name == 'energy':
                per_atom = error / predictions['n_atoms']
                metrics['energy_per_atom_mae'] = float(np.abs(per_atom).mean())
                metrics['energy_per_atom_rmse'] = float(np.sqrt(np.square(per_atom).mean()))
    return metrics


class _BatchObjective(torch.nn.Module):
    """Model and loss as one module, so that ``DistributedDataParallel`` averages the σ's gradients too."""

    def __init__(self, model: torch.nn.Module, loss: MultitaskLoss) -> None:
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, batch: ClusterBatch | None, counts: torch.Tensor, forces: bool,
                world_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(this rank's objective, detached partial losses); ``batch`` None: this rank has no cluster this step."""
        if batch is None:
            partial = torch.zeros(len(self.loss.tasks), dtype=counts.dtype, device=counts.device)
            # Every trainable tensor takes part with a zero gradient, so the ranks' reductions stay in step.
            touched = sum(parameter.sum() for parameter in self.parameters() if parameter.requires_grad)
            return self.loss.rank_objective(partial, world_size) + 0.0 * touched, partial
        output = _evaluate(self.model, batch, forces=forces, create_graph=True)
        partial = self.loss.partial_losses(output, batch, counts)
        return self.loss.rank_objective(partial, world_size), partial.detach()


class Trainer:
    """Train ``model`` on ``source[train_indices]``, validating on ``source[validation_indices]``.

    ``directory`` receives ``metrics.csv`` and ``checkpoint.pt``; an existing checkpoint there is continued
    (:meth:`fit`). ``transfer=True`` keeps the model's self-energies (a parent model's) instead of fitting them.
    Inside an initialised process group of several ranks the training is data-parallel (module docstring); every
    rank must then be given the same arguments.
    """

    def __init__(
        self, model: torch.nn.Module, source: ClusterSource, train_indices: np.ndarray,
        validation_indices: np.ndarray, config: TrainingConfig, directory: str | os.PathLike, *,
        device: str | torch.device = 'cpu', transfer: bool = False,
    ) -> None:
        self.config = config
        self.source = source
        self.train_indices = np.asarray(train_indices, dtype=np.int64)
        self.validation_indices = np.asarray(validation_indices, dtype=np.int64)
        if not len(self.train_indices) or not len(self.validation_indices):
            raise ValueError('training needs at least one training and one validation cluster.')
        missing = [task for task in config.tasks if task not in source.label_names]
        if missing:
            raise ValueError(f'the loss uses {missing}, but the cluster set has only labels {source.label_names}.')
        self.directory = pathlib.Path(directory)
        self.device = torch.device(device)
        self.dtype = DTYPES[config.dtype]
        if config.precision != 'highest' and self.device.type != 'cuda':
            raise ValueError(f"training setting precision={config.precision!r} needs a CUDA device; this run is on "
                             f"{self.device.type!r}: use precision='highest' there.")
        self.rank, self.world_size = distributed.active_world()
        torch.manual_seed(config.seed)
        model = model.to(device=self.device, dtype=self.dtype)
        if config.fit_self_energies and not transfer and 'energy' in source.label_names:
            self._fit_self_energies(model)
        if config.weight_norm:
            apply_weight_norm(model)
        self._freeze(model, config.freeze)
        self.model = model
        self.loss = config.loss().to(self.device)
        groups = [{'params': [p for p in model.parameters() if p.requires_grad], 'weight_decay': config.weight_decay}]
        if config.learned_weights:  # σ's stay out of weight decay
            groups.append({'params': [self.loss.log_variances], 'weight_decay': 0.0})
        self.optimizer = torch.optim.AdamW(groups, lr=config.learning_rate)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, factor=config.scheduler_factor, patience=config.scheduler_patience,
            min_lr=config.min_learning_rate)
        self.scales = self._label_scales(model)
        self.epoch = 0
        self.batch_in_epoch = 0
        self.running = {'loss': 0.0, 'task_losses': [0.0] * len(config.tasks), 'batches': 0}
        self._running_sums: torch.Tensor | None = None  # (1 + tasks,) float64 on the device while an epoch runs
        self._nonfinite_batch: torch.Tensor | None = None  # () int64 on the device: first batch with a bad loss
        self._precision = _ReducedPrecision(model, config.precision, self.device.type)
        self._pair_cache = PairCache(model.open_cluster_cutoff)
        self._optimizer_step = torch.compile(self._clip_and_step_parameters) if config.compile else \
            self._clip_and_step_parameters
        self.best_score = math.inf
        self.best_epoch: int | None = None
        self.best_state = copy.deepcopy(model.state_dict())
        self.best_metrics: dict[str, float] = {}
        self.bad_epochs = 0
        self.history: list[dict[str, float]] = []
        if (self.directory / CHECKPOINT_FILE).is_file():
            self.load_checkpoint(self.directory / CHECKPOINT_FILE)
        self._sizes = np.asarray(source.sizes(), dtype=np.int64)
        self._data_parallel = None
        if self.world_size > 1:
            # Unused parameters (an element absent from a rank's part) keep the ranks' reductions in step; a
            # parameter unused by the whole batch keeps no gradient, as in one process.
            self._data_parallel = torch.nn.parallel.DistributedDataParallel(
                _BatchObjective(model, self.loss), device_ids=[self.device] if self.device.type == 'cuda' else None,
                find_unused_parameters=True)

    # -- set-up ----------------------------------------------------------------------------------------------
    def _training_labels(self) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        batch = self.source.batch(self.train_indices)
        offsets = np.concatenate([[0], np.cumsum(np.bincount(batch.system_index.numpy(),
                                                             minlength=batch.n_systems))])
        labels = {name: getattr(batch, name).numpy() for name in self.source.label_names}
        return batch.numbers.numpy(), offsets, labels

    def _fit_self_energies(self, model) -> None:
        """Least-squares self-energies over the training clusters (on rank 0, broadcast to the others)."""
        if self.rank == 0:
            numbers, offsets, labels = self._training_labels()
            counts = composition_matrix(numbers, offsets, model.config.elements)
            fitted = fit_self_energies(counts, labels['energy'])
            model.self_energies.copy_(torch.as_tensor(fitted, dtype=model.self_energies.dtype))
        if self.world_size > 1:
            model.self_energies.copy_(distributed.broadcast_from_main(model.self_energies, self.device))

    def _label_scales(self, model) -> torch.Tensor:
        """(tasks,) scales of the validation score (on rank 0, broadcast to the others)."""
        scales = self._computed_label_scales(model) if self.rank == 0 else torch.zeros(len(self.config.tasks),
                                                                                        dtype=torch.float64)
        if self.world_size > 1:
            scales = distributed.broadcast_from_main(scales, self.device)
        return scales

    def _computed_label_scales(self, model) -> torch.Tensor:
        """(tasks,) mean square of each task's training labels, energies after the self-energies."""
        numbers, offsets, labels = self._training_labels()
        scales = []
        for task in self.config.tasks:
            values = labels[task]
            if task == 'energy':
                counts = composition_matrix(numbers, offsets, model.config.elements)
                values = values - counts @ model.self_energies.detach().cpu().double().numpy()
                values = values - values.mean()
            scales.append(max(float(np.square(values).mean()), 1e-12))
        return torch.tensor(scales, dtype=torch.float64)

    @staticmethod
    def _freeze(model, prefixes: tuple[str, ...]) -> None:
        names = [name for name, _ in model.named_parameters()]
        for prefix in prefixes:
            if not any(name.startswith(prefix) for name in names):
                raise ValueError(f'freeze: no model parameter starts with {prefix!r} (e.g. charge_networks, '
                                 f'energy_networks.networks.0).')
        for name, parameter in model.named_parameters():
            if any(name.startswith(prefix) for prefix in prefixes):
                parameter.requires_grad_(False)

    # -- checkpoints -----------------------------------------------------------------------------------------
    def state(self) -> dict:
        self._read_running_sums()
        return {
            'version': CHECKPOINT_VERSION, 'config': self.config.to_dict(), 'model': self.model.state_dict(),
            'loss': self.loss.state_dict(), 'optimizer': self.optimizer.state_dict(),
            'scheduler': self.scheduler.state_dict(), 'torch_rng': torch.get_rng_state(), 'epoch': self.epoch,
            'batch_in_epoch': self.batch_in_epoch, 'running': self.running, 'best_score': self.best_score,
            'best_epoch': self.best_epoch, 'best_state': self.best_state, 'best_metrics': self.best_metrics,
            'bad_epochs': self.bad_epochs, 'history': self.history, 'scales': self.scales,
            'train_indices': torch.from_numpy(self.train_indices),
            'validation_indices': torch.from_numpy(self.validation_indices),
        }

    def save_checkpoint(self) -> pathlib.Path:
        """Write the checkpoint atomically (temporary file, then rename); rank 0 writes, the others wait for it."""
        path = self.directory / CHECKPOINT_FILE
        self._read_running_sums()  # on every rank: a non-finite loss (the same on all) stops them all here
        if self.rank == 0:
            temporary = path.with_name(path.name + '.partial')
            torch.save(self.state(), temporary)
            os.replace(temporary, path)
        distributed.barrier()
        return path

    def load_checkpoint(self, path: pathlib.Path) -> None:
        """Continue from ``path``; refuses a checkpoint of other data or settings, naming what differs."""
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exception:
            raise ValueError(f"'{path}': not a readable training checkpoint ({exception}).") from None
        if state.get('version') != CHECKPOINT_VERSION:
            raise ValueError(f"'{path}': checkpoint version {state.get('version')} is not supported.")
        same_split = (np.array_equal(state['train_indices'].cpu().numpy(), self.train_indices)
                      and np.array_equal(state['validation_indices'].cpu().numpy(), self.validation_indices))
        if not same_split:
            raise ValueError(f"'{path}': the checkpoint was made with another train/validation split or data set.")
        ignored = RESUMABLE_CHANGES
        previous, current = state['config'], self.config.to_dict()
        defaults = TrainingConfig().to_dict()  # settings added later read as their defaults in older checkpoints
        differing = sorted(key for key in current
                           if key not in ignored and previous.get(key, defaults[key]) != current[key])
        if differing:
            raise ValueError(f"'{path}': the checkpoint was made with other training settings: {differing}.")
        self.model.load_state_dict(state['model'])
        self.loss.load_state_dict(state['loss'])
        self.optimizer.load_state_dict(state['optimizer'])
        self.scheduler.load_state_dict(state['scheduler'])
        torch.set_rng_state(state['torch_rng'].cpu())
        for name in ('epoch', 'batch_in_epoch', 'running', 'best_score', 'best_epoch', 'best_state', 'best_metrics',
                     'bad_epochs', 'history', 'scales'):
            setattr(self, name, state[name])
        self._running_sums = None

    # -- training --------------------------------------------------------------------------------------------
    def _prepare(self, indices: np.ndarray) -> tuple[ClusterBatch | None, int, int]:
        """The device batch of one step on the clusters ``indices`` (this rank's part of them when data-parallel;
        None when the part is empty) with its cached pairs, and the global batch's cluster and atom counts.
        Runs in the prefetch thread."""
        n_clusters, n_atoms = len(indices), int(self._sizes[indices].sum())
        part = indices if self._data_parallel is None else distributed.rank_share(indices, self.rank,
                                                                                   self.world_size)
        if not len(part):
            return None, n_clusters, n_atoms
        return _device_batch(self.source, part, self._sizes, self._pair_cache, self.device, self.dtype), \
            n_clusters, n_atoms

    def _train_step(self, indices: np.ndarray) -> None:
        """One optimizer step on the clusters ``indices`` (the global batch when data-parallel)."""
        self._take_step(self._prepare(indices))

    def _take_step(self, prepared: tuple[ClusterBatch | None, int, int]) -> None:
        batch, n_clusters, n_atoms = prepared
        if self._data_parallel is not None:
            self._data_parallel_step(batch, n_clusters, n_atoms)
        else:
            self._step_on_batch(batch)

    def _step_on_batch(self, batch: ClusterBatch) -> None:
        """One single-process step on a batch already on the device."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with self._precision(), torch.nn.utils.parametrize.cached():
            output = _evaluate(self.model, batch, forces='forces' in self.config.tasks, create_graph=True)
            total, losses = self.loss(output, batch)
            total.backward()
        self._clip_and_step(total, losses)

    def _data_parallel_step(self, batch: ClusterBatch | None, n_clusters: int, n_atoms: int) -> None:
        """One step on a global batch of ``n_clusters`` clusters and ``n_atoms`` atoms, this rank evaluating its
        part ``batch`` of it."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        counts = to_device(self.loss.task_counts(n_clusters, n_atoms), self.device)
        with self._precision(), torch.nn.utils.parametrize.cached():
            objective, partial = self._data_parallel(batch, counts, 'forces' in self.config.tasks, self.world_size)
            losses = distributed.sum_over_ranks(partial)  # (tasks,) mean squared errors of the global batch
            total = self.loss.combine(losses)  # the same on every rank
            objective.backward()  # DistributedDataParallel averages the gradients over the ranks
        self._clip_and_step(total, losses)

    def _clip_and_step_parameters(self) -> None:
        if self.config.gradient_clip is not None:
            parameters = [p for group in self.optimizer.param_groups for p in group['params']]
            torch.nn.utils.clip_grad_norm_(parameters, self.config.gradient_clip)
        self.optimizer.step()

    def _clip_and_step(self, total: torch.Tensor, losses: torch.Tensor) -> None:
        """Clip, step and add the batch's losses to the epoch's sums on the device (no wait for the device)."""
        self._optimizer_step()
        values = torch.cat([total.detach().reshape(1), losses.detach()]).to(torch.float64)  # (1 + tasks,)
        if self._running_sums is None:  # first step of this call in the epoch: from the (checkpointed) sums
            sums = torch.tensor([self.running['loss'], *self.running['task_losses']], dtype=torch.float64)
            self._running_sums = to_device(sums, values.device)
            self._nonfinite_batch = torch.full((), -1, dtype=torch.long, device=values.device)
        self._running_sums += values
        bad = ~torch.isfinite(values[0]) & (self._nonfinite_batch < 0)
        self._nonfinite_batch = torch.where(bad, torch.full_like(self._nonfinite_batch, self.batch_in_epoch),
                                            self._nonfinite_batch)
        self.running['batches'] += 1

    def _read_running_sums(self) -> None:
        """Copy the device sums into :attr:`running` (one synchronisation); raise if a batch had a non-finite loss."""
        if self._running_sums is None:
            return
        values = self._running_sums.tolist()
        bad = int(self._nonfinite_batch)
        self.running['loss'], self.running['task_losses'] = values[0], values[1:]
        if bad >= 0:
            raise TrainingDiverged(f'the training loss is not finite at epoch {self.epoch}, batch {bad}.')

    def validate(self) -> dict[str, float]:
        """Validation MAE/RMSE of every label, plus the score (Σ_t MSE_t / scale_t over the loss tasks)."""
        self.model.eval()
        predictions = self._validation_predictions()
        metrics = error_metrics(predictions)
        errors = task_errors({name: torch.from_numpy(predictions[name][0]) for name in self.config.tasks},
                             _LabelView(predictions), self.config.tasks)
        mse = torch.stack([errors[task].square().mean() for task in self.config.tasks]).double()
        metrics['score'] = float((mse / self.scales.cpu()).sum())
        return metrics

    def _validation_predictions(self) -> dict[str, t.Any]:
        """:func:`predict` on the validation clusters; split over the ranks and gathered in order on every rank."""
        if self.world_size == 1:
            return predict(self.model, self.source, self.validation_indices,
                           batch_size=self.config.validation_batch_size, device=self.device)
        share = distributed.rank_share(self.validation_indices, self.rank, self.world_size)
        part = predict(self.model, self.source, share, batch_size=self.config.validation_batch_size,
                       device=self.device) if len(share) else None
        parts = [part for part in distributed.all_gather_arrays(part) if part is not None]
        return {name: (tuple(np.concatenate([part[name][index] for part in parts]) for index in (0, 1))
                       if name != 'n_atoms' else np.concatenate([part[name] for part in parts]))
                for name in parts[0]}

    def _end_epoch(self) -> None:
        self._read_running_sums()
        metrics = self.validate()
        self.scheduler.step(metrics['score'])
        batches = max(self.running['batches'], 1)
        row = {'epoch': self.epoch, 'learning_rate': self.optimizer.param_groups[0]['lr'],
               'train_loss': self.running['loss'] / batches}
        for task, value in zip(self.config.tasks, self.running['task_losses'], strict=True):
            row[f'train_{task}_mse'] = value / batches
        for task, weight in self.loss.weights().items():
            row[f'weight_{task}'] = weight
        row.update({f'validation_{name}': value for name, value in metrics.items()})
        self.history.append(row)
        if metrics['score'] < self.best_score:
            self.best_score, self.best_epoch, self.bad_epochs = metrics['score'], self.epoch, 0
            self.best_state = copy.deepcopy(self.model.state_dict())
            self.best_metrics = metrics
        else:
            self.bad_epochs += 1
        self.epoch += 1
        self.batch_in_epoch = 0
        self.running = {'loss': 0.0, 'task_losses': [0.0] * len(self.config.tasks), 'batches': 0}
        self._running_sums = None
        self.write_metrics()

    def write_metrics(self) -> pathlib.Path:
        path = self.directory / METRICS_FILE
        if self.history and self.rank == 0:
            with path.open('w', newline='') as handle:
                writer = csv.DictWriter(handle, fieldnames=list(self.history[0]))
                writer.writeheader()
                writer.writerows(self.history)
        return path

    def _finished(self) -> TrainingStatus | None:
        if self.bad_epochs >= self.config.early_stopping_patience:
            return TrainingStatus.EARLY_STOPPED
        if self.epoch >= self.config.max_epochs:
            return TrainingStatus.FINISHED
        return None

    def fit(self) -> TrainingResult:
        """Train until ``max_epochs``, early stopping or ``max_time_s`` (at least one batch per call).

        Leaves the best weights in :attr:`model` unless stopped at the walltime (then the checkpoint's state).
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        steps = 0
        config = self.config
        while (status := self._finished()) is None:
            order = epoch_order(self.train_indices, config.seed, self.epoch, config.samples_per_epoch)
            slices = batch_slices(len(order), config.batch_size)
            progress = None
            if config.progress and self.rank == 0:
                from tqdm import tqdm

                progress = tqdm(total=len(slices), initial=self.batch_in_epoch, desc=f'epoch {self.epoch}',
                                leave=False)
            with BatchPrefetcher(self._prepare, [order[part] for part in slices[self.batch_in_epoch:]]) as batches:
                for prepared in batches:
                    if steps and config.max_time_s is not None and self._out_of_time(start):
                        self.save_checkpoint()
                        return TrainingResult(TrainingStatus.STOPPED_WALLTIME, self.epoch, self.best_epoch,
                                              self.best_metrics)
                    self._take_step(prepared)
                    self.batch_in_epoch += 1
                    steps += 1
                    if progress is not None:
                        progress.update()
            if progress is not None:
                progress.close()
            self._end_epoch()
            self.save_checkpoint()
        self.model.load_state_dict(self.best_state)
        return TrainingResult(status, self.epoch, self.best_epoch, self.best_metrics)

    def _out_of_time(self, start: float) -> bool:
        """Whether ``max_time_s`` has passed since ``start`` (on any rank: the ranks stop at the same step)."""
        late = time.monotonic() - start >= self.config.max_time_s
        return distributed.any_rank(late, self.device) if self.world_size > 1 else late

    def trained_model(self) -> torch.nn.Module:
        """The model with the current weights, without weight-norm parametrisations, in eval mode."""
        return plain_model(self.model).eval()


class _LabelView:
    """Labels of :func:`predict`'s output under the batch field names (for :func:`task_errors`)."""

    def __init__(self, predictions: dict[str, t.Any]) -> None:
        self._predictions = predictions

    def __getattr__(self, name: str) -> torch.Tensor | None:
        if name.startswith('_'):
            raise AttributeError(name)
        pair = self._predictions.get(name)
        return None if pair is None else torch.from_numpy(pair[1])
