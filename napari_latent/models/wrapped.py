"""Any PyTorch decoder (and encoder) as a :class:`GenerativeModel`, for scripts.

>>> model = wrap(decoder, encoder, image_size=64, latent_dim=32, output_range=(0.0, 1.0))

``wrap`` checks the modules by a dry run (two codes through the decoder, its images through
the encoder) and returns a model that :func:`napari_latent.invert`,
:func:`~napari_latent.discover`, :func:`~napari_latent.traverse` and
:func:`~napari_latent.eigencomponents` accept. The decoder's images are mapped affinely from
``output_range`` to [-1, 1] (not clipped) and images are mapped to ``input_range`` before
encoding. The prior is standard normal.

A wrapped model lives in its script: it is not a registered family, so it cannot be saved as
a checkpoint (and reopened by the CLI or napari). For that, register a family in a plugin
(docs/models.md, "Your own PyTorch module").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import UserInputError
from .base import GenerativeModel, LatentWeights, ModelConfig, model_fingerprint


@dataclasses.dataclass
class WrappedConfig(ModelConfig):
    """Settings of a wrapped model.

    Parameters
    ----------
    latent_shape : list of int, optional
        The shape the decoder takes one code in (``[4, 8, 8]`` for a latent map); flat
        ``(n, latent_dim)`` codes are reshaped to it. None: flat codes.
    output_range : list of float
        ``[low, high]``: the intensities the decoder returns.
    input_range : list of float
        ``[low, high]``: the intensities the encoder takes.
    """

    latent_shape: list[int] | None = None
    output_range: list[float] = dataclasses.field(default_factory=lambda: [-1.0, 1.0])
    input_range: list[float] = dataclasses.field(default_factory=lambda: [-1.0, 1.0])

    def validate(self) -> None:
        super().validate()
        for label, pair in (("output_range", self.output_range), ("input_range", self.input_range)):
            if len(pair) != 2 or not float(pair[0]) < float(pair[1]):
                raise UserInputError(f"{label} must be (low, high) with low < high, got {tuple(pair)}")
        if self.latent_shape is not None:
            size = 1
            for n in self.latent_shape:
                size *= int(n)
            if size != self.latent_dim or min(self.latent_shape, default=0) < 1:
                raise UserInputError(f"latent_shape {tuple(self.latent_shape)} does not hold latent_dim "
                                     f"{self.latent_dim} values")


class WrappedModel(GenerativeModel):
    """A user's decoder and optional encoder behind the :class:`GenerativeModel` interface (see :func:`wrap`)."""

    name = "wrapped"
    family = "autoencoder"
    objective = ""
    config_class = WrappedConfig
    spaces = ("z",)

    def __init__(self, config: WrappedConfig, decoder: nn.Module, encoder: nn.Module | None = None,
                 first_layer: torch.Tensor | None = None, name: str = "wrapped") -> None:
        super().__init__(config)
        self.name = name
        self.decoder = decoder
        self.encoder = encoder
        self.has_encoder = encoder is not None
        self.family = "autoencoder" if encoder is not None else "decoder"
        if first_layer is not None:
            self.register_buffer("first_layer", first_layer.detach().float().clone())
        else:
            self.first_layer = None
        (out_low, out_high), (in_low, in_high) = config.output_range, config.input_range
        self._out = (float(out_low), float(out_high - out_low) / 2.0)
        self._in = (float(in_low), float(in_high - in_low) / 2.0)

    @property
    def device(self) -> torch.device:
        for tensor in (*self.parameters(), *self.buffers()):
            return tensor.device
        return torch.device("cpu")

    def latent_shape(self, space: str | None = None) -> tuple[int, ...]:
        self.check_space(space)
        shape = self.config.latent_shape
        return tuple(int(n) for n in shape) if shape is not None else (int(self.config.latent_dim),)

    def latent_weights(self, space: str | None = None) -> LatentWeights:
        """The ``first_layer`` given to :func:`wrap` (``(units, latent_dim)``), else the base refusal."""
        space = self.check_space(space)
        if self.first_layer is None:
            return super().latent_weights(space)
        return LatentWeights((self.first_layer,))

    def decode(self, codes: torch.Tensor, space: str | None = None) -> torch.Tensor:
        """The decoder's images of ``codes``, mapped from ``output_range`` to [-1, 1]."""
        codes = self.check_codes(codes, space)
        images = self.decoder(codes.view(codes.shape[0], *self.latent_shape(space)))
        low, scale = self._out
        return images if (low, scale) == (-1.0, 1.0) else (images - low) / scale - 1.0

    def encode(self, images: torch.Tensor, space: str | None = None) -> torch.Tensor:
        """The encoder's codes of ``images`` (mapped from [-1, 1] to ``input_range``), flattened."""
        self.check_space(space)
        if self.encoder is None:
            return super().encode(images, space)
        images = self.check_images(images)
        low, scale = self._in
        if (low, scale) != (-1.0, 1.0):
            images = (images + 1.0) * scale + low
        return self.encoder(images).flatten(1)


