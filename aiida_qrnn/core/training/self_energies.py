"""Per-element self-energies fitted by least squares before training, so the networks learn only what is left.

E_ref(cluster) ≈ Σ_e n_e(cluster) · ε_e, with n_e the count of element e; ε solves the least-squares problem over
the training clusters (``numpy.linalg.lstsq``, minimum-norm when the compositions do not fix every ε).
"""

from __future__ import annotations

import numpy as np
from ase.data import atomic_numbers

__all__ = ('composition_matrix', 'fit_self_energies')


def composition_matrix(numbers: np.ndarray, offsets: np.ndarray, elements: tuple[str, ...]) -> np.ndarray:
    """(clusters, elements) counts of each element in each cluster."""
    system = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))  # (atoms,)
    counts = np.zeros((len(offsets) - 1, len(elements)))
    for column, symbol in enumerate(elements):
        np.add.at(counts[:, column], system[numbers == atomic_numbers[symbol]], 1.0)
    return counts


def fit_self_energies(counts: np.ndarray, energies: np.ndarray) -> np.ndarray:
    """(elements,) ε in eV minimising Σ_c (E_c - counts_c · ε)²."""
    if counts.shape[0] != energies.shape[0]:
        raise ValueError(f'{counts.shape[0]} compositions but {energies.shape[0]} energies.')
    solution, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return solution
