"""The model file's format tag, shared by ``ModelData`` and the calculator, and :func:`check_model`, the gate a model
passes before it is stored. Torch is imported inside the function, so ``data/`` can import this module cheaply."""

from __future__ import annotations

import typing as t

if t.TYPE_CHECKING:
    import torch

__all__ = ('MAX_LAYER_WIDTH', 'MAX_PARAMETERS', 'MODEL_FORMAT', 'MODEL_FORMAT_VERSION', 'ModelFileError', 'check_model')

MODEL_FORMAT = 'aiida-qrnn-model'
MODEL_FORMAT_VERSION = 1
#: Widest hidden layer a model may ask for; the paper's networks are at most 160 wide. A 6000-wide config once
#: allocated ~1 GB before its weights were found not to fit.
MAX_LAYER_WIDTH = 4096
#: Most parameters (and buffer entries) a model may have: 200 MB of float32.
MAX_PARAMETERS = 50_000_000
#: Bond length (Å) of the small chain of the model's elements that a model must evaluate to finite values.
PROBE_SPACING = 1.4


class ModelFileError(ValueError):
    """A model that cannot be built or evaluated; the message names the file (or node) and the reason."""


def check_model(state_dict: dict[str, torch.Tensor], config: t.Any, elements: t.Any, origin: str) -> None:
    """Refuse a QRNN model that cannot be built or evaluated, cheapest checks first.

    1. ``config`` is a valid :class:`.qrnn.QRNNConfig` (positive hardness, distinct elements, ...) whose hidden
       layers are at most ``MAX_LAYER_WIDTH`` wide; ``elements`` equal its elements.
    2. The model is laid out on torch's ``meta`` device (no memory): it has at most ``MAX_PARAMETERS`` entries, and
       every tensor name and shape of ``state_dict`` is the one the config needs — before anything is allocated.
    3. Every floating-point weight is finite.
    4. The model is built, loaded and evaluated on a chain of one atom of each element: energy, forces and charges
       are finite.

    :raises ModelFileError: naming ``origin``, the tensor or parameter, and what is wrong.
    """
    import math

    import numpy as np
    import torch

    from .calculator import load_model
    from .qrnn import QRNN, QRNNConfig, evaluate

    if not isinstance(config, dict):
        raise ModelFileError(f'{origin}: the model config must be a JSON object, got {type(config).__name__}.')
    try:
        model_config = QRNNConfig.from_dict(config)
        widths = [int(width) for width in (*model_config.charge_hidden, *model_config.energy_hidden)]
    except (TypeError, ValueError, KeyError, AttributeError) as exception:
        raise ModelFileError(f'{origin}: invalid model config ({type(exception).__name__}: {exception}).') from None
    if max(widths, default=0) > MAX_LAYER_WIDTH:
        raise ModelFileError(
            f'{origin}: hidden layers {widths} are wider than {MAX_LAYER_WIDTH}; refused before allocating them.'
        )
    if not isinstance(elements, list) or elements != list(model_config.elements):
        raise ModelFileError(f'{origin}: elements {elements!r} differ from the config elements '
                             f'{list(model_config.elements)}.')
    try:
        with torch.device('meta'):
            layout = {name: tuple(tensor.shape) for name, tensor in QRNN(model_config).state_dict().items()}
    except (TypeError, ValueError, KeyError, RuntimeError, OverflowError) as exception:
        raise ModelFileError(f'{origin}: the config does not describe a buildable model ({exception}).') from None
    n_entries = sum(math.prod(shape) for shape in layout.values())
    if n_entries > MAX_PARAMETERS:
        raise ModelFileError(f'{origin}: the config asks for {n_entries} parameters, more than {MAX_PARAMETERS}.')
    missing, unexpected = sorted(set(layout) - set(state_dict)), sorted(set(state_dict) - set(layout))
    if missing or unexpected:
        raise ModelFileError(f'{origin}: weights do not fit the config (missing {missing[:5]}, unexpected '
                             f'{unexpected[:5]}).')
    for name, shape in layout.items():
        if tuple(state_dict[name].shape) != shape:
            raise ModelFileError(
                f'{origin}: tensor {name!r} has shape {tuple(state_dict[name].shape)}, the config needs {shape}.'
            )
    for name, tensor in state_dict.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelFileError(f'{origin}: tensor {name!r} holds NaN or infinite values.')

    class _Source:  # what load_model reads: the checked weights, config and elements
        def get_state_dict(self) -> dict[str, torch.Tensor]:
            return state_dict

    source = _Source()
    source.config, source.elements = config, elements
    try:
        model = load_model(source)
    except (ValueError, TypeError, RuntimeError, KeyError) as exception:  # the meta layout lets some through
        raise ModelFileError(f'{origin}: {exception}') from None
    dtype = next(model.energy_networks.parameters()).dtype
    numbers = torch.tensor([int(number) for number in model.species_of_number.ge(0).nonzero().squeeze(1)])
    positions = torch.zeros((len(numbers), 3), dtype=dtype)
    positions[:, 0] = PROBE_SPACING * torch.arange(len(numbers), dtype=dtype)
    positions[1::2, 1] = 0.5 * PROBE_SPACING  # a zig-zag, so three or more atoms are not collinear
    try:
        results = evaluate(
            model, positions, numbers, torch.zeros(len(numbers), dtype=torch.long), torch.zeros((1, 3, 3), dtype=dtype),
            torch.zeros((1, 3), dtype=torch.bool), torch.zeros(1, dtype=dtype),
        )
    except (RuntimeError, ValueError, IndexError, TypeError) as exception:  # e.g. celu_alpha None: TypeError
        raise ModelFileError(f'{origin}: evaluating a small cluster failed ({exception}).') from None
    for name in ('energy', 'forces', 'charges'):
        if not np.all(np.isfinite(results[name].detach().cpu().numpy())):
            raise ModelFileError(f'{origin}: evaluating a small cluster gave non-finite {name}.')
