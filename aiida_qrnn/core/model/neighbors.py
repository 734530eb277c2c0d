"""Half neighbour lists for flat batches of open clusters and periodic cells, with differentiable geometry.

The list is built in two steps so that forces and stress come out of autograd:

1. :func:`neighbor_pairs` finds the pairs (integers only, no gradient): vesin-torch cell lists for periodic
   systems and finite cutoffs (O(N), any cell shape), all pairs of each system for open clusters with an
   infinite cutoff (the training case).
2. :func:`pair_geometry` turns them into vectors and distances from positions and cells, so the result is
   differentiable with respect to both (a strain applied to both gives the stress).

Glossary (flat batch without padding): ``positions`` (atoms, 3) Å, ``system_index`` (atoms,) sorted in
``[0, n_systems)``, ``cells`` (n_systems, 3, 3) rows are cell vectors (zeros for open clusters),
``pbc`` (n_systems, 3) bool, ``pairs`` (2, pairs) atom indices ``[i, j]``, each unordered pair once,
``cell_shifts`` (pairs, 3) integer image counts with ``r_ij = positions[j] - positions[i] + cell_shifts @ cell``.
"""

from __future__ import annotations

import math
import typing as t

import torch

from aiida_qrnn.core.sanity import check_density

__all__ = ('NeighborList', 'neighbor_list', 'neighbor_pairs', 'pair_geometry', 'sum_over_pairs')


class NeighborList(t.NamedTuple):
    """A half list with its geometry: ``vectors = positions[j] - positions[i] + shifts``, ``shifts`` Cartesian (Å)."""

    pairs: torch.Tensor  # (2, pairs) int64
    cell_shifts: torch.Tensor  # (pairs, 3) integer image counts, in the dtype of positions
    shifts: torch.Tensor  # (pairs, 3) Å
    vectors: torch.Tensor  # (pairs, 3) Å
    distances: torch.Tensor  # (pairs,) Å


