"""Active-learning selection: committee disagreement per cluster and the rules that pick clusters to label.

Scores (paper eq. 2, and the usual per-atom alternative):

    ρ^f = Σ_{i=1}^{N_a} Σ_{x,y,z} σ²(f_{i,x}) / √N_a            (σ² over the committee members)
    d_max = max_i √(Σ_{x,y,z} σ²(f_{i,x}))                        (largest per-atom force deviation)

Rules:

* the paper's: the ``k`` clusters with the highest ρ^f plus ``k_random`` drawn uniformly from the rest;
* trust levels: clusters whose ``d_max`` lies in [lower, upper) — below ``lower`` the committee agrees (already
  learned), above ``upper`` the geometry is likely unphysical and not worth a DFT label.

Scoring runs in batches bounded by a number of atoms, so arbitrarily large candidate sets fit in memory, on any
device the committee's models live on.
"""

from __future__ import annotations

import typing as t

import numpy as np
import torch

from .dataset import ClusterArrays

if t.TYPE_CHECKING:
    from pathlib import Path

    from .model.committee import Committee

__all__ = (
    'committee_scores',
    'plot_error_vs_rho_f',
    'select_by_trust_levels',
    'select_top_k_plus_random',
)

SCORE_NAMES = ('rho_f', 'max_force_deviation', 'energy_std', 'energy')


def committee_scores(
    committee: Committee, clusters: ClusterArrays, *, max_batch_atoms: int = 20_000,
    device: str | torch.device = 'cpu', dtype: torch.dtype = torch.float32, progress: bool = False,
) -> dict[str, np.ndarray]:
    """ρ^f, the largest per-atom force deviation (eV/Å), the committee's energy spread and mean energy (eV) for
    every cluster of ``clusters``, in order. Open (non-periodic) clusters only.

    Clusters are evaluated in consecutive batches of at most ``max_batch_atoms`` atoms (a single larger cluster
    forms its own batch).
    """
    if np.any(clusters.pbc):
        first = int(np.flatnonzero(np.any(clusters.pbc, axis=1))[0])
        raise ValueError(f'cluster {first} is periodic; committee scores are defined here for open clusters only.')
    if max_batch_atoms < 1:
        raise ValueError(f'max_batch_atoms must be positive, got {max_batch_atoms}.')
    sizes = np.diff(clusters.offsets)  # (clusters,)
    results = {name: np.empty(clusters.n_clusters) for name in SCORE_NAMES}
    batches = _atom_bounded_batches(sizes, max_batch_atoms)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc='committee scores', unit='batch')
    for first, last in batches:
        start, stop = int(clusters.offsets[first]), int(clusters.offsets[last])
        system_index = torch.repeat_interleave(torch.arange(last - first), torch.as_tensor(sizes[first:last]))
        statistics = committee.evaluate(
            torch.as_tensor(clusters.positions[start:stop], dtype=dtype, device=device),
            torch.as_tensor(clusters.numbers[start:stop].astype(np.int64), device=device),
            system_index.to(device),
            torch.zeros((last - first, 3, 3), dtype=dtype, device=device),
            torch.zeros((last - first, 3), dtype=torch.bool, device=device),
            torch.as_tensor(clusters.total_charge[first:last], dtype=dtype, device=device),
        )
        deviation = statistics['force_variance'].sum(1).sqrt()  # (atoms,)
        largest = torch.full((last - first,), -torch.inf, dtype=deviation.dtype, device=device)
        largest = largest.scatter_reduce(0, system_index.to(device), deviation, reduce='amax')  # (systems,)
        results['rho_f'][first:last] = statistics['rho_f'].cpu().numpy()
        results['max_force_deviation'][first:last] = largest.cpu().numpy()
        results['energy_std'][first:last] = statistics['energy_std'].cpu().numpy()
        results['energy'][first:last] = statistics['energy'].cpu().numpy()
    return results


