"""Force fields for :class:`~.engine.MDEngine`: the QRNN on its device, and any ASE calculator through the host.

* :class:`QRNNForceField`: one :func:`~aiida_qrnn.core.model.qrnn.evaluate` call for all replicas (a flat
  batch), forces and stress from one backward pass, on a Verlet neighbour list built at cutoff + skin.
* :class:`CalculatorForceField`: any ASE calculator, replica by replica on the host; what the engine needs to
  run the Lennard-Jones tests and third-party potentials, at the price of a device-host copy per step.

The Verlet list stays valid while no pair can have crossed from beyond cutoff + skin to inside the cutoff. With
positions x and cell h at the build and x', h' now, D = h⁻¹ h' the deformation and y = x' D⁻¹ the positions
mapped back to the build cell, every pair vector is r' = (y_j - y_i + S h) D, so
|r'| ≥ σ_min(D) (|r| - 2 max|y - x|), and σ_min(D) ≥ 1 - ‖D - 1‖_F. The list is rebuilt when
(1 - ‖D - 1‖_F) (cutoff + skin - 2 max|y - x|) ≤ cutoff for any replica: for a fixed cell that is the familiar
"an atom moved more than skin/2". The test runs on the device; the host reads one boolean per step.
"""

from __future__ import annotations

import math
import typing as t

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator

from .engine import ForceResult

if t.TYPE_CHECKING:
    from ..model.calculator import QRNNCalculator

__all__ = ('DEFAULT_SKIN_A', 'CalculatorForceField', 'QRNNForceField', 'VerletList')

#: Å, Verlet skin when the calculator asks for none (an exact list every step would cost a search per step).
DEFAULT_SKIN_A = 1.0


class VerletList:
    """Pairs within cutoff + skin for a flat batch, rebuilt only when the bound in the module docstring fails."""

    def __init__(self, system_index: torch.Tensor, pbc: torch.Tensor, cutoff: float, skin: float) -> None:
        self.system_index, self.pbc, self.cutoff, self.skin = system_index, pbc, float(cutoff), float(skin)
        self.pairs: tuple[torch.Tensor, torch.Tensor] | None = None
        self.n_builds = 0

    def get(self, positions: torch.Tensor, cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pairs (2, P), cell_shifts (P, 3))`` valid for ``positions`` (atoms, 3) and ``cells`` (replicas, 3, 3)."""
        from ..model.neighbors import neighbor_pairs

        if self.pairs is None or (not math.isinf(self.cutoff) and bool(self._expired(positions, cells))):
            finite = torch.nan_to_num(positions.detach(), nan=0.0, posinf=0.0, neginf=0.0)  # a diverged replica
            self.pairs = neighbor_pairs(finite, self.system_index, cells.detach(), self.pbc, self.cutoff + self.skin)
            self._reference_positions = positions.detach().clone()
            self._reference_cells = cells.detach().clone()
            self.n_builds += 1
        return self.pairs

    def _expired(self, positions: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """One device boolean: some replica's list may miss a pair (NaN positions never expire it)."""
        periodic = self.pbc.any(1)  # (replicas,)
        identity = torch.eye(3, dtype=cells.dtype, device=cells.device).expand_as(cells)
        safe_reference = torch.where(periodic[:, None, None], self._reference_cells, identity)
        safe_current = torch.where(periodic[:, None, None], cells, identity)
        deformation = torch.linalg.solve(safe_reference, safe_current)  # (replicas, 3, 3) D = h0^-1 h
        back = torch.linalg.solve(safe_current, safe_reference)  # D^-1
        mapped = torch.einsum('na,nab->nb', positions, back[self.system_index])  # (atoms, 3)
        displacement = torch.linalg.vector_norm(mapped - self._reference_positions, dim=1)  # (atoms,)
        largest = displacement.new_zeros(cells.shape[0]).scatter_reduce_(0, self.system_index, displacement, 'amax')
        distortion = torch.linalg.matrix_norm(deformation - identity)  # (replicas,) Frobenius
        return ((1 - distortion) * (self.cutoff + self.skin - 2 * largest) <= self.cutoff).any()


