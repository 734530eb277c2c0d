"""Committee statistics against per-model evaluations and the paper's eq. 2."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aiida_qrnn.core.model.committee import Committee
from aiida_qrnn.core.structures import ethylene_glycol_oligomer
from aiida_qrnn.testing.models import evaluate_images, flat_batch, scaled_random_model

torch.set_num_threads(1)  # two cores shared by several processes: more threads make this file 5x slower


def test_committee_mean_variance_and_rho_f():
    models = [scaled_random_model(seed=seed) for seed in range(3)]
    images = [ethylene_glycol_oligomer(1, seed=0), ethylene_glycol_oligomer(2, seed=1)]
    results = Committee(models).evaluate(**flat_batch(images))
    separate = [evaluate_images(model, images) for model in models]
    forces = np.stack([result['forces'].numpy() for result in separate])  # (models, atoms, 3)
    np.testing.assert_allclose(results['forces'].numpy(), forces.mean(0), atol=1e-12)
    np.testing.assert_allclose(results['force_variance'].numpy(), forces.var(0), atol=1e-12)
    energies = np.stack([result['energy'].numpy() for result in separate])
    np.testing.assert_allclose(results['energy'].numpy(), energies.mean(0), atol=1e-9)
    start = 0
    for index, atoms in enumerate(images):
        stop = start + len(atoms)
        expected = forces.var(0)[start:stop].sum() / np.sqrt(len(atoms))  # eq. 2
        assert results['rho_f'][index].item() == pytest.approx(expected, rel=1e-12)
        start = stop
    assert (results['rho_f'] > 0).all()


def test_identical_models_have_zero_spread_and_mismatched_ones_are_refused():
    same = Committee([scaled_random_model(seed=0), scaled_random_model(seed=0)])
    results = same.evaluate(**flat_batch([ethylene_glycol_oligomer(1)]))
    assert results['rho_f'].abs().max() == 0.0
    with pytest.raises(ValueError, match='at least two'):
        Committee([scaled_random_model()])
    with pytest.raises(ValueError, match='other elements'):
        Committee([scaled_random_model(), scaled_random_model(elements=('H', 'C', 'O', 'N'))])
