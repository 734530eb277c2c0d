"""Transfer learning to a polymer with new elements: a model extended with fresh networks for the new elements only.

The AEV is species-resolved, so a new element adds input features to every element network (its radial block, the
angular blocks of its pairs with every element, its block of the charge-weighted AEV). :func:`extend_elements`
builds the larger model and copies the parent's networks into it with zero weights on the new features: on any
structure without the new elements the child gives exactly the parent's energies, charges and forces, and
training starts from the parent's knowledge (the paper's transfer-learning recipe). The new elements get freshly
initialised networks and self-energies fitted to the new data with the parent's self-energies held fixed
(:func:`fit_new_self_energies`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
from ase.data import atomic_numbers

from .qrnn import QRNN

__all__ = ('extend_elements', 'fit_new_self_energies')


def _feature_columns(old: QRNN, new: QRNN, old_to_new: list[int], with_charge: bool) -> tuple[list[int], list[int]]:
    """Columns of the old networks' input and where each lands in the new input (same layout: AEV radial blocks,
    angular blocks by unordered species pair, charge-weighted radial blocks, then the charge)."""
    n_radial, n_angular = old.aev.n_radial, old.aev.n_angular
    old_columns: list[int] = []
    new_columns: list[int] = []
    for species, target in enumerate(old_to_new):  # radial AEV
        old_columns += range(species * n_radial, (species + 1) * n_radial)
        new_columns += range(target * n_radial, (target + 1) * n_radial)
    for first in range(old.n_species):  # angular AEV, one block per unordered pair
        for second in range(first, old.n_species):
            old_slot = int(old.aev.species_pair_slot[first, second])
            new_slot = int(new.aev.species_pair_slot[old_to_new[first], old_to_new[second]])
            old_columns += range(old.aev.radial_length + old_slot * n_angular,
                                 old.aev.radial_length + (old_slot + 1) * n_angular)
            new_columns += range(new.aev.radial_length + new_slot * n_angular,
                                 new.aev.radial_length + (new_slot + 1) * n_angular)
    for species, target in enumerate(old_to_new):  # charge-weighted radial AEV
        old_columns += range(old.aev.aev_length + species * n_radial, old.aev.aev_length + (species + 1) * n_radial)
        new_columns += range(new.aev.aev_length + target * n_radial, new.aev.aev_length + (target + 1) * n_radial)
    if with_charge:
        old_columns.append(old.aev.aev_length + old.n_species * n_radial)
        new_columns.append(new.aev.aev_length + new.n_species * n_radial)
    return old_columns, new_columns


def extend_elements(model: QRNN, elements: Sequence[str]) -> QRNN:
    """A copy of ``model`` that also knows ``elements`` it lacks (a no-op copy when it knows them all).

    The parent's elements keep their order, new ones follow by atomic number. Every parent network is copied, its
    first layer widened with zero weights on the new features; networks of new elements are freshly initialised
    (``torch`` RNG) and their self-energies are 0 until :func:`fit_new_self_energies` sets them. ``model`` is a
    plain :class:`QRNN` (as ``load_model`` or ``transfer.parent_model`` return it), not one a trainer has
    weight-normalised.

    :raises ValueError: for a symbol that is not a chemical element.
    """
    unknown = [symbol for symbol in elements if symbol not in atomic_numbers]
    if unknown:
        raise ValueError(f'elements {unknown} are not chemical symbols.')
    parent_elements = list(model.config.elements)
    added = sorted(set(elements) - set(parent_elements), key=atomic_numbers.__getitem__)
    config = dataclasses.replace(model.config, elements=(*parent_elements, *added))
    reference = next(model.parameters())
    child = QRNN(config).to(device=reference.device, dtype=reference.dtype)
    old_to_new = list(range(len(parent_elements)))  # parent species keep their index
    parent_state = model.state_dict()
    state = child.state_dict()
    with torch.no_grad():
        state['self_energies'][:len(parent_elements)] = parent_state['self_energies']
        for networks, with_charge in (('charge_networks', False), ('energy_networks', True)):
            old_columns, new_columns = _feature_columns(model, child, old_to_new, with_charge)
            for species, target in enumerate(old_to_new):
                prefix, new_prefix = f'{networks}.networks.{species}.', f'{networks}.networks.{target}.'
                for name, tensor in parent_state.items():
                    if not name.startswith(prefix):
                        continue
                    new_name = new_prefix + name.removeprefix(prefix)
                    if state[new_name].shape == tensor.shape:
                        state[new_name].copy_(tensor)
                    else:  # the first layer: (hidden, old features) into (hidden, new features), zeros elsewhere
                        state[new_name].zero_()
                        state[new_name][:, new_columns] = tensor[:, old_columns]
    child.load_state_dict(state)
    return child.train(model.training)


def fit_new_self_energies(
    model: QRNN, numbers: np.ndarray, offsets: np.ndarray, energies: np.ndarray, new_elements: Sequence[str],
) -> np.ndarray:
    """Least-squares self-energies (eV) of ``new_elements`` from clusters (``numbers``, ``offsets``, reference
    ``energies``), the model's other self-energies held fixed; written into the model and returned (elements,)."""
    from aiida_qrnn.core.training.self_energies import composition_matrix, fit_self_energies

    elements = tuple(model.config.elements)
    missing = [symbol for symbol in new_elements if symbol not in elements]
    if missing:
        raise ValueError(f'elements {missing} are not in the model (it knows {list(elements)}).')
    counts = composition_matrix(np.asarray(numbers), np.asarray(offsets), elements)  # (clusters, elements)
    fitted = model.self_energies.detach().cpu().double().numpy().copy()
    new = [elements.index(symbol) for symbol in new_elements]
    kept = [index for index in range(len(elements)) if index not in new]
    if new:
        present = counts[:, new].sum(0) > 0
        if not present.all():
            absent = [new_elements[index] for index in np.flatnonzero(~present)]
            raise ValueError(f'no cluster contains {absent}: their self-energies cannot be fitted.')
        residual = np.asarray(energies, dtype=float) - counts[:, kept] @ fitted[kept]
        fitted[new] = fit_self_energies(counts[:, new], residual)
    model.self_energies.copy_(torch.as_tensor(fitted, dtype=model.self_energies.dtype))
    return fitted
