"""``ModelData``: one trained model as one node, its weights stored as safetensors (no code runs on load)."""

from __future__ import annotations

import hashlib
import json
import pathlib
import typing as t

from aiida.common.exceptions import ValidationError
from aiida.orm import Data
from aiida.orm.implementation.utils import clean_value
from ase.data import chemical_symbols

from aiida_qrnn.core.model.file_format import MODEL_FORMAT, MODEL_FORMAT_VERSION, ModelFileError, check_model

if t.TYPE_CHECKING:
    import torch

__all__ = ('ModelData', 'ModelDataError')

class ModelDataError(ValueError):
    """Bad model input; the message names the offending parameter or tensor."""


def _canonical_json(value: t.Any, what: str) -> str:
    """JSON of ``value`` in the form AiiDA stores it (floats rounded to 14 significant digits by ``clean_value``),
    so that a hash computed on it still holds for the stored attribute."""
    try:
        text = json.dumps(value, sort_keys=True, separators=(',', ':'), allow_nan=False)
        return json.dumps(clean_value(json.loads(text)), sort_keys=True, separators=(',', ':'), allow_nan=False)
    except (TypeError, ValueError, ValidationError) as exception:
        raise ModelDataError(f'{what} must be JSON-serialisable (plain numbers, strings, lists, dicts): {exception}') \
            from None