def _pair(value: Sequence[float], label: str) -> list[float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise UserInputError(f"{label} must be two numbers (low, high), got {value!r}") from None
    return [low, high]


def _one_line(error: Exception) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"[:300]


def wrap(decoder: nn.Module, encoder: nn.Module | None = None, *, image_size: int, latent_dim: int,
         output_range: Sequence[float] = (-1.0, 1.0), input_range: Sequence[float] | None = None,
         latent_shape: Sequence[int] | None = None, first_layer: nn.Linear | torch.Tensor | None = None,
         name: str = "wrapped") -> WrappedModel:
    """Wrap a PyTorch decoder (and encoder) as a model the analysis functions accept.

    Parameters
    ----------
    decoder : nn.Module
        Maps codes ``(n, *latent_shape)`` to images ``(n, 1, image_size, image_size)`` in
        ``output_range``.
    encoder : nn.Module, optional
        Maps images ``(n, 1, image_size, image_size)`` in ``input_range`` to codes with
        ``latent_dim`` values each (any shape; flattened). Without one, inversion optimises.
    image_size : int
        Square image size (32, 64, 128, 256 or 512).
    latent_dim : int
        Values per code.
    output_range : (float, float)
        The decoder's intensity range (``(0, 1)`` for a sigmoid output); mapped to [-1, 1].
    input_range : (float, float), optional
        The encoder's intensity range; default ``output_range``.
    latent_shape : sequence of int, optional
        The shape the decoder takes one code in (``(4, 8, 8)``); default flat.
    first_layer : nn.Linear or Tensor, optional
        The linear layer the decoder applies first to flat codes (its weight
        ``(units, latent_dim)``): lets SeFa factorise it.
    name : str
        What results record as the model's name.

    Returns
    -------
    WrappedModel
        In evaluation mode, with a fingerprint of its weights; not saveable as a checkpoint.

    Raises
    ------
    UserInputError
        When the settings are invalid or the dry run shows the modules do not fit them.
    """
    if not isinstance(decoder, nn.Module) or not (encoder is None or isinstance(encoder, nn.Module)):
        raise UserInputError("wrap needs torch.nn.Module decoder (and encoder)")
    out_range = _pair(output_range, "output_range")
    in_range = _pair(input_range, "input_range") if input_range is not None else list(out_range)
    config = WrappedConfig(image_size=int(image_size), latent_dim=int(latent_dim), output_range=out_range,
                           input_range=in_range,
                           latent_shape=[int(n) for n in latent_shape] if latent_shape is not None else None)
    config.validate()
    weight = first_layer.weight if isinstance(first_layer, nn.Linear) else first_layer
    if weight is not None and (weight.ndim != 2 or weight.shape[1] != config.latent_dim):
        raise UserInputError(f"first_layer's weight {tuple(weight.shape)} must be (units, latent_dim={latent_dim})")
    model = WrappedModel(config, decoder, encoder, weight, name=name).eval()
    _dry_run(model)
    model.fingerprint = model_fingerprint(model)
    return model


@torch.no_grad()
def _dry_run(model: WrappedModel) -> None:
    """Two zero codes through the decoder and its images through the encoder; one-line errors."""
    size, dim = model.image_size, model.latent_dim()
    codes = torch.zeros(2, dim, device=model.device)
    shape = (2, *model.latent_shape())
    try:
        images = model.decoder(codes.view(shape))
    except Exception as error:
        raise UserInputError(f"the decoder fails on codes of shape {shape}: {_one_line(error)}") from None
    if not isinstance(images, torch.Tensor) or tuple(images.shape) != (2, 1, size, size):
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise UserInputError(f"the decoder maps codes of shape {shape} to {got}; it must return (n, 1, {size}, {size})")
    if model.encoder is None:
        return
    try:
        encoded: Any = model.encoder(images)
    except Exception as error:
        raise UserInputError(f"the encoder fails on images of shape {tuple(images.shape)}: "
                             f"{_one_line(error)}") from None
    if not isinstance(encoded, torch.Tensor) or encoded.ndim < 2 or encoded.shape[0] != 2 \
            or encoded[0].numel() != dim:
        got = tuple(encoded.shape) if isinstance(encoded, torch.Tensor) else type(encoded).__name__
        raise UserInputError(f"the encoder maps images of shape {tuple(images.shape)} to {got}; it must return "
                             f"n codes of latent_dim={dim} values")
