"""Shared statistics: the production window of a run and block averages.

Block averaging (Flyvbjerg and Petersen, J. Chem. Phys. 91, 461 (1989)): a correlated series is cut into
``n_blocks`` contiguous blocks; when blocks are longer than the correlation time their means are independent,
and the standard error of the mean is std(block means, ddof=1) / sqrt(n_blocks).
"""

from __future__ import annotations

import numpy as np

DEFAULT_DISCARD_FRACTION = 0.2  # the paper averages over the last 800 ps of 1 ns
DEFAULT_N_BLOCKS = 5


def production(values: np.ndarray, discard_fraction: float = DEFAULT_DISCARD_FRACTION) -> np.ndarray:
    """The last ``1 - discard_fraction`` of a series (along its first axis)."""
    if not 0.0 <= discard_fraction < 1.0:
        raise ValueError(f'discard_fraction must be in [0, 1), got {discard_fraction!r}.')
    values = np.asarray(values)
    return values[round(discard_fraction * len(values)):]


def blocks(values: np.ndarray, n_blocks: int = DEFAULT_N_BLOCKS) -> list[np.ndarray]:
    """``n_blocks`` contiguous, nearly equal blocks of a series."""
    values = np.asarray(values)
    if not isinstance(n_blocks, int) or n_blocks < 2 or len(values) < 2 * n_blocks:
        raise ValueError(f'Block averaging needs n_blocks >= 2 and at least 2 samples per block; got '
                         f'n_blocks={n_blocks!r} for {len(values)} samples.')
    return np.array_split(values, n_blocks)


def block_average(values: np.ndarray, n_blocks: int = DEFAULT_N_BLOCKS) -> tuple[float, float]:
    """Mean and its block standard error."""
    means = np.array([block.mean() for block in blocks(values, n_blocks)])
    return float(np.mean(values)), float(means.std(ddof=1) / np.sqrt(n_blocks))
