"""The CPU/CUDA × eager/TorchScript matrix a model test runs over (after TorchANI's ``_testing.expand``).

    @pytest.mark.parametrize('variant', variants())
    def test_energy(variant):
        model = variant.prepare(scaled_random_model())

CUDA variants are skipped, with the reason shown, where no GPU is visible; CPU ones always run.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

import pytest
import torch

DEVICES = ('cpu', 'cuda')
MODES = ('eager', 'jit')


@dataclass(frozen=True)
class Variant:
    """One cell of the matrix: where the module runs and whether it is compiled with ``torch.jit.script``."""

    device: str
    mode: str

    def prepare(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` moved to :attr:`device`, scripted when :attr:`mode` is ``'jit'``."""
        module = module.to(self.device)
        return torch.jit.script(module) if self.mode == 'jit' else module

    def tensor(self, values: t.Any, **kwargs) -> torch.Tensor:
        """``values`` as a tensor on :attr:`device`."""
        return torch.as_tensor(values, device=self.device, **kwargs)


def variants(devices: t.Sequence[str] = DEVICES, modes: t.Sequence[str] = MODES) -> list:
    """``pytest.param`` per device × mode, with ids such as ``cuda-jit``; CUDA ones skip without a GPU."""
    unknown = sorted({*devices} - {*DEVICES}) + sorted({*modes} - {*MODES})
    if unknown:
        raise ValueError(f'unknown device or mode {unknown}: devices are {DEVICES}, modes {MODES}')
    no_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device visible')
    return [pytest.param(Variant(device, mode), id=f'{device}-{mode}', marks=[no_gpu] if device == 'cuda' else [])
            for device in devices for mode in modes]