def _system_offsets(system_index: torch.Tensor, n_systems: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Atoms per system and the index of each system's first atom: both (n_systems,) int64."""
    counts = torch.bincount(system_index, minlength=n_systems)  # (systems,)
    return counts, torch.cumsum(counts, 0) - counts


def _all_pairs(counts: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    """Every pair i < j inside each system, vectorised over systems: (2, pairs) int64."""
    device = counts.device
    max_atoms = int(counts.max()) if counts.numel() else 0
    if max_atoms < 2:
        return torch.zeros((2, 0), dtype=torch.long, device=device)
    upper = torch.triu_indices(max_atoms, max_atoms, 1, device=device)  # (2, T)
    valid = upper[1].unsqueeze(0) < counts.unsqueeze(1)  # (systems, T): both atoms exist in this system
    system, slot = valid.nonzero().unbind(1)  # (pairs,), (pairs,)
    return upper[:, slot] + starts[system].unsqueeze(0)  # (2, pairs)


def neighbor_pairs(
    positions: torch.Tensor, system_index: torch.Tensor, cells: torch.Tensor, pbc: torch.Tensor, cutoff: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs closer than ``cutoff`` Å (``inf``: all pairs of open clusters) and their integer cell shifts.

    Returns ``pairs`` (2, pairs) int64 and ``cell_shifts`` (pairs, 3) in the dtype of ``positions``; no gradient.
    One vesin call per system whenever the cutoff is finite (systems, not atoms, are looped over). A fully
    periodic cell denser than any matter (:func:`aiida_qrnn.core.sanity.check_density`) is refused before any pair
    is searched: its pair list could not fit in memory.
    """
    n_systems = cells.shape[0]
    assert positions.shape == (system_index.shape[0], 3), 'positions must be (atoms, 3)'
    assert cells.shape == (n_systems, 3, 3) and pbc.shape == (n_systems, 3), 'cells (systems, 3, 3), pbc (systems, 3)'
    device, dtype = positions.device, positions.dtype
    counts, starts = _system_offsets(system_index, n_systems)
    periodic = pbc.any(dim=1)  # (systems,)
    if math.isinf(cutoff):
        if bool(periodic.any()):
            raise ValueError('an infinite pair cutoff is only possible for open clusters, not for periodic cells.')
        pairs = _all_pairs(counts, starts)
        return pairs, torch.zeros((pairs.shape[1], 3), dtype=dtype, device=device)
    from vesin.torch import NeighborList as VesinNeighborList

    calculator = VesinNeighborList(cutoff=float(cutoff), full_list=False)
    all_pairs, all_shifts = [], []
    detached = positions.detach()
    for system, (count, start) in enumerate(zip(counts.tolist(), starts.tolist(), strict=True)):
        if count < 2 and not bool(periodic[system]):
            continue
        box = cells[system].detach() if bool(periodic[system]) else torch.zeros((3, 3), dtype=dtype, device=device)
        if bool(pbc[system].all()):
            _check_density(count, box, system, cutoff)
        first, second, image = calculator.compute(
            detached[start:start + count], box, pbc[system], quantities='ijS', copy=True,
        )  # (pairs,), (pairs,), (pairs, 3)
        all_pairs.append(torch.stack([first, second]).to(torch.long) + start)
        all_shifts.append(image.to(dtype))
    if not all_pairs:
        return torch.zeros((2, 0), dtype=torch.long, device=device), torch.zeros((0, 3), dtype=dtype, device=device)
    return torch.cat(all_pairs, dim=1), torch.cat(all_shifts, dim=0)


def _check_density(count: int, cell: torch.Tensor, system: int, cutoff: float) -> None:
    """Raise for a periodic cell denser than matter, whose pair list at ``cutoff`` would not fit in memory."""
    problems = check_density(count, cell.detach().cpu().numpy())
    if problems:
        raise ValueError(f'system {system}: {problems[0]}, and its pair list at the {cutoff:g} Å cutoff would not fit '
                         'in memory. Check the cell (units are Å).')


def pair_geometry(
    positions: torch.Tensor, cells: torch.Tensor, system_index: torch.Tensor, pairs: torch.Tensor,
    cell_shifts: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cartesian shifts, vectors and distances of ``pairs``, differentiable w.r.t. ``positions`` and ``cells``.

    Gathers go through ``index_select`` (its backward is an ``index_add``, much faster on CPU than the
    ``index_put`` behind advanced indexing), and no (pairs, 3, 3) tensor of per-pair cells is built.
    """
    if cells.shape[0] == 1:  # one system (an MD box): one small matmul
        shifts = cell_shifts @ cells[0]  # (pairs, 3)
    else:  # S @ cell = S_0 a + S_1 b + S_2 c with the rows of each pair's cell
        pair_cells = cells.reshape(-1, 9).index_select(0, system_index.index_select(0, pairs[0]))  # (pairs, 9)
        shifts = (cell_shifts[:, 0:1] * pair_cells[:, 0:3] + cell_shifts[:, 1:2] * pair_cells[:, 3:6]
                  + cell_shifts[:, 2:3] * pair_cells[:, 6:9])  # (pairs, 3)
    vectors = positions.index_select(0, pairs[1]) - positions.index_select(0, pairs[0]) + shifts  # (pairs, 3)
    distances = torch.linalg.vector_norm(vectors, dim=1)  # (pairs,)
    return shifts, vectors, distances


def neighbor_list(
    positions: torch.Tensor, system_index: torch.Tensor, cells: torch.Tensor, pbc: torch.Tensor, cutoff: float,
) -> NeighborList:
    """:func:`neighbor_pairs` then :func:`pair_geometry`: the contract's half list in one call."""
    pairs, cell_shifts = neighbor_pairs(positions, system_index, cells, pbc, cutoff)
    shifts, vectors, distances = pair_geometry(positions, cells, system_index, pairs, cell_shifts)
    return NeighborList(pairs, cell_shifts, shifts, vectors, distances)


def sum_over_pairs(
    values: torch.Tensor, pairs: torch.Tensor, system_index: torch.Tensor, n_systems: int,
) -> torch.Tensor:
    """Sum of pair ``values`` (P,) per system: (n_systems,). One system (an MD box) is a plain sum, no gather."""
    if n_systems == 1:
        return values.sum(0, keepdim=True)
    pair_system = system_index.index_select(0, pairs[0])  # (P,)
    return values.new_zeros(n_systems).index_add(0, pair_system, values)
