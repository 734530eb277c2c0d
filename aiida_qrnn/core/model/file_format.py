"""THE model file: one writer (:func:`encode_model`, :func:`write_model_file`), one reader (:func:`decode_model`,
:func:`read_model`), one content hash (:func:`model_hash`), and :func:`check_model`, the gate a model passes before
it is stored. ``ModelData``, the calculator and the jobs all go through here. Torch and safetensors are imported
inside the functions, so ``data/`` can import this module cheaply.

A model file is a safetensors file (plain tensors: loading runs no code) whose metadata holds ``format``,
``format_version``, ``config`` (JSON, floats as AiiDA stores them), ``elements`` (JSON) and ``model_hash``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import pathlib
import typing as t

if t.TYPE_CHECKING:
    import torch

__all__ = (
    'MAX_LAYER_WIDTH',
    'MAX_PARAMETERS',
    'METADATA_KEYS',
    'MODEL_FORMAT',
    'MODEL_FORMAT_VERSION',
    'EncodedModel',
    'ModelFile',
    'ModelFileError',
    'canonical_json',
    'check_model',
    'decode_model',
    'encode_model',
    'model_hash',
    'read_model',
    'read_model_file',
    'write_model_file',
)

MODEL_FORMAT = 'aiida-qrnn-model'
MODEL_FORMAT_VERSION = 1
#: Metadata keys of a model file; ``model_hash`` is absent from files written before it was recorded.
METADATA_KEYS = frozenset({'format', 'format_version', 'config', 'elements', 'model_hash'})
#: Significant digits of a float as AiiDA stores it in an attribute (``aiida.orm.implementation.utils``): the
#: config is rounded to them before it is hashed, so the hash still holds for the stored attribute.
STORED_FLOAT_DIGITS = 14
#: Widest hidden layer a model may ask for; the paper's networks are at most 160 wide. A 6000-wide config once
#: allocated ~1 GB before its weights were found not to fit.
MAX_LAYER_WIDTH = 4096
#: Most parameters (and buffer entries) a model may have: 200 MB of float32.
MAX_PARAMETERS = 50_000_000
#: Bond length (Å) of the small chain of the model's elements that a model must evaluate to finite values.
PROBE_SPACING = 1.4


class ModelFileError(ValueError):
    """A model file that cannot be read, or a model that cannot be built or evaluated; the message names the file
    (or node) and the reason."""


def _stored(value: t.Any) -> t.Any:
    """``value`` as AiiDA stores it: floats rounded to ``STORED_FLOAT_DIGITS`` significant digits (an integral
    float in exponent notation becomes an int, as there)."""
    if isinstance(value, dict):
        return {key: _stored(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_stored(item) for item in value]
    if isinstance(value, float):
        text = f'{value:.{STORED_FLOAT_DIGITS}g}'
        rounded = float(text)
        return int(rounded) if 'e' in text and rounded.is_integer() else rounded
    return value


def canonical_json(value: t.Any, what: str) -> str:
    """Sorted, compact JSON of ``value`` as AiiDA stores it, so that a hash computed on it holds for the stored
    attribute; ``what`` names the value in the error."""
    try:
        plain = json.loads(json.dumps(value, sort_keys=True, separators=(',', ':'), allow_nan=False))
    except (TypeError, ValueError) as exception:
        raise ModelFileError(f'{what} must be JSON-serialisable (plain numbers, strings, lists, dicts): {exception}') \
            from None
    return json.dumps(_stored(plain), sort_keys=True, separators=(',', ':'), allow_nan=False)


def model_hash(state_dict: t.Mapping[str, torch.Tensor], config_json: str, elements: list[str]) -> str:
    """sha256 over tensor names, dtypes, shapes and bytes (in name order), the config JSON and the element list."""
    import torch

    digest = hashlib.sha256(f'{MODEL_FORMAT}-v{MODEL_FORMAT_VERSION}'.encode())
    for name in sorted(state_dict):
        tensor = state_dict[name]
        digest.update(f'{name}|{tensor.dtype}|{tuple(tensor.shape)}|'.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    digest.update(config_json.encode())
    digest.update(json.dumps(elements).encode())
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class EncodedModel:
    """A model file's bytes, with the canonical config JSON and the hash recorded in it."""

    payload: bytes
    config_json: str
    model_hash: str