class QRNNForceField:
    """A QRNN for R replicas in one flat batch: energy, forces and (on request) stress from one backward pass.

    ``numbers`` (atoms,), ``system_index`` (atoms,), ``pbc`` (replicas, 3), ``total_charge`` (replicas,).
    The model runs in its own dtype; results are returned in float64.
    """

    def __init__(self, model: torch.nn.Module, numbers: torch.Tensor, system_index: torch.Tensor, pbc: torch.Tensor,
                 total_charge: torch.Tensor, *, dtype: torch.dtype, skin_A: float = DEFAULT_SKIN_A,
                 runner: torch.nn.Module | None = None) -> None:
        self.model, self.runner, self.dtype = model, runner if runner is not None else model, dtype
        self.numbers, self.system_index, self.pbc, self.total_charge = numbers, system_index, pbc, total_charge
        periodic = bool(pbc.any())
        self.periodic = periodic
        cutoff = model.periodic_cutoff if periodic else model.open_cluster_cutoff
        self.neighbors = VerletList(system_index, pbc, cutoff, skin_A)

    @classmethod
    def from_calculator(cls, calculator: QRNNCalculator, atoms_list: list[Atoms]) -> QRNNForceField:
        """For the replicas ``atoms_list`` on the calculator's model, device, dtype and skin."""
        device = calculator.device
        counts = torch.as_tensor([len(atoms) for atoms in atoms_list], device=device)
        charges = [float(atoms.info.get('total_charge', atoms.info.get('charge', 0.0))) for atoms in atoms_list]
        return cls(
            calculator.model,
            torch.as_tensor(np.concatenate([atoms.numbers for atoms in atoms_list]), dtype=torch.long, device=device),
            torch.repeat_interleave(torch.arange(len(atoms_list), device=device), counts),
            torch.as_tensor(np.array([atoms.pbc for atoms in atoms_list]), device=device),
            torch.as_tensor(charges, dtype=calculator.dtype, device=device),
            dtype=calculator.dtype, skin_A=calculator.neighbor_skin or DEFAULT_SKIN_A,
            runner=getattr(calculator, 'runner', None),
        )

    def __call__(self, positions: torch.Tensor, cells: torch.Tensor, compute_stress: bool) -> ForceResult:
        from ..model.qrnn import evaluate

        compute_stress = compute_stress and self.periodic
        model_positions = positions.to(self.dtype)
        model_cells = cells.to(self.dtype) if self.periodic else torch.zeros_like(cells, dtype=self.dtype)
        results = evaluate(
            self.runner, model_positions, self.numbers, self.system_index, model_cells, self.pbc, self.total_charge,
            compute_forces=True, compute_stress=compute_stress,
            pairs=self.neighbors.get(model_positions, model_cells),
        )
        stress = results['stress'].detach().to(torch.float64) if compute_stress else None
        charges = results['charges'].detach().to(torch.float64) if 'charges' in results else None
        return ForceResult(results['energy'].detach().to(torch.float64),
                           results['forces'].detach().to(torch.float64), stress, charges)

    def select(self, replicas: list[int]) -> QRNNForceField:
        keep = torch.as_tensor(replicas, dtype=torch.long, device=self.numbers.device)
        renumber = torch.full((self.total_charge.shape[0],), -1, dtype=torch.long, device=keep.device)
        renumber[keep] = torch.arange(len(replicas), device=keep.device)
        atom_mask = renumber[self.system_index] >= 0
        order = torch.argsort(renumber[self.system_index[atom_mask]], stable=True)
        atoms = atom_mask.nonzero().squeeze(1)[order]
        system_index = renumber[self.system_index[atoms]]
        selected = QRNNForceField(self.model, self.numbers[atoms], system_index, self.pbc[keep],
                                  self.total_charge[keep], dtype=self.dtype, skin_A=self.neighbors.skin,
                                  runner=self.runner)
        return selected


class CalculatorForceField:
    """Any ASE calculator, one replica at a time on the host (float64 numpy in, tensors out).

    A replica whose positions are not finite is not passed to the calculator (many raise on NaN); it gets NaN
    energy and forces, which the runner's guard reports as ``UNSTABLE_NOT_FINITE``.
    """

    def __init__(self, calculator: Calculator, atoms_list: list[Atoms], device: torch.device | str = 'cpu') -> None:
        self.calculator, self.device = calculator, torch.device(device)
        self.atoms_list = [atoms.copy() for atoms in atoms_list]
        for atoms in self.atoms_list:
            atoms.calc = calculator
        self._bounds = np.cumsum([0, *(len(atoms) for atoms in atoms_list)])

    def __call__(self, positions: torch.Tensor, cells: torch.Tensor, compute_stress: bool) -> ForceResult:
        positions_host, cells_host = positions.cpu().numpy(), cells.cpu().numpy()
        energies, forces, stresses = [], [], []
        for replica, atoms in enumerate(self.atoms_list):
            replica_positions = positions_host[self._bounds[replica]:self._bounds[replica + 1]]
            wants_stress = (compute_stress and bool(atoms.pbc.all())
                            and 'stress' in self.calculator.implemented_properties)
            if not (np.isfinite(replica_positions).all() and np.isfinite(cells_host[replica]).all()):
                energies.append(np.nan)
                forces.append(np.full((len(atoms), 3), np.nan))
                stresses.append(np.full((3, 3), np.nan))
                continue
            if atoms.pbc.any():
                atoms.set_cell(cells_host[replica], scale_atoms=False)
            atoms.set_positions(replica_positions)
            energies.append(atoms.get_potential_energy())
            forces.append(atoms.get_forces())
            stresses.append(atoms.get_stress(voigt=False) if wants_stress else np.full((3, 3), np.nan))
        stress = torch.as_tensor(np.array(stresses), device=self.device) if compute_stress else None
        return ForceResult(torch.as_tensor(np.array(energies, dtype=np.float64), device=self.device),
                           torch.as_tensor(np.concatenate(forces), dtype=torch.float64, device=self.device), stress)

    def select(self, replicas: list[int]) -> CalculatorForceField:
        return CalculatorForceField(self.calculator, [self.atoms_list[r] for r in replicas], self.device)
