"""Committee scores and selection rules: ρ^f of a committee with a known spread, determinism of the selections."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from aiida_qrnn.core.dataset import ClusterArrays
from aiida_qrnn.core.model.committee import Committee
from aiida_qrnn.core.model.qrnn import QRNN, QRNNConfig, evaluate
from aiida_qrnn.core.selection import (
    committee_scores,
    plot_error_vs_rho_f,
    select_by_trust_levels,
    select_top_k_plus_random,
)
from aiida_qrnn.testing.structures import make_water_clusters

SCALES = (0.8, 1.0, 1.3, 0.9, 1.5)


def scaled_committee() -> tuple[Committee, QRNN]:
    """Members whose short-range energy is exactly s_k times the base model's (output layers scaled by s_k, no
    Coulomb or dispersion), so their forces are s_k F and the force variance is var(s) F²."""
    torch.manual_seed(0)
    config = QRNNConfig(elements=('H', 'O'), charge_hidden=(8,), energy_hidden=(8,), coulomb=None, dispersion=None)
    base = QRNN(config).double()
    members = []
    for scale in SCALES:
        member = copy.deepcopy(base)
        with torch.no_grad():
            for network in member.energy_networks.networks:
                network[-1].weight.mul_(scale)
                network[-1].bias.mul_(scale)
        members.append(member)
    return Committee(members), base


def test_rho_f_of_a_committee_with_known_spread():
    committee, base = scaled_committee()
    arrays = ClusterArrays.from_atoms(make_water_clusters(7, seed=3))
    scores = committee_scores(committee, arrays, max_batch_atoms=10, dtype=torch.float64)  # several batches
    variance = np.var(SCALES)  # population variance over the members
    for index in range(arrays.n_clusters):
        start, stop = arrays.offsets[index], arrays.offsets[index + 1]
        forces = evaluate(
            base, torch.as_tensor(arrays.positions[start:stop]),
            torch.as_tensor(arrays.numbers[start:stop].astype(int)),
            torch.zeros(stop - start, dtype=torch.long), torch.zeros(1, 3, 3, dtype=torch.float64),
            torch.zeros(1, 3, dtype=torch.bool), torch.zeros(1, dtype=torch.float64),
        )['forces'].detach().numpy()
        expected_rho = variance * (forces**2).sum() / np.sqrt(stop - start)
        expected_max = np.sqrt(variance) * np.linalg.norm(forces, axis=1).max()
        assert scores['rho_f'][index] == pytest.approx(expected_rho, rel=1e-9)
        assert scores['max_force_deviation'][index] == pytest.approx(expected_max, rel=1e-9)


def test_identical_members_give_zero_rho_f():
    _, base = scaled_committee()
    same = Committee([base, copy.deepcopy(base)])
    scores = committee_scores(same, ClusterArrays.from_atoms(make_water_clusters(3)), dtype=torch.float64)
    np.testing.assert_array_equal(scores['rho_f'], 0.0)
    np.testing.assert_array_equal(scores['max_force_deviation'], 0.0)


def test_batching_does_not_change_scores():
    committee, _ = scaled_committee()
    arrays = ClusterArrays.from_atoms(make_water_clusters(6, seed=5))
    one_batch = committee_scores(committee, arrays, max_batch_atoms=10_000, dtype=torch.float64)
    many = committee_scores(committee, arrays, max_batch_atoms=1, dtype=torch.float64)
    for name in one_batch:
        np.testing.assert_allclose(many[name], one_batch[name], rtol=1e-12, atol=1e-12)


def test_periodic_candidates_are_refused():
    committee, _ = scaled_committee()
    images = make_water_clusters(2)
    images[1].cell, images[1].pbc = np.eye(3) * 10, True
    with pytest.raises(ValueError, match='cluster 1 is periodic'):
        committee_scores(committee, ClusterArrays.from_atoms(images))


def test_top_k_plus_random_counts_determinism_and_disjointness():
    scores = np.random.default_rng(0).random(1000)
    first = select_top_k_plus_random(scores, 40, 40, seed=7)
    again = select_top_k_plus_random(scores, 40, 40, seed=7)
    other = select_top_k_plus_random(scores, 40, 40, seed=8)
    assert len(first['top']) == 40 and len(first['random']) == 40
    assert not set(first['top']) & set(first['random'])
    np.testing.assert_array_equal(first['top'], np.sort(np.argsort(-scores)[:40]))
    np.testing.assert_array_equal(first['random'], again['random'])
    assert not np.array_equal(first['random'], other['random'])
    assert scores[first['random']].max() <= scores[first['top']].min()


def test_ties_and_eligibility():
    scores = np.array([1.0, 5.0, 5.0, 5.0, 0.0, 2.0])
    chosen = select_top_k_plus_random(scores, 2, 1, seed=0, eligible=np.array([1, 0, 1, 1, 1, 1], bool))
    np.testing.assert_array_equal(chosen['top'], [2, 3])  # index 1 is not eligible; ties by lower index
    assert chosen['random'][0] in {0, 4, 5}
    with pytest.raises(ValueError, match='cannot select k=5 plus k_random=2 from 5 eligible'):
        select_top_k_plus_random(scores, 5, 2, seed=0, eligible=np.array([1, 0, 1, 1, 1, 1], bool))
    with pytest.raises(ValueError, match='finite'):
        select_top_k_plus_random(np.array([1.0, np.nan]), 1, 0, seed=0)


def test_trust_levels():
    deviation = np.array([0.01, 0.1, 0.2, 0.35, 2.0, 0.3])
    np.testing.assert_array_equal(select_by_trust_levels(deviation, 0.1, 0.4), [1, 2, 3, 5])
    subset = select_by_trust_levels(deviation, 0.1, 0.4, max_selected=2, seed=3)
    assert len(subset) == 2 and set(subset) <= {1, 2, 3, 5}
    np.testing.assert_array_equal(subset, select_by_trust_levels(deviation, 0.1, 0.4, max_selected=2, seed=3))
    with pytest.raises(ValueError, match='lower < upper'):
        select_by_trust_levels(deviation, 0.5, 0.1)


def test_error_vs_rho_f_plot(tmp_path):
    rng = np.random.default_rng(1)
    rho = rng.gamma(2.0, size=500)
    error = 0.05 * rho + rng.normal(scale=0.01, size=500) ** 2
    chosen = select_top_k_plus_random(rho, 20, 20, seed=0)
    path = plot_error_vs_rho_f(rho, error, tmp_path / 'fig5.png', selected=chosen['top'], random=chosen['random'])
    assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and path.stat().st_size > 10_000
