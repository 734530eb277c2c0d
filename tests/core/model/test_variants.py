"""The QRNN gives the same energies, charges and forces on every cell of the CPU/CUDA × eager/TorchScript matrix
(:mod:`aiida_qrnn.testing.devices`); CUDA cells run where a GPU is visible, CPU cells always."""

from __future__ import annotations

import pytest
import torch

from aiida_qrnn.core.model.qrnn import evaluate
from aiida_qrnn.testing.devices import Variant, variants
from aiida_qrnn.testing.models import evaluate_images, flat_batch, scaled_random_model
from aiida_qrnn.testing.structures import ethylene_glycol, make_water_clusters


@pytest.fixture(scope='module')
def reference() -> tuple[list, dict[str, torch.Tensor]]:
    """Ethylene glycol and a water trimer, and what the scaled random model (charges, energies and forces far from
    zero) gives for them eagerly on the CPU."""
    images = [ethylene_glycol(), make_water_clusters(3)[2]]
    return images, evaluate_images(scaled_random_model(seed=4), images)


@pytest.mark.parametrize('variant', variants())
def test_every_variant_equals_eager_cpu(variant: Variant, reference):
    images, expected = reference
    model = variant.prepare(scaled_random_model(seed=4))
    batch = {name: value.to(variant.device) for name, value in flat_batch(images).items()}
    results = evaluate(model, **batch)
    # float64 throughout: only the order of summation differs between kernels
    for name in ('energy', 'charges', 'forces'):
        torch.testing.assert_close(results[name].detach().cpu(), expected[name], rtol=1e-10, atol=1e-10)


def test_unknown_cells_are_named():
    with pytest.raises(ValueError, match=r"unknown device or mode \['tpu'\]"):
        variants(devices=('cpu', 'tpu'))
