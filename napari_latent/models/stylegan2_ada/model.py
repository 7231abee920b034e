"""The ``"stylegan2-ada"`` model family: an official StyleGAN2-ADA generator, imported.

Made by the importer (:mod:`.importer`) from a ``network-snapshot-*.pkl``, or from our
checkpoint after ``napari-latent import``; ``build_model("stylegan2-ada", ...)`` makes a
random (untrained) one of the same architecture, for tests. Not trainable here.

Latent spaces are those of StyleGAN2: ``z`` (the prior, ``z_dim``), ``w`` (``w_dim``) and
``w+`` (``num_ws * w_dim``, one ``w`` per style input, ``num_ws`` as the official code
counts them: 18 at 1024 px, 14 at 256 px, 10 at 64 px). Images are grey: a 3-channel
generator's output is turned into one channel by the config's ``grey`` choice
(``"luminance"``: ITU-R BT.601 weights 0.299 R + 0.587 G + 0.114 B; or one channel,
``"red"``/``"green"``/``"blue"`` or ``"0"``/``"1"``/``"2"``). A conditional generator
(``c_dim > 0``) is used for one class, ``class_index``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ...errors import MismatchError, UserInputError
from ..base import ModelConfig, register_model
from ..style_spaces import StyleSpacesGAN, straight_through_clamp
from .networks import ARCHITECTURES, NOISE_MODES, Discriminator, Generator, NoiseMode, channels_at

#: Image sizes the family supports (powers of two).
IMAGE_SIZES = (32, 64, 128, 256, 512, 1024)
#: ITU-R BT.601 luma weights of the ``"luminance"`` grey choice.
LUMINANCE_WEIGHTS = (0.299, 0.587, 0.114)
#: Grey choices: luminance, or one channel by name or index.
GREY_CHANNELS = {"red": 0, "green": 1, "blue": 2, "0": 0, "1": 1, "2": 2}
GREY_CHOICES = ("luminance", *GREY_CHANNELS)
#: Seed and number of samples of ``w_avg`` for a randomly built (untrained) model.
W_AVG_SEED = 0
W_AVG_SAMPLES = 1024


@dataclasses.dataclass
class StyleGAN2ADAConfig(ModelConfig):
    """The official constructor arguments of G (and D), plus how the model is used here.

    The base fields are the official ones under our names: ``image_size`` is
    ``img_resolution``, ``latent_dim`` is ``z_dim``; ``base_channels`` and ``max_channels``
    give ``channel_base = base_channels * image_size`` and ``channel_max`` unless those are
    set (an imported snapshot sets them).

    Parameters
    ----------
    w_dim, c_dim, img_channels : int
        As in the official Generator (``img_channels`` 1 or 3).
    mapping_layers, mapping_lr_multiplier, mapping_embed_features, mapping_layer_features
        The mapping network's ``num_layers``, ``lr_multiplier``, ``embed_features``, ``layer_features``.
    architecture : {"skip", "resnet", "orig"}
        The synthesis network's architecture.
    channel_base, channel_max : int
        Channels at resolution ``r`` are ``min(channel_base // r, channel_max)``; 0: from
        ``base_channels``/``max_channels``.
    num_fp16_res : int
        Highest resolutions in half precision (only on CUDA).
    conv_clamp : float or None
        Clamp of the convolution outputs.
    use_noise : bool
        The synthesis layers have noise inputs.
    discriminator : bool
        The snapshot's discriminator is kept (``discriminate``).
    d_architecture, d_channel_base, d_channel_max, d_num_fp16_res, d_conv_clamp, d_cmap_dim,
    d_mbstd_group_size, d_mbstd_num_channels, d_mapping_layers, d_mapping_lr_multiplier,
    d_mapping_embed_features, d_mapping_layer_features
        The discriminator's constructor arguments (``d_channel_base``/``d_channel_max`` 0:
        the generator's).
    grey : str
        A 3-channel generator's grey image: ``"luminance"`` (BT.601) or one channel
        (``"red"``, ``"green"``, ``"blue"``, ``"0"``, ``"1"``, ``"2"``).
    class_index : int or None
        The class a conditional generator is used for (required when ``c_dim > 0``).
    truncation_psi : float
        Truncation when ``z`` codes are mapped (1: none).
    truncation_cutoff : int or None
        Truncate only the first rows of ``w+`` (None: all; ``z -> w`` ignores it).
    noise_mode : {"const", "random", "none"}
        The noise :meth:`StyleGAN2ADA.decode` uses (``const``: deterministic).
    """

    image_size: int = 256
    latent_dim: int = 512
    base_channels: int = 128
    max_channels: int = 512
    w_dim: int = 512
    c_dim: int = 0
    img_channels: int = 1
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    mapping_embed_features: int | None = None
    mapping_layer_features: int | None = None
    architecture: str = "skip"
    channel_base: int = 0
    channel_max: int = 0
    num_fp16_res: int = 0
    conv_clamp: float | None = None
    use_noise: bool = True
    discriminator: bool = True
    d_architecture: str = "resnet"
    d_channel_base: int = 0
    d_channel_max: int = 0
    d_num_fp16_res: int = 0
    d_conv_clamp: float | None = None
    d_cmap_dim: int | None = None
    d_mbstd_group_size: int | None = 4
    d_mbstd_num_channels: int = 1
    d_mapping_layers: int = 8
    d_mapping_lr_multiplier: float = 0.01
    d_mapping_embed_features: int | None = None
    d_mapping_layer_features: int | None = None
    grey: str = "luminance"
    class_index: int | None = None
    truncation_psi: float = 1.0
    truncation_cutoff: int | None = None
    noise_mode: str = "const"

    def validate(self) -> None:
        """Raise :class:`UserInputError` (one line) for unsupported settings."""
        if self.image_size not in IMAGE_SIZES:
            raise UserInputError(f"image size {self.image_size} is not supported by stylegan2-ada; use a power of "
                                 f"two from 32 to 1024")
        if self.img_channels not in (1, 3):
            raise UserInputError(f"{self.img_channels} image channels are not supported; stylegan2-ada reads "
                                 "generators of 1 or 3 channels")
        for name in ("latent_dim", "w_dim", "mapping_layers", "base_channels", "max_channels"):
            if int(getattr(self, name)) < 1:
                raise UserInputError(f"{name} must be positive, got {getattr(self, name)}")
        if self.c_dim < 0 or self.channel_base < 0 or self.channel_max < 0:
            raise UserInputError("c_dim, channel_base and channel_max must not be negative")
        for name in ("architecture", "d_architecture"):
            if getattr(self, name) not in ARCHITECTURES:
                raise UserInputError(f"unknown {name.replace('d_', 'discriminator ')} {getattr(self, name)!r}; "
                                     f"StyleGAN2-ADA has {', '.join(ARCHITECTURES)}")
        if str(self.grey).lower() not in GREY_CHOICES:
            raise UserInputError(f"unknown grey choice {self.grey!r}; use one of {', '.join(GREY_CHOICES)}")
        if self.noise_mode not in NOISE_MODES:
            raise UserInputError(f"unknown noise mode {self.noise_mode!r}; use one of {', '.join(NOISE_MODES)}")
        if not math.isfinite(self.truncation_psi):
            raise UserInputError(f"truncation_psi must be a finite number, got {self.truncation_psi}")
        if self.c_dim > 0:
            if self.class_index is None:
                raise UserInputError(f"the generator is conditional ({self.c_dim} classes): choose a class with "
                                     "class_index")
            if not 0 <= int(self.class_index) < self.c_dim:
                raise UserInputError(f"class_index {self.class_index} is out of range: the generator has "
                                     f"{self.c_dim} classes (0 to {self.c_dim - 1})")
        elif self.class_index is not None:
            raise UserInputError("class_index is only for conditional generators (this one has c_dim = 0)")

    @property
    def g_channel_base(self) -> int:
        """The synthesis network's ``channel_base``."""
        return int(self.channel_base or self.base_channels * self.image_size)

    @property
    def g_channel_max(self) -> int:
        """The synthesis network's ``channel_max``."""
        return int(self.channel_max or self.max_channels)

    def generator_kwargs(self) -> dict[str, Any]:
        """The official Generator constructor arguments."""
        return {"z_dim": self.latent_dim, "c_dim": self.c_dim, "w_dim": self.w_dim,
                "img_resolution": self.image_size, "img_channels": self.img_channels,
                "mapping_kwargs": {"num_layers": self.mapping_layers, "lr_multiplier": self.mapping_lr_multiplier,
                                   "embed_features": self.mapping_embed_features,
                                   "layer_features": self.mapping_layer_features},
                "synthesis_kwargs": {"channel_base": self.g_channel_base, "channel_max": self.g_channel_max,
                                     "num_fp16_res": self.num_fp16_res, "conv_clamp": self.conv_clamp,
                                     "architecture": self.architecture, "use_noise": self.use_noise}}

    def discriminator_kwargs(self) -> dict[str, Any]:
        """The official Discriminator constructor arguments."""
        return {"c_dim": self.c_dim, "img_resolution": self.image_size, "img_channels": self.img_channels,
                "architecture": self.d_architecture, "channel_base": int(self.d_channel_base or self.g_channel_base),
                "channel_max": int(self.d_channel_max or self.g_channel_max), "num_fp16_res": self.d_num_fp16_res,
                "conv_clamp": self.d_conv_clamp, "cmap_dim": self.d_cmap_dim,
                "mapping_kwargs": {"num_layers": self.d_mapping_layers,
                                   "lr_multiplier": self.d_mapping_lr_multiplier,
                                   "embed_features": self.d_mapping_embed_features,
                                   "layer_features": self.d_mapping_layer_features},
                "epilogue_kwargs": {"mbstd_group_size": self.d_mbstd_group_size,
                                    "mbstd_num_channels": self.d_mbstd_num_channels}}


@register_model
class StyleGAN2ADA(StyleSpacesGAN):
    """An official StyleGAN2-ADA generator (and discriminator), re-implemented; imported, not trained here.

    Spaces ``z``, ``w`` and ``w+``; inversion and discovery work in ``w``. Besides the
    :class:`~napari_latent.models.base.GenerativeModel` interface it offers the official
    network calls for parity checks: :meth:`mapping`, :meth:`synthesis` (all channels,
    unclamped) and :meth:`discriminate`.
    """

    name = "stylegan2-ada"
    objective: ClassVar[str] = ""
    config_class = StyleGAN2ADAConfig
    mixed_precision = ()

    config: StyleGAN2ADAConfig

    def __init__(self, config: StyleGAN2ADAConfig) -> None:
        super().__init__(config)
        self.generator = Generator(**config.generator_kwargs())
        self.discriminator = Discriminator(**config.discriminator_kwargs()) if config.discriminator else None
        self.reset_w_avg()

    # -- description -----------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """As :meth:`GenerativeModel.describe`, with ``num_ws`` and the channels per resolution."""
        synthesis = self.generator.synthesis
        channels = {str(res): channels_at(res, self.config.g_channel_base, self.config.g_channel_max)
                    for res in synthesis.block_resolutions}
        return {**super().describe(), "num_ws": self.num_ws, "channels": channels,
                "generator_parameters": sum(p.numel() for p in self.generator.parameters())}

    def style_affines(self) -> list[list[torch.Tensor]]:
        """Effective weights ``(channels, w_dim)`` of the style affine layers fed by each row of ``w+``."""
        per_row: list[list[torch.Tensor]] = [[] for _ in range(self.num_ws)]
        start = 0
        for block in self.generator.synthesis.blocks():
            layers = ([block.conv0] if block.in_channels else []) + [block.conv1]
            for i, layer in enumerate(layers):
                per_row[start + i].append(layer.affine.effective_weight())
            if block.num_torgb:
                per_row[start + block.num_conv].append(block.torgb.affine.effective_weight())
            start += block.num_conv
        return per_row

    def mapping_input_weight(self) -> torch.Tensor:
        """The ``z`` columns of the mapping's first layer (the rest read the class embedding)."""
        return self.generator.mapping.fc0.effective_weight()[:, :self.config.latent_dim]

    def noise_inputs(self) -> list[tuple[int, int]]:
        """Sizes of the synthesis layers' noise maps, in order (see :meth:`decode_noise`)."""
        return [(layer.resolution, layer.resolution) for layer in self.generator.synthesis.noise_layers()]

    def decode_noise(self, codes: torch.Tensor, space: str | None = None,
                     noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        """As :meth:`decode`, with explicit noise maps: one ``(n or 1, 1, h, w)`` per :meth:`noise_inputs` entry."""
        space = self.check_space(space)
        ws = self.to_space(codes, space, "w+").view(-1, self.num_ws, self.config.w_dim)
        images = self.generator.synthesis(ws, self.config.noise_mode, noise=noise)
        return straight_through_clamp(self.to_grey(images))

    # -- latent spaces -----------------------------------------------------------------------
    def labels(self, n: int) -> torch.Tensor | None:
        """One-hot labels of ``class_index`` ``(n, c_dim)`` for a conditional generator (else None)."""
        if self.config.c_dim == 0:
            return None
        return F.one_hot(torch.full((n,), int(self.config.class_index), device=self.device),
                         self.config.c_dim).float()

    def mapping(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None) -> torch.Tensor:
        """The official mapping: ``ws`` ``(n, num_ws, w_dim)`` of ``z`` ``(n, z_dim)`` (and labels ``c``)."""
        if c is None:
            c = self.labels(z.shape[0])
        return self.generator.mapping(z, c, truncation_psi, truncation_cutoff)

    def map_z(self, z: torch.Tensor, target: str) -> torch.Tensor:
        """The official mapping with the config's truncation: ``z -> w`` truncates every value (a single ``w``
        cannot hold ``truncation_cutoff``); ``z -> w+`` honours the cutoff."""
        cutoff = self.config.truncation_cutoff if target == "w+" else None
        ws = self.mapping(z, None, self.config.truncation_psi, cutoff)
        return ws[:, 0] if target == "w" else ws.flatten(1)

    @torch.no_grad()
    def reset_w_avg(self, samples: int = W_AVG_SAMPLES, seed: int = W_AVG_SEED) -> None:
        """Set ``w_avg`` to the mean ``w`` of ``samples`` prior samples (a random model; snapshots have their own)."""
        z = torch.randn(samples, self.config.latent_dim, generator=torch.Generator().manual_seed(seed))
        self.w_avg.copy_(self.mapping(z.to(self.w_avg.device))[:, 0].mean(dim=0))

    # -- images ------------------------------------------------------------------------------
    def synthesis(self, ws: torch.Tensor, noise_mode: NoiseMode = "const",
                  generator: torch.Generator | None = None) -> torch.Tensor:
        """The official synthesis: unclamped images ``(n, img_channels, S, S)`` of ``ws`` ``(n, num_ws, w_dim)``."""
        return self.generator.synthesis(ws, noise_mode, generator=generator)

    def to_grey(self, images: torch.Tensor) -> torch.Tensor:
        """One channel of ``(n, img_channels, S, S)`` images, by the config's ``grey`` choice."""
        if images.shape[1] == 1:
            return images
        grey = str(self.config.grey).lower()
        if grey == "luminance":
            weights = torch.tensor(LUMINANCE_WEIGHTS, dtype=images.dtype, device=images.device)
            return (images * weights[None, :, None, None]).sum(dim=1, keepdim=True)
        channel = GREY_CHANNELS[grey]
        return images[:, channel:channel + 1]

    def decode(self, codes: torch.Tensor, space: str | None = None) -> torch.Tensor:
        """Grey images ``(n, 1, S, S)`` in [-1, 1] of flat codes in ``space``.

        ``z`` codes are mapped with the config's truncation; the noise is the config's
        ``noise_mode``. The output is clamped with a straight-through gradient.
        """
        space = self.check_space(space)
        ws = self.to_space(codes, space, "w+").view(-1, self.num_ws, self.config.w_dim)
        return straight_through_clamp(self.to_grey(self.synthesis(ws, self.config.noise_mode)))

    def discriminate(self, images: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(n,)`` of images ``(n, img_channels, S, S)`` (grey images are repeated to 3 channels).

        Raises
        ------
        UserInputError
            When the model was made without its discriminator.
        """
        if self.discriminator is None:
            raise UserInputError(f"model {self.name!r} was imported without its discriminator")
        size = self.image_size
        if images.ndim != 4 or images.shape[1] not in (1, self.config.img_channels) or images.shape[2:] != (size, size):
            raise MismatchError(f"images of shape {tuple(images.shape)} do not fit model {self.name!r}: it needs "
                                f"(n, {self.config.img_channels}, {size}, {size})")
        if images.shape[1] != self.config.img_channels:
            images = images.expand(-1, self.config.img_channels, -1, -1)
        if c is None:
            c = self.labels(images.shape[0])
        return self.discriminator(images.float(), c).squeeze(1)