def encode_model(state_dict: t.Mapping[str, torch.Tensor], config: dict, elements: list[str]) -> EncodedModel:
    """The model file of ``state_dict`` (copied to independent contiguous CPU tensors), ``config`` and
    ``elements``, with its hash in the metadata."""
    from safetensors.torch import save

    tensors = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in state_dict.items()}
    config_json = canonical_json(config, 'config')
    elements = list(elements)
    digest = model_hash(tensors, config_json, elements)
    payload = save(tensors, metadata={
        'format': MODEL_FORMAT, 'format_version': str(MODEL_FORMAT_VERSION), 'config': config_json,
        'elements': json.dumps(elements), 'model_hash': digest,
    })
    return EncodedModel(payload, config_json, digest)


def write_model_file(
    path: str | pathlib.Path, state_dict: t.Mapping[str, torch.Tensor], config: dict, elements: list[str],
) -> pathlib.Path:
    """Write the model file of :func:`encode_model` to ``path``."""
    path = pathlib.Path(path)
    path.write_bytes(encode_model(state_dict, config, elements).payload)
    return path


@dataclasses.dataclass(frozen=True)
class ModelFile:
    """What a model file holds; ``recorded_hash`` is None for files written before hashes were recorded."""

    state_dict: dict[str, torch.Tensor]
    config: dict
    elements: list[str]
    recorded_hash: str | None

    def check_recorded_hash(self, origin: str) -> str:
        """The hash of the content, after checking it against the recorded one (a file exported before the config
        was rounded as AiiDA stores it carries the hash of the unrounded config)."""
        digest = model_hash(self.state_dict, canonical_json(self.config, 'config'), self.elements)
        if self.recorded_hash is None or self.recorded_hash == digest:
            return digest
        unrounded = json.dumps(self.config, sort_keys=True, separators=(',', ':'), allow_nan=False)
        if self.recorded_hash != model_hash(self.state_dict, unrounded, self.elements):
            raise ModelFileError(
                f"{origin}: the file's recorded model_hash {self.recorded_hash} does not match its weights and config "
                f'({digest}): the file was changed or damaged after it was exported.'
            )
        return digest


def decode_model(content: bytes, origin: str) -> ModelFile:
    """Read a model file's bytes (safetensors: plain tensors, no code runs); the errors name ``origin``."""
    from safetensors.torch import load

    try:
        header_size = int.from_bytes(content[:8], 'little')
        header = json.loads(content[8:8 + header_size]) if 0 < header_size <= len(content) - 8 else None
        if not isinstance(header, dict):
            raise ValueError('no safetensors header')
        metadata = header.get('__metadata__') or {}
        state_dict = load(content)
    except Exception as exception:  # safetensors and json raise several types for a damaged file
        raise ModelFileError(f'{origin}: not a readable safetensors file ({exception}).') from None
    if metadata.get('format') != MODEL_FORMAT:
        raise ModelFileError(f"{origin}: not an aiida-qrnn model file (metadata 'format' is missing).")
    if metadata.get('format_version') != str(MODEL_FORMAT_VERSION):
        raise ModelFileError(f"{origin}: model format version {metadata.get('format_version')} is not supported.")
    unknown = sorted(set(metadata) - METADATA_KEYS)
    if unknown:
        raise ModelFileError(f'{origin}: unknown metadata key(s) {unknown}; known: {sorted(METADATA_KEYS)}.')
    try:
        config, elements = json.loads(metadata['config']), json.loads(metadata['elements'])
    except (KeyError, ValueError) as exception:
        raise ModelFileError(f'{origin}: not a readable model file ({type(exception).__name__}: {exception}).') \
            from None
    return ModelFile(state_dict, config, elements, metadata.get('model_hash'))


def read_model(path: str | pathlib.Path) -> ModelFile:
    """Read the model file at ``path`` (:func:`decode_model`)."""
    try:
        content = pathlib.Path(path).read_bytes()
    except OSError as exception:
        raise ModelFileError(f"'{path}': not a readable safetensors file ({exception}).") from None
    return decode_model(content, f"'{path}'")


def read_model_file(path: str | pathlib.Path) -> tuple[dict[str, torch.Tensor], dict, list[str]]:
    """``(state_dict, config, elements)`` of the model file at ``path``."""
    model = read_model(path)
    return model.state_dict, model.config, model.elements


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
