"""The interface every generative model implements, and the model registry.

A model maps latent codes to images ``(n, 1, S, S)`` in [-1, 1]. Latent codes are always
flat ``(n, latent_dim)`` tensors in one of the model's named *latent spaces* (a VAE has
``z``; a StyleGAN adds ``w`` and ``w+``; a VQ-VAE's ``z`` is its continuous
pre-quantisation map, flattened). Models with an encoder also map images to codes.

Every model is configured by a small dataclass (its ``Config``), which is what the
checkpoint stores; ``build_model(name, **settings)`` makes one from the registry.

Models *describe themselves* to the later stages, which never test a model's class or
name nor reach into its submodules: :meth:`GenerativeModel.latent_weights` (the weight
that first acts on codes of a space: what SeFa factorises), :meth:`GenerativeModel.prior`
(the prior of each space), :attr:`GenerativeModel.has_encoder` and
:attr:`GenerativeModel.has_posterior` (with :meth:`GenerativeModel.posterior`),
:meth:`GenerativeModel.mean_latent` and :attr:`GenerativeModel.analysis_space`.

The registry (:data:`MODELS`) is filled from the ``napari_latent.models`` entry points, the
built-ins' included (see :mod:`napari_latent.registry`).
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from ..errors import CheckpointError, MismatchError, UserInputError
from ..registry import Registry

SUPPORTED_IMAGE_SIZES = (32, 64, 128, 256, 512)

#: Modules (in this package) that define and register the built-in models; declared as
#: ``napari_latent.models`` entry points in ``setup.cfg`` (imported directly only when the
#: package's metadata is not installed).
BUILTIN_MODEL_MODULES = ("vae", "introvae", "vqvae", "dcgan", "stylegan", "stylegan2_ada.model",
                         "monai_autoencoders.model")

#: The model families by registry name.
MODELS: Registry[type[GenerativeModel]] = Registry(
    "model", "napari_latent.models", tuple(f"{__package__}.{m}" for m in BUILTIN_MODEL_MODULES))


@dataclasses.dataclass(frozen=True)
class LatentPrior:
    """The prior of one latent space.

    Attributes
    ----------
    standard_normal : bool
        Codes are ``N(0, I)``: the spread along any unit direction is 1 (else it is
        measured from :meth:`GenerativeModel.sample_latent`).
    mean_is_typical : bool
        The mean code is a point the model is well-behaved at (False for StyleGAN's ``z``,
        whose second-moment normalisation is singular at 0): methods that linearise the
        model there use a prior sample instead.
    """

    standard_normal: bool = True
    mean_is_typical: bool = True


@dataclasses.dataclass(frozen=True)
class LatentWeights:
    """The weights that act first on the codes of one latent space (what SeFa factorises).

    Attributes
    ----------
    inputs : tuple of Tensor
        Effective weights ``(units, input_dim)``, one per input group (a StyleGAN's style
        inputs; one entry for the others), each the stacked affines fed by that input.
    layout : str
        How a flat code feeds the inputs:

        ``"single"``
            one input reads the whole code;
        ``"shared"``
            every input reads the same whole code (StyleGAN ``w``);
        ``"blocks"``
            the code is the inputs' codes one after another (StyleGAN ``w+``);
        ``"tiled"``
            the code is ``(input_dim, positions)`` channel-major, and the same weight acts
            at every position (a VQ-VAE's 1x1 convolution on its latent map).
    positions : int
        Spatial positions of a ``"tiled"`` code (1 otherwise).
    """

    inputs: tuple[torch.Tensor, ...]
    layout: Literal["single", "shared", "blocks", "tiled"] = "single"
    positions: int = 1

    @property
    def selectable(self) -> bool:
        """Whether some of the inputs can be chosen (``"shared"`` and ``"blocks"`` layouts)."""
        return self.layout in ("shared", "blocks")


@dataclasses.dataclass
class ModelConfig:
    """Settings shared by every model. Subclasses add their own fields.

    Parameters
    ----------
    image_size : int
        Square image size (32 for tests; 64, 128, 256 or 512 in use).
    latent_dim : int
        Size of the main latent code.
    base_channels : int
        Channel width at the full image resolution; widths double per halving of the
        resolution up to ``max_channels``.
    max_channels : int
        Upper bound on the channel width.
    """

    image_size: int = 64
    latent_dim: int = 32
    base_channels: int = 16
    max_channels: int = 128

    #: Settings that follow from others and are not chosen by users (a VQ-VAE's
    #: ``latent_dim``); forms and option lists leave them out.
    derived: ClassVar[tuple[str, ...]] = ()
    #: Fields that only weight a training loss term and were added after checkpoints existed:
    #: left out of :func:`model_fingerprint` (the weights identify the model), so that codes and
    #: directions saved with an older version still match the same model.
    training_only: ClassVar[tuple[str, ...]] = ()

    def validate(self) -> None:
        """Raise :class:`UserInputError` for unsupported settings."""
        if self.image_size not in SUPPORTED_IMAGE_SIZES:
            sizes = ", ".join(str(s) for s in SUPPORTED_IMAGE_SIZES)
            raise UserInputError(f"image size {self.image_size} is not supported; use one of {sizes}")
        if self.latent_dim < 1:
            raise UserInputError(f"latent dimension must be positive, got {self.latent_dim}")
        if self.base_channels < 1 or self.max_channels < self.base_channels:
            raise UserInputError("channel widths must be positive with max_channels >= base_channels")

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the settings."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> ModelConfig:
        """Rebuild from :meth:`to_json` output; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(obj) - names
        if unknown:
            raise CheckpointError(f"unknown model settings for {cls.__name__}: {', '.join(sorted(unknown))}")
        config = cls(**obj)
        config.validate()
        return config

    def channels(self, resolution: int) -> int:
        """Channel width at a given feature-map resolution."""
        factor = max(1, self.image_size // resolution)
        return int(min(self.base_channels * factor, self.max_channels))


class GenerativeModel(nn.Module, abc.ABC):
    """Base class of every generative model.

    Subclasses set :attr:`name`, :attr:`config_class`, :attr:`spaces` and
    :attr:`objective`, and implement :meth:`decode` (and :meth:`encode` when they have an
    encoder).
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""  # "autoencoder" or "gan"
    objective: ClassVar[str] = ""  # registry name of the training objective
    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    spaces: ClassVar[tuple[str, ...]] = ("z",)
    has_encoder: ClassVar[bool] = False
    #: A Gaussian posterior ``q(z | x)`` (:meth:`posterior`) exists.
    has_posterior: ClassVar[bool] = False
    #: The autocast dtypes the model trains safely in (``"bf16"``, ``"fp16"``); training's
    #: ``precision="auto"`` picks among them and refuses others (``napari_latent.training.precision``).
    mixed_precision: ClassVar[tuple[str, ...]] = ("bf16", "fp16")

    @classmethod
    def trainable(cls) -> bool:
        """Whether napari-latent can train this family (it names a training objective).

        Imported families (an official StyleGAN2-ADA generator, a MONAI autoencoder) are
        used, not trained, here.
        """
        return bool(cls.objective)

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        # Provenance, filled in when the model is loaded from or saved to a checkpoint.
        self.slice_spec: Any = None
        self.training_info: dict[str, Any] = {}
        self.source_path: Any = None
        self.fingerprint: str = ""
        self.extras: dict[str, Any] = {}

    # -- description -----------------------------------------------------------------------
    @property
    def image_size(self) -> int:
        """Square image size in pixels."""
        return int(self.config.image_size)

    @property
    def default_space(self) -> str:
        """The space codes are in unless another is asked for (the prior's space)."""
        return self.spaces[0]

    @property
    def analysis_space(self) -> str:
        """The space inversion and discovery use by default (a StyleGAN's ``w``)."""
        return self.default_space

    def latent_shape(self, space: str | None = None) -> tuple[int, ...]:
        """Natural shape of one code in ``space`` (flattened codes have ``prod`` of it)."""
        self.check_space(space)
        return (int(self.config.latent_dim),)

    def latent_dim(self, space: str | None = None) -> int:
        """Length of one flat code in ``space``."""
        size = 1
        for n in self.latent_shape(space):
            size *= int(n)
        return size

    def check_space(self, space: str | None) -> str:
        """Resolve ``space`` (None: the default) and raise for spaces the model lacks."""
        space = self.default_space if space is None else space
        if space not in self.spaces:
            raise MismatchError(f"model {self.name!r} has no latent space {space!r} (it has {', '.join(self.spaces)})")
        return space

    def check_codes(self, codes: torch.Tensor, space: str | None = None) -> torch.Tensor:
        """Check that ``codes`` is ``(n, latent_dim(space))`` and return it as float."""
        dim = self.latent_dim(space)
        if codes.ndim != 2 or codes.shape[1] != dim:
            raise MismatchError(f"codes of shape {tuple(codes.shape)} do not fit model {self.name!r}: space "
                                f"{self.check_space(space)!r} needs (n, {dim})")
        return codes.float()

    def check_images(self, images: torch.Tensor) -> torch.Tensor:
        """Check that ``images`` is ``(n, 1, S, S)`` for this model's size."""
        size = self.image_size
        if images.ndim != 4 or images.shape[1] != 1 or images.shape[2] != size or images.shape[3] != size:
            raise MismatchError(f"images of shape {tuple(images.shape)} do not fit model {self.name!r}: "
                                f"it needs (n, 1, {size}, {size})")
        return images

    @property
    def device(self) -> torch.device:
        """The device of the model's parameters."""
        return next(self.parameters()).device

    # -- the interface -------------------------------------------------------------------------
    @abc.abstractmethod
    def decode(self, codes: torch.Tensor, space: str | None = None) -> torch.Tensor:
        """Map flat codes ``(n, latent_dim(space))`` to images ``(n, 1, S, S)`` in [-1, 1]."""

    def encode(self, images: torch.Tensor, space: str | None = None) -> torch.Tensor:
        """Map images to flat codes (the posterior mean for VAEs).

        Raises
        ------
        UserInputError
            If the model has no encoder.
        """
        raise UserInputError(f"model {self.name!r} has no encoder")

    def sample_latent(self, n: int, generator: torch.Generator | None = None, space: str | None = None) -> torch.Tensor:
        """Draw ``n`` codes from the prior (standard normal in ``z``) in ``space``."""
        space = self.check_space(space)
        if space != self.spaces[0]:
            raise MismatchError(f"model {self.name!r} cannot sample directly in space {space!r}")
        return torch.randn(n, self.latent_dim(space), generator=generator, device="cpu").to(self.device)

    def to_space(self, codes: torch.Tensor, source: str, target: str) -> torch.Tensor:
        """Convert codes between latent spaces (identity when they are the same)."""
        self.check_space(source)
        self.check_space(target)
        if source == target:
            return codes
        raise MismatchError(f"model {self.name!r} cannot map codes from {source!r} to {target!r}")

    def posterior(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log variance of ``q(z | x)``, each ``(n, latent_dim)`` (see :attr:`has_posterior`).

        Raises
        ------
        UserInputError
            If the model has no Gaussian posterior.
        """
        raise UserInputError(f"model {self.name!r} has no Gaussian posterior")

    def prior(self, space: str | None = None) -> LatentPrior:
        """The prior of ``space``: standard normal in the sampling space by default."""
        space = self.check_space(space)
        return LatentPrior(standard_normal=space == self.default_space)

    @torch.no_grad()
    def mean_latent(self, space: str | None = None, samples: int = 512, seed: int = 0) -> torch.Tensor:
        """The centre of a space as a flat code ``(1, latent_dim(space))``.

        The default is the mean of ``samples`` prior samples (drawn with ``seed``) mapped into
        ``space``; models with a tracked mean (StyleGAN's ``w_avg``) return that.
        """
        space = self.check_space(space)
        source = self.default_space
        generator = torch.Generator().manual_seed(int(seed))
        codes = self.to_space(self.sample_latent(samples, generator, source), source, space).float()
        return codes.mean(0, keepdim=True)

    def latent_weights(self, space: str | None = None) -> LatentWeights:
        """The weights that act first on codes of ``space`` (see :class:`LatentWeights`).

        Raises
        ------
        UserInputError
            If the model's first layer on that space is not linear (or not exposed).
        """
        space = self.check_space(space)
        raise UserInputError(f"model {self.name!r} does not expose a linear first layer for space {space!r}")

    def noise_inputs(self) -> list[tuple[int, int]]:
        """Sizes ``(h, w)`` of the per-image noise maps :meth:`decode_noise` takes, in order (none by default).

        Models whose decoder adds per-pixel noise (StyleGAN2's synthesis layers) list them;
        optimisation-based inversion (the ``projector`` method) then optimises and
        regularises a noise map per image, as the official StyleGAN2 projector does.
        """
        return []

    def decode_noise(self, codes: torch.Tensor, space: str | None = None,
                     noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        """As :meth:`decode`, with explicit noise maps ``(n or 1, 1, h, w)``, one per :meth:`noise_inputs` entry.

        The default (a model without noise inputs) takes no maps and decodes.
        """
        if noise:
            raise UserInputError(f"model {self.name!r} has no noise inputs")
        return self.decode(codes, space)

    def matches(self, name: str, fingerprint: str = "") -> bool:
        """Whether this is the model a result was made with (same registry name; same weights if known)."""
        if name != self.name:
            return False
        return not (fingerprint and self.fingerprint and fingerprint != self.fingerprint)

    def describe(self) -> dict[str, Any]:
        """A short JSON-serialisable description for reports and the GUI."""
        return {"model": self.name, "family": self.family, "spaces": list(self.spaces),
                "latent_dims": {s: self.latent_dim(s) for s in self.spaces}, "encoder": self.has_encoder,
                "parameters": sum(p.numel() for p in self.parameters()), **self.config.to_json()}


def register_model(cls: type[GenerativeModel]) -> type[GenerativeModel]:
    """Class decorator: make a model buildable (and its checkpoints loadable) by its :attr:`~GenerativeModel.name`.

    Plugins use it in the module their ``napari_latent.models`` entry point names.
    """
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name")
    return MODELS.add(cls.name, cls)


def model_names() -> list[str]:
    """Names of the registered models."""
    return MODELS.names()


def trainable_model_names() -> list[str]:
    """Names of the registered families napari-latent can train (see :meth:`GenerativeModel.trainable`)."""
    return [name for name, cls in MODELS.items() if cls.trainable()]


def model_class(name: str) -> type[GenerativeModel]:
    """The model class registered under ``name``."""
    return MODELS.get(name)


def build_model(name: str, **settings: Any) -> GenerativeModel:
    """Make a model from its registry name and settings (fields of its config class).

    Unknown settings are an error; ``None`` values keep the defaults.
    """
    cls = model_class(name)
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    unknown = {k for k, v in settings.items() if v is not None} - fields
    if unknown:
        raise UserInputError(f"model {name!r} has no setting(s) {', '.join(sorted(unknown))}; "
                             f"it accepts {', '.join(sorted(fields))}")
    config = cls.config_class(**{k: v for k, v in settings.items() if v is not None})
    return cls(config)


def model_fingerprint(model: GenerativeModel) -> str:
    """A short hash of a model's name, settings and weights (identifies the exact model)."""
    digest = hashlib.sha256()
    digest.update(model.name.encode())
    settings = {k: v for k, v in model.config.to_json().items() if k not in model.config.training_only}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
