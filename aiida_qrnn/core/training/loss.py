"""The multitask loss of the paper (eq. 1) with learned task weights (Kendall, Gal, Cipolla, arXiv 1705.07115).

    L = Σ_t L_t / (2 σ_t²) + log Π_t σ_t  =  Σ_t ½ (e^{-s_t} L_t + s_t),   s_t = log σ_t²

L_t are mean squared errors: energy per cluster (eV²), force components (eV²/Å²), per-atom charges (e²) or dipole
components (e²Å²). s_t is the trainable parameter (stable for any real value) and is kept out of weight decay by the
trainer. ``learned=False`` gives fixed weights: L = Σ_t w_t L_t. ``energy_per_atom=True`` makes the energy error
that of the energy per atom ((eV/atom)², as TorchANI trains), so large clusters do not dominate the energy term.

Data-parallel training splits a batch over ranks. Each rank then computes :meth:`MultitaskLoss.partial_losses`,
its sums of squares divided by the counts of the WHOLE batch, so that the ranks' partial losses add up to the
batch's mean squared errors exactly, and :meth:`MultitaskLoss.rank_objective`, whose gradients averaged over the
ranks are those of the whole batch's loss.
"""

from __future__ import annotations

import torch

from .data import ClusterBatch

__all__ = ('TASKS', 'MultitaskLoss', 'task_errors')

#: Task -> (prediction key in the model output, label field of the batch).
TASKS: dict[str, tuple[str, str]] = {
    'energy': ('energy', 'energy'),
    'forces': ('forces', 'forces'),
    'charges': ('charges', 'charges'),
    'dipole': ('dipole', 'dipole'),
}


def task_errors(prediction: dict[str, torch.Tensor], batch: ClusterBatch, tasks: tuple[str, ...]) -> dict:
    """Prediction minus label per task: (systems,), (atoms, 3), (atoms,) or (systems, 3)."""
    errors = {}
    for task in tasks:
        key, label = TASKS[task]
        target = getattr(batch, label)
        if target is None:
            raise ValueError(f'the loss uses {task!r}, but the training set has no {label!r} labels.')
        errors[task] = prediction[key] - target
    return errors


def _atom_counts(batch: ClusterBatch, dtype: torch.dtype) -> torch.Tensor:
    """(systems,) atoms per system, summed on the device (``bincount`` on CUDA waits for the device to size its
    output; the counts are exact integers in any float type used here)."""
    ones = torch.ones(batch.system_index.shape, dtype=dtype, device=batch.system_index.device)  # (atoms,)
    return ones.new_zeros(batch.n_systems).index_add_(0, batch.system_index, ones)


class MultitaskLoss(torch.nn.Module):
    """Weighted sum of per-task mean squared errors; ``log_variances`` (s_t) are parameters when ``learned``."""

    def __init__(self, tasks: tuple[str, ...], *, learned: bool = True, weights: dict[str, float] | None = None,
                 energy_per_atom: bool = False):
        super().__init__()
        unknown = [task for task in tasks if task not in TASKS]
        if not tasks or unknown or len(set(tasks)) != len(tasks):
            raise ValueError(f'loss tasks must be distinct names from {sorted(TASKS)}, got {list(tasks)}.')
        self.tasks = tuple(tasks)
        self.learned = learned
        self.energy_per_atom = energy_per_atom
        weights = weights or {}
        extra = sorted(set(weights) - set(tasks))
        if extra:
            raise ValueError(f'loss weights given for {extra}, which are not among the tasks {list(tasks)}.')
        if any(value <= 0 for value in weights.values()):
            raise ValueError(f'loss weights must be positive, got {weights}.')
        fixed = torch.tensor([float(weights.get(task, 1.0)) for task in tasks], dtype=torch.float64)
        self.register_buffer('fixed_weights', fixed)  # (tasks,)
        # s_t = log σ_t²; 0 gives σ = 1 at the start.
        self.log_variances = torch.nn.Parameter(torch.zeros(len(tasks), dtype=torch.float64), requires_grad=learned)

    def task_losses(self, prediction: dict[str, torch.Tensor], batch: ClusterBatch) -> torch.Tensor:
        """(tasks,) mean squared error of each task."""
        errors = task_errors(prediction, batch, self.tasks)
        if self.energy_per_atom and 'energy' in errors:
            errors['energy'] = errors['energy'] / _atom_counts(batch, errors['energy'].dtype)
        return torch.stack([errors[task].square().mean() for task in self.tasks])

    def partial_losses(self, prediction: dict[str, torch.Tensor], batch: ClusterBatch,
                       counts: torch.Tensor) -> torch.Tensor:
        """(tasks,) this part's sums of squared errors over ``counts`` (:meth:`task_counts` of the whole batch)."""
        errors = task_errors(prediction, batch, self.tasks)
        if self.energy_per_atom and 'energy' in errors:
            errors['energy'] = errors['energy'] / _atom_counts(batch, errors['energy'].dtype)
        sums = torch.stack([errors[task].square().sum() for task in self.tasks])
        return sums / counts.to(sums.dtype)

    def task_counts(self, n_systems: int, n_atoms: int) -> torch.Tensor:
        """(tasks,) number of squared errors each task averages over in a batch of ``n_systems``, ``n_atoms``."""
        per_task = {'energy': n_systems, 'forces': 3 * n_atoms, 'charges': n_atoms, 'dipole': 3 * n_systems}
        return torch.tensor([float(per_task[task]) for task in self.tasks], dtype=torch.float64)

    def rank_objective(self, partial: torch.Tensor, world_size: int) -> torch.Tensor:
        """What one of ``world_size`` ranks back-propagates: the mean of the ranks' gradients is the gradient of
        ``combine(Σ_ranks partial)``.

        ``combine`` is affine in the losses, combine(L) = a·L + b (b = ½ Σ s_t when learned, else 0), so
        W·combine(p) - (W-1)·combine(0) = W a·p + b, whose gradients averaged over W ranks give a·Σp + b.
        """
        return world_size * self.combine(partial) - (world_size - 1) * self.combine(torch.zeros_like(partial))

    def combine(self, losses: torch.Tensor) -> torch.Tensor:
        """Total loss from the (tasks,) mean squared errors."""
        if self.learned:
            s = self.log_variances.to(losses.dtype)  # (tasks,)
            return 0.5 * (torch.exp(-s) * losses + s).sum()
        return (self.fixed_weights.to(losses.dtype) * losses).sum()

    def weights(self) -> dict[str, float]:
        """Effective weight of each task's mean squared error: 1/(2σ_t²) when learned, w_t when fixed."""
        values = 0.5 * torch.exp(-self.log_variances.detach()) if self.learned else self.fixed_weights
        return {task: float(value) for task, value in zip(self.tasks, values, strict=True)}

    def forward(self, prediction: dict[str, torch.Tensor], batch: ClusterBatch) -> tuple[torch.Tensor, torch.Tensor]:
        losses = self.task_losses(prediction, batch)
        return self.combine(losses), losses