def _atom_bounded_batches(sizes: np.ndarray, max_atoms: int) -> list[tuple[int, int]]:
    """Consecutive [first, last) cluster ranges whose atom counts add up to at most ``max_atoms`` (or one cluster)."""
    batches, first, atoms = [], 0, 0
    for index, size in enumerate(sizes):
        if atoms and atoms + size > max_atoms:
            batches.append((first, index))
            first, atoms = index, 0
        atoms += int(size)
    batches.append((first, len(sizes)))
    return batches


def select_top_k_plus_random(
    scores: np.ndarray, k: int, k_random: int, *, seed: int, eligible: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The paper's rule: the ``k`` highest ``scores`` plus ``k_random`` uniformly among the remaining ``eligible``.

    Ties are broken by the lower index, so the result depends only on the inputs and ``seed``. ``eligible`` (bool per
    cluster, default all) limits both draws (the paper draws the random part from conformational clusters only).
    Returns sorted index arrays ``top`` and ``random``.
    """
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 1 or not np.all(np.isfinite(scores)):
        raise ValueError('scores must be a one-dimensional array of finite numbers.')
    eligible = np.ones(len(scores), bool) if eligible is None else np.asarray(eligible, bool)
    if eligible.shape != scores.shape:
        raise ValueError(f'eligible has shape {eligible.shape}, expected {scores.shape}.')
    candidates = np.flatnonzero(eligible)
    if k < 0 or k_random < 0 or k + k_random > len(candidates):
        raise ValueError(f'cannot select k={k} plus k_random={k_random} from {len(candidates)} eligible clusters.')
    order = candidates[np.lexsort((candidates, -scores[candidates]))]  # highest score first, then lowest index
    top = np.sort(order[:k])
    rest = order[k:]
    drawn = np.random.default_rng(seed).choice(len(rest), size=k_random, replace=False)
    return {'top': top, 'random': np.sort(rest[drawn])}


def select_by_trust_levels(
    max_force_deviation: np.ndarray, lower: float, upper: float, *, max_selected: int | None = None, seed: int = 0,
) -> np.ndarray:
    """Sorted indices with ``lower <= d_max < upper`` (eV/Å); a seeded random subset of ``max_selected`` if given."""
    if not 0 <= lower < upper:
        raise ValueError(f'trust levels must satisfy 0 <= lower < upper, got lower={lower}, upper={upper}.')
    deviation = np.asarray(max_force_deviation, dtype=float)
    chosen = np.flatnonzero((deviation >= lower) & (deviation < upper))
    if max_selected is not None and len(chosen) > max_selected:
        chosen = np.sort(np.random.default_rng(seed).choice(chosen, size=max_selected, replace=False))
    return chosen


def plot_error_vs_rho_f(
    rho_f: np.ndarray, energy_error: np.ndarray, path: str | Path, *, selected: np.ndarray | None = None,
    random: np.ndarray | None = None, bins: int = 60,
) -> Path:
    """The paper's Fig. 5: (a) ε = |E_ref − E_model| against ρ^f with the selected (red) and random (blue)
    clusters marked, (b) a 2-D histogram coloured by counts^(1/5). Written as PNG to ``path``."""
    from pathlib import Path

    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.colors import PowerNorm

    rho_f, energy_error = np.asarray(rho_f, float), np.asarray(energy_error, float)
    figure, (scatter, heat) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    scatter.scatter(rho_f, energy_error, s=4, c='0.7', label='all candidates')
    if random is not None:
        scatter.scatter(rho_f[random], energy_error[random], s=6, c='tab:blue', label='random')
    if selected is not None:
        scatter.scatter(rho_f[selected], energy_error[selected], s=6, c='tab:red', label='highest ρ$^f$')
    for axis in (scatter, heat):
        axis.set_xlabel('ρ$^f$ / (eV/Å)$^2$')
        axis.set_ylabel('ε = |E$_{ref}$ − E$_{model}$| / eV')
    scatter.legend(loc='upper left')
    scatter.set_title('(a) candidates on the ε vs ρ$^f$ landscape')
    counts = heat.hist2d(rho_f, energy_error, bins=bins, norm=PowerNorm(0.2), cmap='viridis')
    figure.colorbar(counts[3], ax=heat, label='counts (scale: counts$^{1/5}$)')
    heat.set_title('(b) density of candidates')
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
