"""``ModelData``: one trained model as one node, its weights stored as safetensors (no code runs on load)."""

from __future__ import annotations

import json
import pathlib
import typing as t

from aiida.orm import Data
from ase.data import chemical_symbols

from aiida_qrnn.core.model.file_format import (
    MODEL_FORMAT_VERSION,
    ModelFileError,
    canonical_json,
    check_model,
    decode_model,
    encode_model,
    model_hash,
    read_model,
)

if t.TYPE_CHECKING:
    import torch

__all__ = ('ModelData', 'ModelDataError')


class ModelDataError(ValueError):
    """Bad model input; the message names the offending parameter or tensor."""


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

        tensors: dict[str, torch.Tensor] = {}
        for name, value in state_dict.items():
            if not isinstance(name, str):
                raise ModelDataError(f'state_dict key {name!r} is not a string.')
            if not isinstance(value, torch.Tensor):
                raise ModelDataError(
                    f'state_dict entry {name!r} is a {type(value).__name__}, not a tensor; put non-tensor '
                    'settings into `config`.'
                )
            tensors[name] = value
        if not tensors:
            raise ModelDataError('state_dict is empty: a model needs at least one tensor.')
        if not isinstance(config, dict):
            raise ModelDataError(f'config must be a dict of hyper-parameters, got {type(config).__name__}.')
        elements = list(elements)
        unknown = [symbol for symbol in elements if symbol not in chemical_symbols[1:]]
        if unknown or len(set(elements)) != len(elements):
            raise ModelDataError(f'elements must be distinct chemical symbols; got {elements} (unknown: {unknown}).')
        try:
            metrics_json = canonical_json(metrics, 'metrics')
            encoded = encode_model(tensors, config, elements)
        except ModelFileError as exception:
            raise ModelDataError(str(exception)) from None
        self.base.repository.put_object_from_bytes(encoded.payload, self.WEIGHTS_FILENAME)
        attributes = self.base.attributes
        attributes.set('config', json.loads(encoded.config_json))
        attributes.set('elements', elements)
        attributes.set('model_hash', encoded.model_hash)
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
        try:
            model = read_model(path)
            check_model(model.state_dict, model.config, model.elements, f"'{path}'")
            model.check_recorded_hash(f"'{path}'")
        except ModelFileError as exception:
            raise ModelDataError(str(exception)) from None
        return cls(model.state_dict, model.config, model.elements, **kwargs)

    def get_state_dict(self, device: str | torch.device = 'cpu') -> dict[str, torch.Tensor]:
        """Load the weights with safetensors (plain tensors only: no pickle, no code execution)."""
        content = self.base.repository.get_object_content(self.WEIGHTS_FILENAME, mode='rb')
        tensors = decode_model(content, f'ModelData<{self.pk or "unstored"}>').state_dict
        return {name: tensor.to(device) for name, tensor in tensors.items()}

    def export(self, path: str | pathlib.Path) -> pathlib.Path:
        """Write the self-describing safetensors file to ``path``."""
        path = pathlib.Path(path)
        with self.base.repository.open(self.WEIGHTS_FILENAME, mode='rb') as source:
            path.write_bytes(source.read())
        return path

    def verify(self) -> bool:
        """Recompute the content hash from the stored weights and compare it with the attribute."""
        config_json = canonical_json(self.config, 'config')
        return model_hash(self.get_state_dict(), config_json, self.elements) == self.model_hash

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

