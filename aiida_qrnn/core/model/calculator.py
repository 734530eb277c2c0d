"""ASE calculator for a :class:`.qrnn.QRNN`, and loading/saving models without AiiDA.

A model file is the safetensors file of :mod:`.file_format` (weights plus ``config`` and ``elements`` in its
metadata), which ``ModelData.export`` writes too. Loading never executes code (safetensors holds plain tensors only).
"""

from __future__ import annotations

import pathlib
import typing as t

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from .file_format import read_model_file, write_model_file
from .neighbors import neighbor_pairs
from .qrnn import QRNN, QRNNConfig, evaluate

__all__ = ('ModelSource', 'QRNNCalculator', 'load_model', 'read_model_file', 'save_model')

class ModelSource(t.Protocol):
    """Anything with weights, a config and elements: ``ModelData`` is one."""

    config: dict
    elements: list[str]

    def get_state_dict(self) -> dict[str, torch.Tensor]: ...


def _build(config: dict, elements: list[str], state_dict: dict[str, torch.Tensor], origin: str) -> QRNN:
    try:
        model_config = QRNNConfig.from_dict(config)
    except (TypeError, ValueError) as exception:
        raise ValueError(f'{origin}: invalid model config ({exception}).') from None
    if list(model_config.elements) != list(elements):
        raise ValueError(f'{origin}: elements {elements} differ from config elements {list(model_config.elements)}.')
    dtypes = {tensor.dtype for tensor in state_dict.values() if tensor.is_floating_point()}
    model = QRNN(model_config).to(torch.float64 if torch.float64 in dtypes else torch.float32)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exception:
        raise ValueError(f'{origin}: weights do not fit the config ({exception}).') from None
    return model.eval()


def load_model(source: ModelSource | str | pathlib.Path) -> QRNN:
    """A :class:`QRNN` from a ``ModelData``-like object or a model file, in the dtype its weights were saved in."""
    if isinstance(source, str | pathlib.Path):
        state_dict, config, elements = read_model_file(source)
        return _build(config, elements, state_dict, f"'{source}'")
    return _build(dict(source.config), list(source.elements), source.get_state_dict(), repr(source))


def save_model(model: QRNN, path: str | pathlib.Path) -> pathlib.Path:
    """Write ``model`` as a model file that :func:`load_model` and ``ModelData.from_file`` read."""
    config = model.config.to_dict()
    return write_model_file(path, model.state_dict(), config, config['elements'])


class QRNNCalculator(Calculator):
    """ASE calculator: ``energy`` (eV), ``forces`` (atoms, 3) eV/Å, ``stress`` (6,) eV/Å³ Voigt (periodic cells),
    ``charges`` (atoms,) e, ``dipole`` (3,) e·Å (open clusters: Σ q_i r_i).

    The total charge is ``atoms.info['total_charge']`` (or ``'charge'``), else 0. ``mode='script'`` runs the
    TorchScript version of the model, ``mode='compile'`` wraps it in ``torch.compile`` (both for MD).
    ``neighbor_skin_A`` > 0 keeps a Verlet list built at cutoff + skin until an atom has moved skin/2 or the cell
    changed.
    """

    implemented_properties: t.ClassVar[list[str]] = ['energy', 'free_energy', 'forces', 'stress', 'charges', 'dipole']

    def __init__(
        self, model: QRNN, *, device: str | torch.device = 'cpu', dtype: torch.dtype | None = None,
        mode: str = 'eager', neighbor_skin_A: float = 0.0, **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in ('eager', 'script', 'compile'):
            raise ValueError(f"mode must be 'eager', 'script' or 'compile', got {mode!r}.")
        if neighbor_skin_A < 0:
            raise ValueError(f'neighbor_skin_A must be >= 0, got {neighbor_skin_A}.')
        self.device = torch.device(device)
        self.dtype = dtype or next(model.parameters()).dtype
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.periodic_cutoff = model.periodic_cutoff
        self.open_cluster_cutoff = model.open_cluster_cutoff
        if mode == 'script':
            self.runner = torch.jit.script(self.model)
        elif mode == 'compile':
            self.runner = torch.compile(self.model, dynamic=True)
        else:
            self.runner = self.model
        self.neighbor_skin = float(neighbor_skin_A)
        self._cached: tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray] | None = None

    @classmethod
    def from_model(cls, source: ModelSource | str | pathlib.Path, **kwargs) -> QRNNCalculator:
        """From a ``ModelData`` node (or anything with ``get_state_dict``/``config``/``elements``) or a model file."""
        return cls(load_model(source), **kwargs)

    def _pairs(self, atoms: Atoms, tensors: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        periodic = bool(atoms.pbc.any())
        cutoff = self.periodic_cutoff if periodic else self.open_cluster_cutoff
        if self.neighbor_skin == 0.0 or not np.isfinite(cutoff):
            return neighbor_pairs(tensors['positions'], tensors['system_index'], tensors['cells'], tensors['pbc'],
                                  cutoff)
        if self._cached is not None:
            pairs, shifts, reference_positions, reference_cell = self._cached
            if (reference_positions.shape == atoms.positions.shape and np.array_equal(reference_cell, atoms.cell.array)
                    and np.abs(atoms.positions - reference_positions).max() < self.neighbor_skin / 2):
                return pairs, shifts
        pairs, shifts = neighbor_pairs(tensors['positions'], tensors['system_index'], tensors['cells'],
                                       tensors['pbc'], cutoff + self.neighbor_skin)
        self._cached = (pairs, shifts, atoms.positions.copy(), atoms.cell.array.copy())
        return pairs, shifts

    def calculate(self, atoms: Atoms | None = None, properties: list[str] | None = None,
                  system_changes: list[str] = all_changes) -> None:
        properties = properties or ['energy']
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        periodic = bool(atoms.pbc.any())
        compute_stress = periodic and 'stress' in properties  # the strain graph costs time; NVT MD skips it
        total_charge = float(atoms.info.get('total_charge', atoms.info.get('charge', 0.0)))
        tensors = {
            'positions': torch.tensor(atoms.positions, dtype=self.dtype, device=self.device),
            'numbers': torch.tensor(atoms.numbers, dtype=torch.long, device=self.device),
            'system_index': torch.zeros(len(atoms), dtype=torch.long, device=self.device),
            'cells': torch.tensor(atoms.cell.array if periodic else np.zeros((3, 3)), dtype=self.dtype,
                                  device=self.device).unsqueeze(0),
            'pbc': torch.tensor(atoms.pbc, device=self.device).unsqueeze(0),
            'total_charge': torch.tensor([total_charge], dtype=self.dtype, device=self.device),
        }
        results = evaluate(
            self.runner, tensors['positions'], tensors['numbers'], tensors['system_index'], tensors['cells'],
            tensors['pbc'], tensors['total_charge'], compute_forces=True, compute_stress=compute_stress,
            pairs=self._pairs(atoms, tensors),
        )
        energy = float(results['energy'].detach()[0])
        self.results = {
            'energy': energy, 'free_energy': energy,
            'forces': results['forces'].detach().cpu().numpy().astype(np.float64),
            'charges': results['charges'].detach().cpu().numpy().astype(np.float64),
        }
        if compute_stress:
            stress = results['stress'].detach()[0].cpu().numpy().astype(np.float64)  # (3, 3)
            self.results['stress'] = stress.flat[[0, 4, 8, 5, 2, 1]]  # Voigt xx yy zz yz xz xy
        else:
            self.results['dipole'] = results['dipole'].detach()[0].cpu().numpy().astype(np.float64)
