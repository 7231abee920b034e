"""Named training recipes: ``fast`` and ``quality`` for each trainable family at 64 and 128 pixels.

A preset is a set of model settings (what ``--set`` would give) and run settings (what
``--epochs`` ... would give), chosen for a cohort of about 40 volumes on a CPU:

``fast``
    a first model in a few minutes: enough to check the data, the slicing and the pipeline;
``quality``
    the recipe to use before reading a traversal as anatomy: a bigger latent map or network
    and more epochs (about 15 minutes on 2 cores for 40 volumes at 128 pixels).

Settings typed by the user win over the preset's::

    preset = training_preset("vqvae", "quality", 128)
    settings = preset.settings(device="cpu")             # TrainSettings with the preset's run values
    train_model("cohort/", "vqvae", settings=settings, **preset.model_settings())

The presets are measured in ``docs/training.md`` (what each reached, in how long).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import UserInputError
from .settings import TrainSettings

#: Preset names, fastest first.
PRESET_NAMES = ("fast", "quality")
#: Image sizes the presets are made for.
PRESET_SIZES = (64, 128)


@dataclass(frozen=True)
class TrainingPreset:
    """One recipe: a family, a name and an image size, with its model and run settings.

    Attributes
    ----------
    family : str
        The model family (``vae``, ``introvae``, ``vqvae``, ``dcgan``, ``stylegan``).
    name : str
        ``fast`` or ``quality``.
    image_size : int
        64 or 128.
    model : dict
        Model settings (the family's config fields), without ``image_size``.
    train : dict
        :class:`TrainSettings` fields.
    summary : str
        One line on what the recipe changes and why.
    """

    family: str
    name: str
    image_size: int
    model: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    summary: str = ""

    def settings(self, **overrides: Any) -> TrainSettings:
        """:class:`TrainSettings` with the preset's run values, ``overrides`` winning."""
        return TrainSettings(**{**self.train, **overrides})

    def model_settings(self, **overrides: Any) -> dict[str, Any]:
        """The model settings for ``build_model``/``train_model`` (with ``image_size``), ``overrides`` winning."""
        return {**self.model, "image_size": self.image_size, **overrides}

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable description (recorded with the training run)."""
        return {"family": self.family, "name": self.name, "image_size": self.image_size,
                "model": dict(self.model), "train": dict(self.train), "summary": self.summary}


def _presets() -> dict[tuple[str, str, int], TrainingPreset]:
    recipes = [
        # VAE and IntroVAE: a wider network, a lighter KL (sharper reconstructions), an SSIM term (measured on the
        # VAE at 64 px, 3 minutes: SSIM 0.48 -> 0.53, MSE 0.050 -> 0.042), more epochs.
        TrainingPreset("vae", "fast", 64, {}, {"epochs": 5}, "the default network, 5 epochs"),
        TrainingPreset("vae", "quality", 64, {"base_channels": 32, "beta": 0.25, "ssim_weight": 0.1}, {"epochs": 40},
                       "twice the channels, KL weight 0.25, an SSIM loss term (0.1), 40 epochs"),
        TrainingPreset("vae", "fast", 128, {}, {"epochs": 3}, "the default network, 3 epochs"),
        TrainingPreset("vae", "quality", 128, {"base_channels": 32, "beta": 0.25, "latent_dim": 64,
                                               "ssim_weight": 0.1}, {"epochs": 2},
                       "twice the channels, KL weight 0.25, 64 latent dimensions, an SSIM loss term (0.1), 2 epochs "
                       "(about 15 minutes on 2 cores for 40 volumes)"),
        TrainingPreset("introvae", "fast", 64, {}, {"epochs": 5}, "the default network, 5 epochs"),
        TrainingPreset("introvae", "quality", 64, {"base_channels": 32, "beta": 0.25, "ssim_weight": 0.1},
                       {"epochs": 40}, "twice the channels, KL weight 0.25, an SSIM loss term (0.1), 40 epochs"),
        TrainingPreset("introvae", "fast", 128, {}, {"epochs": 1}, "the default network, 1 epoch"),
        # IntroVAE at 128 px: three passes per step; twice the channels took 24 s a step here, so the default width
        TrainingPreset("introvae", "quality", 128, {"beta": 0.25, "latent_dim": 64, "ssim_weight": 0.1},
                       {"epochs": 2}, "the default network, KL weight 0.25, 64 latent dimensions, an SSIM loss term "
                       "(0.1), 2 epochs"),
        # VQ-VAE: a finer quantised map is what sharpens it (a 32 x 32 map at 128 pixels).
        TrainingPreset("vqvae", "fast", 64, {"latent_resolution": 16}, {"epochs": 5},
                       "a 16 x 16 code map, 5 epochs"),
        TrainingPreset("vqvae", "quality", 64, {"latent_resolution": 16, "codebook_size": 512}, {"epochs": 30},
                       "a 16 x 16 map of 512 codes, 30 epochs"),
        TrainingPreset("vqvae", "fast", 128, {"latent_resolution": 16}, {"epochs": 3},
                       "a 16 x 16 code map, 3 epochs"),
        TrainingPreset("vqvae", "quality", 128, {"latent_resolution": 32, "codebook_size": 512}, {"epochs": 6},
                       "a 32 x 32 map of 512 codes, 6 epochs (about 15 minutes on 2 cores for 40 volumes)"),
        # GANs: more images seen matters most; the EMA generator is what training returns.
        TrainingPreset("dcgan", "fast", 64, {}, {"epochs": 10}, "the default networks, 10 epochs"),
        TrainingPreset("dcgan", "quality", 64, {"base_channels": 32}, {"epochs": 80},
                       "twice the channels, 80 epochs"),
        TrainingPreset("dcgan", "fast", 128, {}, {"epochs": 6}, "the default networks, 6 epochs"),
        TrainingPreset("dcgan", "quality", 128, {"base_channels": 32}, {"epochs": 10},
                       "twice the channels, 10 epochs (about 15 minutes on 2 cores for 40 volumes)"),
        TrainingPreset("stylegan", "fast", 64, {}, {"epochs": 10}, "the default networks, 10 epochs"),
        TrainingPreset("stylegan", "quality", 64, {}, {"epochs": 80}, "the default networks, 80 epochs"),
        # StyleGAN at 128 px made 79 steps (1.25 epochs of 40 volumes) in 15 minutes on 2 cores: a GPU-sized model
        TrainingPreset("stylegan", "fast", 128, {}, {"epochs": 1}, "the default networks, 1 epoch"),
        TrainingPreset("stylegan", "quality", 128, {}, {"epochs": 2},
                       "the default networks, 2 epochs (about 25 minutes on 2 cores for 40 volumes; a GPU is faster)"),
    ]
    return {(p.family, p.name, p.image_size): p for p in recipes}


#: Every preset by ``(family, name, image_size)``.
PRESETS: dict[tuple[str, str, int], TrainingPreset] = _presets()


def preset_families() -> list[str]:
    """The families that have presets."""
    return sorted({family for family, _, _ in PRESETS})


def training_preset(family: str, name: str, image_size: int) -> TrainingPreset:
    """The preset ``name`` of ``family`` at ``image_size`` pixels.

    Raises
    ------
    UserInputError
        An unknown name, a family without presets (imported or plugin families) or a size
        the presets are not made for.
    """
    if name not in PRESET_NAMES:
        raise UserInputError(f"unknown preset {name!r}; choose one of: {', '.join(PRESET_NAMES)}")
    if family not in preset_families():
        raise UserInputError(f"no presets for the {family!r} model; presets exist for: "
                             f"{', '.join(preset_families())}")
    found = PRESETS.get((family, name, int(image_size)))
    if found is None:
        raise UserInputError(f"the presets are made for {' and '.join(map(str, PRESET_SIZES))} pixels, not "
                             f"{image_size}; set the options yourself at this size")
    return found
