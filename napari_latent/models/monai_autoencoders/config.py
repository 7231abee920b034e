"""Settings of the MONAI autoencoder families: the network's constructor arguments and more.

A :class:`MonaiConfig` holds the keyword arguments of MONAI's ``AutoencoderKL`` or ``VQVAE``
constructor (``network``, a JSON-able dict), the square ``image_size`` the network works at
and the ``intensity_range`` it was trained on. When ``network`` is not given, a small network
is derived from the shared settings (``base_channels``, ``max_channels``, ``latent_dim``):
that is how ``build_model("monai-autoencoderkl", image_size=32, base_channels=8, ...)`` makes a
random tiny one for tests.

``latent_dim`` of these families is the number of *channels* of the latent map
(AutoencoderKL's ``latent_channels``, VQVAE's ``embedding_dim``); a flat code has
``latent_dim * h * w`` values (``model.latent_dim()``), h x w being the latent map's size.

Nothing here imports MONAI.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

from ...errors import UserInputError
from ..base import ModelConfig

#: What users are told when MONAI is missing (one line).
INSTALL_HINT = "MONAI is not installed: pip install 'napari-latent[monai]'"

#: The intensity ranges a network may have been trained on, as ``"low,high"`` strings.
DEFAULT_INTENSITY_RANGE = "0,1"


def import_monai_nets() -> Any:
    """``monai.networks.nets``, or a one-line :class:`UserInputError` naming the extra to install."""
    try:
        from monai.networks import nets
    except ImportError:
        raise UserInputError(INSTALL_HINT) from None
    return nets


def monai_available() -> bool:
    """Whether MONAI can be imported."""
    try:
        import_monai_nets()
    except UserInputError:
        return False
    return True


def parse_intensity_range(text: str | tuple[float, float] | list[float]) -> tuple[float, float]:
    """``"0,1"`` (or a pair) as ``(low, high)`` with ``low < high``."""
    try:
        if isinstance(text, str):
            low, high = (float(part) for part in text.split(","))
        else:
            low, high = (float(value) for value in text)
    except (TypeError, ValueError):
        raise UserInputError(f"intensity range {text!r} is not two numbers 'low,high' "
                             "such as '0,1' or '-1,1'") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise UserInputError(f"intensity range {text!r} needs finite low < high (such as '0,1' or '-1,1')")
    return low, high


def _levels(config: ModelConfig, count: int) -> list[int]:
    return [int(min(config.base_channels * 2 ** i, config.max_channels)) for i in range(count)]


@dataclasses.dataclass
class MonaiConfig(ModelConfig):
    """Settings of an imported MONAI autoencoder.

    Parameters
    ----------
    latent_dim : int
        Channels of the latent map (``latent_channels`` / ``embedding_dim``); 0: the
        network's. Must agree with ``network`` when both are given.
    network : dict
        Keyword arguments of the MONAI constructor (``spatial_dims`` 2, one input and one
        output channel). Empty: derived from ``base_channels``, ``max_channels`` and
        ``latent_dim`` (a small network, for tests and trials).
    intensity_range : str
        ``"low,high"``: the intensities the network was trained on (MONAI pipelines often
        scale to ``"0,1"``, the default). Images in [-1, 1] are mapped affinely to it before
        encoding, and decoded images back (not clipped).
    """

    image_size: int = 64
    latent_dim: int = 0
    network: dict[str, Any] = dataclasses.field(default_factory=dict)
    intensity_range: str = DEFAULT_INTENSITY_RANGE

    #: The constructor argument that sets the latent map's channels, and MONAI's default.
    latent_key: ClassVar[str] = ""
    latent_default: ClassVar[int] = 1
    #: The levels of a derived network (each halves the resolution).
    derived_levels: ClassVar[int] = 3

    def __post_init__(self) -> None:
        self.network = dict(self.network or {})
        if not self.network:
            self.network = self.derived_network()
        elif self.latent_dim == 0:
            self.latent_dim = int(self.network.get(self.latent_key, self.latent_default))

    def derived_network(self) -> dict[str, Any]:
        """Constructor arguments of a small network from the shared settings (see the subclasses)."""
        raise NotImplementedError

    @property
    def intensity(self) -> tuple[float, float]:
        """``intensity_range`` as ``(low, high)``."""
        return parse_intensity_range(self.intensity_range)

    def validate(self) -> None:
        super().validate()
        self.intensity  # noqa: B018 - raises for a malformed range
        network = self.network
        if not isinstance(network, dict) or not all(isinstance(k, str) for k in network):
            raise UserInputError("the network's constructor arguments must be a dict with string keys")
        if "_target_" in network:
            raise UserInputError("the network's constructor arguments must not contain '_target_'")
        dims = network.get("spatial_dims")
        if dims != 2:
            raise UserInputError(f"only 2D MONAI networks are supported (spatial_dims is {dims!r}, not 2)")
        for key in ("in_channels", "out_channels"):
            channels = network.get(key, 1)
            if channels != 1:
                raise UserInputError(f"only single-channel MONAI networks are supported "
                                     f"({key} is {channels!r}, not 1)")
        latent = int(network.get(self.latent_key, self.latent_default))
        if self.latent_dim != latent:
            raise UserInputError(f"latent_dim {self.latent_dim} disagrees with the network's "
                                 f"{self.latent_key} {latent}")


@dataclasses.dataclass
class AutoencoderKLConfig(MonaiConfig):
    """Settings of a MONAI ``AutoencoderKL`` (see :class:`MonaiConfig`).

    A derived network (no ``network`` given) has three levels of ``base_channels`` doubling
    up to ``max_channels`` (the latent map is a quarter of the image size), one residual
    block per level, no attention, and ``latent_dim`` latent channels (default 3, MONAI's).
    """

    latent_key: ClassVar[str] = "latent_channels"
    latent_default: ClassVar[int] = 3

    def derived_network(self) -> dict[str, Any]:
        channels = _levels(self, self.derived_levels)
        if self.latent_dim == 0:
            self.latent_dim = self.latent_default
        return {"spatial_dims": 2, "in_channels": 1, "out_channels": 1, "channels": channels,
                "latent_channels": int(self.latent_dim), "num_res_blocks": 1,
                "attention_levels": [False] * len(channels), "norm_num_groups": math.gcd(*channels, 32),
                "with_encoder_nonlocal_attn": False, "with_decoder_nonlocal_attn": False}


@dataclasses.dataclass
class VQVAEConfig(MonaiConfig):
    """Settings of a MONAI ``VQVAE`` (see :class:`MonaiConfig`).

    A derived network (no ``network`` given) has two levels of ``base_channels`` doubling up
    to ``max_channels``, each downsampling by 2 (the latent map is a quarter of the image
    size), one residual layer, a codebook of 32 vectors of ``latent_dim`` values (default 64,
    MONAI's ``embedding_dim``).
    """

    latent_key: ClassVar[str] = "embedding_dim"
    latent_default: ClassVar[int] = 64
    derived_levels: ClassVar[int] = 2

    def derived_network(self) -> dict[str, Any]:
        channels = _levels(self, self.derived_levels)
        if self.latent_dim == 0:
            self.latent_dim = self.latent_default
        return {"spatial_dims": 2, "in_channels": 1, "out_channels": 1, "channels": channels,
                "num_res_layers": 1, "num_res_channels": channels,
                "downsample_parameters": [[2, 4, 1, 1]] * len(channels),
                "upsample_parameters": [[2, 4, 1, 1, 0]] * len(channels),
                "num_embeddings": 32, "embedding_dim": int(self.latent_dim)}
