"""A committee of models evaluated together: mean prediction, force variance and the paper's rho^f (eq. 2).

    rho^f = Σ_{i=1}^{N_a} Σ_{x,y,z} σ²(f_{i,x}) / sqrt(N_a)

per cluster, with σ² the variance of a force component over the committee members. The paper calls it "the
variance of forces computed by five models"; the population variance (divisor = committee size) is used here.
"""

from __future__ import annotations

import typing as t

import torch

from .neighbors import neighbor_pairs
from .qrnn import evaluate

__all__ = ('Committee',)


class Committee:
    """Several models sharing one neighbour list per call; all members need the same elements and cutoffs."""

    def __init__(self, models: t.Sequence[torch.nn.Module]) -> None:
        if len(models) < 2:
            raise ValueError(f'a committee needs at least two models, got {len(models)}.')
        reference = models[0]
        for index, model in enumerate(models[1:], start=1):
            if not torch.equal(model.species_of_number.cpu(), reference.species_of_number.cpu()):
                raise ValueError(f'committee model {index} has other elements than model 0.')
            if (model.periodic_cutoff, model.open_cluster_cutoff) != (
                    reference.periodic_cutoff, reference.open_cluster_cutoff):
                raise ValueError(f'committee model {index} has other pair cutoffs than model 0.')
        self.models = list(models)

    def evaluate(
        self, positions: torch.Tensor, numbers: torch.Tensor, system_index: torch.Tensor, cells: torch.Tensor,
        pbc: torch.Tensor, total_charge: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Committee statistics of a flat batch (detached).

        Returns ``energy`` (systems,) mean, ``energy_std`` (systems,), ``forces`` (atoms, 3) mean,
        ``force_variance`` (atoms, 3) population variance per component, ``charges`` (atoms,) mean and
        ``rho_f`` (systems,) the paper's eq. 2.
        """
        n_systems = cells.shape[0]
        periodic = bool(pbc.any())
        cutoff = self.models[0].periodic_cutoff if periodic else self.models[0].open_cluster_cutoff
        pairs = neighbor_pairs(positions, system_index, cells, pbc, cutoff)
        energies, forces, charges = [], [], []
        for model in self.models:
            results = evaluate(model, positions, numbers, system_index, cells, pbc, total_charge, pairs=pairs)
            energies.append(results['energy'].detach())
            forces.append(results['forces'].detach())
            charges.append(results['charges'].detach())
        energy = torch.stack(energies)  # (models, systems)
        force = torch.stack(forces)  # (models, atoms, 3)
        force_variance = force.var(dim=0, unbiased=False)  # (atoms, 3)
        atoms_per_system = torch.bincount(system_index, minlength=n_systems).to(force.dtype)  # (systems,)
        variance_sum = force.new_zeros(n_systems).index_add(0, system_index, force_variance.sum(1))  # (systems,)
        return {
            'energy': energy.mean(0), 'energy_std': energy.std(0, unbiased=False), 'forces': force.mean(0),
            'force_variance': force_variance, 'charges': torch.stack(charges).mean(0),
            'rho_f': variance_sum / atoms_per_system.sqrt(),
        }