def _model_hash(state_dict: dict[str, torch.Tensor], config_json: str, elements: list[str]) -> str:
    """sha256 over tensor names, dtypes, shapes and bytes (in name order), the config and the element list."""
    import torch

    digest = hashlib.sha256(f'{MODEL_FORMAT}-v{MODEL_FORMAT_VERSION}'.encode())
    for name in sorted(state_dict):
        tensor = state_dict[name]
        digest.update(f'{name}|{tensor.dtype}|{tuple(tensor.shape)}|'.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    digest.update(config_json.encode())
    digest.update(json.dumps(elements).encode())
    return digest.hexdigest()


#: Metadata keys of a model file; ``model_hash`` only in files that ``ModelData.export`` wrote.
METADATA_KEYS = frozenset({'format', 'format_version', 'config', 'elements', 'model_hash'})


def _recorded_hash(path: str | pathlib.Path) -> str | None:
    """The ``model_hash`` that :meth:`ModelData.export` wrote into the file's metadata (``None`` if absent).

    :raises ModelDataError: for an unknown metadata key (a damaged ``model_hash`` key would otherwise pass unseen).
    """
    from safetensors import safe_open

    with safe_open(str(path), framework='pt') as handle:
        metadata = handle.metadata() or {}
    unknown = sorted(set(metadata) - METADATA_KEYS)
    if unknown:
        raise ModelDataError(f"'{path}': unknown metadata key(s) {unknown}; known: {sorted(METADATA_KEYS)}.")
    return metadata.get('model_hash')


def _legacy_hash(state_dict: dict[str, torch.Tensor], config: dict, elements: list[str]) -> str:
    """The hash as files exported before the config was rounded like AiiDA stores it carry it."""
    config_json = json.dumps(config, sort_keys=True, separators=(',', ':'), allow_nan=False)
    return _model_hash(state_dict, config_json, elements)


class ModelData(Data):
    """A model: ``state_dict`` in ``weights.safetensors``, hyper-parameters and elements as attributes.

    >>> node = ModelData(model.state_dict(), config={'hidden': [160, 128]}, elements=['H', 'C', 'O'])  # doctest: +SKIP
    >>> model.load_state_dict(node.get_state_dict())  # doctest: +SKIP

    Attributes: ``config`` (hyper-parameters, floats as AiiDA stores them: 14 significant digits), ``elements``,
    ``model_hash`` (sha256 of weights + that config + elements, so ``verify()`` holds after storing),
    ``n_parameters``, ``tensor_names``, ``metrics`` (training metrics, may be empty).
    The safetensors file carries the same config and elements in its metadata, so it is self-describing when
    exported.
    """

    WEIGHTS_FILENAME = 'weights.safetensors'

    def __init__(
        self, state_dict: t.Mapping[str, torch.Tensor] | None = None, config: dict | None = None,
        elements: t.Sequence[str] | None = None, metrics: dict | None = None, **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if state_dict is not None:
            self.set_model(state_dict, config or {}, elements or [], metrics or {})

    def set_model(
        self, state_dict: t.Mapping[str, torch.Tensor], config: dict, elements: t.Sequence[str], metrics: dict,
    ) -> None:
        """Validate and store weights, config, elements and metrics; nothing is set if any of them is invalid."""
        import torch
        from safetensors.torch import save

        tensors: dict[str, torch.Tensor] = {}
        for name, value in state_dict.items():
            if not isinstance(name, str):
                raise ModelDataError(f'state_dict key {name!r} is not a string.')
            if not isinstance(value, torch.Tensor):
                raise ModelDataError(
                    f'state_dict entry {name!r} is a {type(value).__name__}, not a tensor; put non-tensor '
                    'settings into `config`.'
                )
            # safetensors refuses shared or non-contiguous storage: store an independent contiguous copy.
            tensors[name] = value.detach().cpu().contiguous().clone()
        if not tensors:
            raise ModelDataError('state_dict is empty: a model needs at least one tensor.')
        if not isinstance(config, dict):
            raise ModelDataError(f'config must be a dict of hyper-parameters, got {type(config).__name__}.')
        elements = list(elements)
        unknown = [symbol for symbol in elements if symbol not in chemical_symbols[1:]]
        if unknown or len(set(elements)) != len(elements):
            raise ModelDataError(f'elements must be distinct chemical symbols; got {elements} (unknown: {unknown}).')
        config_json = _canonical_json(config, 'config')
        metrics_json = _canonical_json(metrics, 'metrics')
        model_hash = _model_hash(tensors, config_json, elements)
        payload = save(
            tensors,
            metadata={
                'format': MODEL_FORMAT, 'format_version': str(MODEL_FORMAT_VERSION), 'config': config_json,
                'elements': json.dumps(elements), 'model_hash': model_hash,
            },
        )
        self.base.repository.put_object_from_bytes(payload, self.WEIGHTS_FILENAME)
        attributes = self.base.attributes
        attributes.set('config', json.loads(config_json))
        attributes.set('elements', elements)
        attributes.set('model_hash', model_hash)
        attributes.set('metrics', json.loads(metrics_json))
        attributes.set('n_parameters', int(sum(tensor.numel() for tensor in tensors.values())))
        attributes.set('tensor_names', sorted(tensors))
        attributes.set('format_version', MODEL_FORMAT_VERSION)

    @classmethod
    def from_file(cls, path: str | pathlib.Path, **kwargs) -> ModelData:
        """Create a node from a safetensors file written by :meth:`export` (config and elements in its metadata).

        The model must build and evaluate (:func:`aiida_qrnn.core.model.file_format.check_model`): wrong shapes,
        elements that disagree with the config, an invalid config (e.g. negative hardness), non-finite weights and
        absurd layer sizes are refused, the last before anything is allocated.
        """
        from aiida_qrnn.core.model.calculator import read_model_file

        try:
            state_dict, config, elements = read_model_file(path)
        except (ValueError, KeyError, TypeError) as exception:  # damaged metadata: KeyError, JSONDecodeError
            message = str(exception)
            if not message.startswith(f"'{path}'"):
                message = f"'{path}': not a readable model file ({type(exception).__name__}: {exception})."
            raise ModelDataError(message) from None
        try:
            check_model(state_dict, config, elements, f"'{path}'")
        except ModelFileError as exception:
            raise ModelDataError(str(exception)) from None
        recorded = _recorded_hash(path)
        node = cls(state_dict, config, elements, **kwargs)
        if recorded is not None and recorded not in (node.model_hash, _legacy_hash(state_dict, config, elements)):
            raise ModelDataError(
                f"'{path}': the file's recorded model_hash {recorded} does not match its weights and config "
                f'({node.model_hash}): the file was changed or damaged after it was exported.'
            )
        return node

    def get_state_dict(self, device: str | torch.device = 'cpu') -> dict[str, torch.Tensor]:
        """Load the weights with safetensors (plain tensors only: no pickle, no code execution)."""
        from safetensors.torch import load

        tensors = load(self.base.repository.get_object_content(self.WEIGHTS_FILENAME, mode='rb'))
        return {name: tensor.to(device) for name, tensor in tensors.items()}

    def export(self, path: str | pathlib.Path) -> pathlib.Path:
        """Write the self-describing safetensors file to ``path``."""
        path = pathlib.Path(path)
        with self.base.repository.open(self.WEIGHTS_FILENAME, mode='rb') as source:
            path.write_bytes(source.read())
        return path

    def verify(self) -> bool:
        """Recompute the content hash from the stored weights and compare it with the attribute."""
        config_json = _canonical_json(self.config, 'config')
        return _model_hash(self.get_state_dict(), config_json, self.elements) == self.model_hash

    @property
    def config(self) -> dict:
        return self.base.attributes.get('config')

    @property
    def elements(self) -> list[str]:
        return self.base.attributes.get('elements')

    @property
    def model_hash(self) -> str:
        return self.base.attributes.get('model_hash')

    @property
    def metrics(self) -> dict:
        return self.base.attributes.get('metrics')

