"""Tiny random-weight QRNNs for tests and benchmarks, and clusters labelled by a random "teacher" QRNN.

The weights are random: forces are smooth and cheap but not physical. A student of :data:`TINY_CONFIG` can fit the
teacher's labels exactly, a reachable target for overfit tests. Only :func:`small_qrnn_node` needs AiiDA.
"""

from __future__ import annotations

import typing as t

import numpy as np
import torch
from ase import Atoms

from aiida_qrnn.core.dataset import ClusterArrays
from aiida_qrnn.core.model.aev import AEVConfig
from aiida_qrnn.core.model.qrnn import DEFAULT_COULOMB, QRNN, QRNNConfig, evaluate

from .structures import make_water_clusters

if t.TYPE_CHECKING:
    from aiida_qrnn.data.model import ModelData

#: Five radial and two angular shifts: the smallest AEV the model accepts with its default cutoffs.
TINY_AEV = AEVConfig(radial_shifts=(0.9, 1.8, 2.7, 3.6, 4.5), angular_shifts=(0.9, 2.2), angle_sections=(0.4, 2.0))
#: Water only (H, O), one hidden layer of 8, Coulomb on and no dispersion.
TINY_CONFIG = QRNNConfig(elements=('H', 'O'), aev=TINY_AEV, charge_hidden=(8,), energy_hidden=(8,), dispersion=None)
#: Free-atom energy scale (eV) given to the self-energies of :func:`scaled_random_model`.
ROUGH_ATOM_ENERGIES_EV = {'H': -13.6, 'C': -1029.0, 'N': -1485.0, 'O': -2041.0}


def tiny_model(seed: int, config: QRNNConfig = TINY_CONFIG) -> QRNN:
    """A float64 QRNN of ``config`` with random weights drawn after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    return QRNN(config).double()


def small_qrnn_model(seed: int = 0) -> QRNN:
    """:func:`tiny_model` for the default elements (H, C, N, O): pipeline tests of training, MD and scoring."""
    return tiny_model(seed, QRNNConfig(aev=TINY_AEV, charge_hidden=(8,), energy_hidden=(8,), dispersion=None))


def tiny_md_model(seed: int = 0) -> QRNN:
    """Small layers, a 4 Å cutoff, neither Coulomb nor dispersion: a smooth, short-ranged QRNN for MD tests."""
    aev = AEVConfig(radial_cutoff=4.0, radial_shifts=(0.9, 1.8, 2.7, 3.6), angular_shifts=(0.9, 2.2),
                    angle_sections=(0.4, 2.0))
    return tiny_model(seed, QRNNConfig(aev=aev, charge_hidden=(8,), energy_hidden=(8,), coulomb=None,
                                       dispersion=None))


def scaled_random_model(seed: int = 0, dtype: torch.dtype = torch.float64, long_range: bool = True,
                        scale: float = 20.0, **overrides) -> QRNN:
    """Random weights with the output layers scaled by ``scale``, so that charges (~0.1-1 e), energies and forces
    are far from zero and every physics check can fail on a wrong model; ``overrides`` are ``QRNNConfig`` fields."""
    torch.manual_seed(seed)
    options = {'coulomb': dict(DEFAULT_COULOMB) if long_range else None, 'dispersion': {} if long_range else None}
    options.update(overrides)
    model = QRNN(QRNNConfig(**options))
    with torch.no_grad():
        for networks in (model.charge_networks, model.energy_networks):
            for network in networks.networks:
                network[-1].weight.mul_(scale)
        model.self_energies.copy_(
            torch.tensor([ROUGH_ATOM_ENERGIES_EV[symbol] for symbol in model.config.elements]))
    return model.to(dtype)


def teacher_labelled_clusters(n_clusters: int, *, seed: int = 0, teacher_seed: int = 123) -> ClusterArrays:
    """Water clusters (1-3 molecules) with energy, forces, charges and dipole from a random teacher QRNN.

    The teacher's self-energies are set to realistic magnitudes (eV per element), so the self-energy fit matters.
    """
    teacher = tiny_model(teacher_seed)
    teacher.self_energies.copy_(torch.tensor([-13.6, -2040.0], dtype=torch.float64))
    return label_with_teacher(ClusterArrays.from_atoms(make_water_clusters(n_clusters, seed=seed)), teacher)


def label_with_teacher(arrays: ClusterArrays, teacher: QRNN) -> ClusterArrays:
    """``arrays`` with energy, forces, charges and dipole labels from ``teacher`` (checked)."""
    sizes = np.diff(arrays.offsets)
    output = evaluate(
        teacher, torch.from_numpy(arrays.positions), torch.from_numpy(arrays.numbers.astype(np.int64)),
        torch.from_numpy(np.repeat(np.arange(len(sizes)), sizes)), torch.from_numpy(arrays.cell),
        torch.from_numpy(arrays.pbc), torch.from_numpy(arrays.total_charge.astype(np.float64)),
    )
    arrays.labels = {name: output[name].detach().numpy() for name in ('energy', 'forces', 'charges', 'dipole')}
    return arrays.validate()


def small_qrnn_node(seed: int = 0) -> ModelData:
    """:func:`small_qrnn_model` as an unstored ``ModelData`` node."""
    from aiida_qrnn.data.model import ModelData

    model = small_qrnn_model(seed)
    return ModelData(model.state_dict(), config=model.config.to_dict(), elements=list(model.config.elements))


def flat_batch(images: list[Atoms], dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    """``images`` as the flat batch :func:`~aiida_qrnn.core.model.qrnn.evaluate` takes (atoms concatenated,
    ``system_index`` per atom, one cell, pbc and total charge per system)."""
    return {
        'positions': torch.tensor(np.concatenate([atoms.positions for atoms in images]), dtype=dtype),
        'numbers': torch.tensor(np.concatenate([atoms.numbers for atoms in images])),
        'system_index': torch.cat([torch.full((len(atoms),), index) for index, atoms in enumerate(images)]),
        'cells': torch.tensor(np.stack([atoms.cell.array for atoms in images]), dtype=dtype),
        'pbc': torch.tensor(np.stack([atoms.pbc for atoms in images])),
        'total_charge': torch.tensor([atoms.info.get('total_charge', 0) for atoms in images], dtype=dtype),
    }


def evaluate_images(model: torch.nn.Module, images: list[Atoms], **kwargs) -> dict[str, torch.Tensor]:
    """The detached outputs of ``evaluate(model, ...)`` on ``images``, in the model's dtype."""
    batch = flat_batch(images, next(model.parameters()).dtype)
    return {name: value.detach() for name, value in evaluate(model, **batch, **kwargs).items()}
