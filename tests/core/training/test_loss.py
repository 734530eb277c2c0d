"""Multitask loss (Kendall): formula, optimum of the learned σ, fixed weights, per-atom energy error; self-energy
least squares."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aiida_qrnn.core.training import ClusterBatch, MultitaskLoss, composition_matrix, fit_self_energies


def test_learned_loss_is_the_papers_formula():
    loss = MultitaskLoss(('energy', 'forces', 'charges'))
    sigma = torch.tensor([0.5, 2.0, 1.5], dtype=torch.float64)
    with torch.no_grad():
        loss.log_variances.copy_(torch.log(sigma**2))
    task_losses = torch.tensor([0.3, 4.0, 0.01], dtype=torch.float64)
    expected = (task_losses / (2 * sigma**2)).sum() + torch.log(sigma.prod())
    assert float(loss.combine(task_losses).detach()) == pytest.approx(float(expected), rel=1e-12)


def test_learned_sigma_goes_to_the_task_error():
    """∂L/∂s_t = ½(1 - e^{-s_t} L_t) vanishes at σ_t² = L_t (a minimum), so σ_t tracks each task's error."""
    loss = MultitaskLoss(('energy', 'forces'))
    task_losses = torch.tensor([0.04, 9.0], dtype=torch.float64)
    with torch.no_grad():
        loss.log_variances.copy_(torch.log(task_losses))
    loss.combine(task_losses).backward()
    np.testing.assert_allclose(loss.log_variances.grad.numpy(), 0.0, atol=1e-15)
    for shift in (-0.1, 0.1):
        with torch.no_grad():
            loss.log_variances += shift
            moved = loss.combine(task_losses)
            loss.log_variances -= shift
            assert moved > loss.combine(task_losses)


def test_fixed_weights():
    loss = MultitaskLoss(('energy', 'forces'), learned=False, weights={'forces': 0.2})
    assert float(loss.combine(torch.tensor([1.0, 10.0], dtype=torch.float64))) == pytest.approx(3.0)
    assert not loss.log_variances.requires_grad
    with pytest.raises(ValueError, match='not among the tasks'):
        MultitaskLoss(('energy',), learned=False, weights={'charges': 1.0})


def test_self_energies_recover_a_linear_model():
    rng = np.random.default_rng(0)
    sizes = rng.integers(2, 9, size=30)
    numbers = rng.choice([1, 6, 8], size=sizes.sum())
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    counts = composition_matrix(numbers, offsets, ('H', 'C', 'O'))
    assert counts.sum() == sizes.sum()
    truth = np.array([-13.6, -1030.0, -2040.0])
    np.testing.assert_allclose(fit_self_energies(counts, counts @ truth), truth, rtol=1e-10)


def test_per_atom_energy_loss_divides_each_error_by_its_atom_count():
    """Two clusters of 2 and 4 atoms, energy errors 1 and 2 eV: per atom both are 0.5 eV/atom, MSE 0.25."""
    batch = ClusterBatch(
        positions=torch.zeros(6, 3, dtype=torch.float64), numbers=torch.ones(6, dtype=torch.int64),
        system_index=torch.tensor([0, 0, 1, 1, 1, 1]), cells=torch.zeros(2, 3, 3, dtype=torch.float64),
        pbc=torch.zeros(2, 3, dtype=torch.bool), total_charge=torch.zeros(2, dtype=torch.float64),
        energy=torch.tensor([-10.0, -20.0], dtype=torch.float64), forces=torch.zeros(6, 3, dtype=torch.float64))
    prediction = {'energy': batch.energy + torch.tensor([1.0, 2.0], dtype=torch.float64),
                  'forces': torch.full((6, 3), 0.5, dtype=torch.float64)}
    fixed = {'learned': False, 'weights': {'forces': 10.0}}
    per_atom = MultitaskLoss(('energy', 'forces'), energy_per_atom=True, **fixed)
    total = MultitaskLoss(('energy', 'forces'), **fixed)
    np.testing.assert_allclose(per_atom.task_losses(prediction, batch).numpy(), [0.25, 0.25])
    np.testing.assert_allclose(total.task_losses(prediction, batch).numpy(), [2.5, 0.25])
    assert float(per_atom(prediction, batch)[0]) == pytest.approx(0.25 + 10 * 0.25)
