"""Closed-form charge equilibration: exact constraint, the Lagrange solution, batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aiida_qrnn.core.model.qeq import charge_equilibration


@pytest.mark.parametrize('total_charges', [(0.0, 1.0, -1.0), (2.0, -3.0, 0.5)])
def test_batched_charges_solve_the_constrained_minimum(total_charges):
    """Each system's charges sum to its Q and solve the bordered linear system of the Lagrange conditions."""
    generator = torch.Generator().manual_seed(0)
    sizes = [3, 7, 1]
    system_index = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes))
    electronegativity = torch.randn(sum(sizes), generator=generator, dtype=torch.float64)
    hardness = torch.rand(sum(sizes), generator=generator, dtype=torch.float64) * 5 + 0.5
    total_charge = torch.tensor(total_charges, dtype=torch.float64)
    charges = charge_equilibration(electronegativity, hardness, total_charge, system_index, 3)
    sums = torch.zeros(3, dtype=torch.float64).index_add(0, system_index, charges)
    torch.testing.assert_close(sums, total_charge, atol=1e-12, rtol=0)
    start = 0
    for system, size in enumerate(sizes):
        chi, hard = electronegativity[start:start + size].numpy(), hardness[start:start + size].numpy()
        matrix = np.zeros((size + 1, size + 1))
        matrix[:size, :size] = np.diag(hard)
        matrix[:size, size] = -1.0  # -λ
        matrix[size, :size] = 1.0
        solution = np.linalg.solve(matrix, np.concatenate([-chi, [total_charges[system]]]))
        np.testing.assert_allclose(charges[start:start + size].numpy(), solution[:size], atol=1e-12)
        start += size


def test_float32_charge_sum():
    system_index = torch.zeros(50, dtype=torch.long)
    charges = charge_equilibration(torch.randn(50), torch.rand(50) + 0.5, torch.tensor([-1.0]), system_index, 1)
    assert abs(float(charges.sum()) + 1.0) < 1e-5
