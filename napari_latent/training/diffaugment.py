"""Differentiable augmentation for GANs trained on little data (DiffAugment).

Zhao, Liu, Lin, Zhu & Han (2020), "Differentiable Augmentation for Data-Efficient GAN
Training", NeurIPS. The same random transformations are applied to real *and* generated
images before the discriminator sees them (in the discriminator's and in the generator's
losses); every operation is differentiable with respect to the images, so the generator
learns through them, and the discriminator cannot overfit the few real images as easily.

Operations (the policy names them comma-separated, applied in the given order; see
:data:`~napari_latent.models.gan.DIFFAUGMENT_OPS`):

``translation``
    Shift each image by a random whole number of pixels, up to 1/8 of the size along each
    axis; uncovered pixels become background (-1). The image size is unchanged.
``cutout``
    Set a random square of half the image size (clipped at the borders) to background (-1).
``brightness``
    Add a random offset in [-0.5, 0.5) to each image.
``contrast``
    Scale each image's deviations from its mean by a random factor in [0.5, 1.5).
``color``
    ``brightness`` then ``contrast`` (the colour operation of the paper without its
    saturation change, which grey images do not have).

Differences from the reference implementation: images here are in [-1, 1] with the
background at -1 (medical slices), so translation pads and cutout fills with -1 instead of
0, which would be mid-grey and make the augmentation trivially visible. Each image gets its
own random draw; all random numbers come from the ``generator`` argument (a CPU generator;
the draws are moved to the images' device), so a training step is reproducible.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.gan import parse_diffaugment_policy

BACKGROUND = -1.0
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def _uniform(n: int, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """``n`` uniform [0, 1) draws shaped ``(n, 1, 1, 1)`` on the device and dtype of ``like``."""
    return torch.rand(n, 1, 1, 1, generator=generator).to(device=like.device, dtype=like.dtype)


def brightness(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Add a random offset in [-0.5, 0.5) to each image."""
    return images + (_uniform(images.shape[0], generator, images) - 0.5)


def contrast(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Scale each image's deviations from its mean by a random factor in [0.5, 1.5)."""
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return (images - mean) * (_uniform(images.shape[0], generator, images) + 0.5) + mean


def translation(images: torch.Tensor, generator: torch.Generator, ratio: float = TRANSLATION_RATIO) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size (whole pixels), filling with background."""
    n, _, h, w = images.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sh, sh + 1, (n,), generator=generator)
    tx = torch.randint(-sw, sw + 1, (n,), generator=generator)
    padded = F.pad(images, (sw, sw, sh, sh), value=BACKGROUND).permute(0, 2, 3, 1)  # (n, h+2sh, w+2sw, c)
    rows = (torch.arange(h)[None, :] + sh - ty[:, None]).to(images.device)  # output row i <- input row i - ty
    cols = (torch.arange(w)[None, :] + sw - tx[:, None]).to(images.device)
    batch = torch.arange(n, device=images.device)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def cutout(images: torch.Tensor, generator: torch.Generator, ratio: float = CUTOUT_RATIO) -> torch.Tensor:
    """Set a random square of ``ratio`` of the image size (clipped at the borders) to background."""
    n, _, h, w = images.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    # centres as in the reference: 0 .. size (inclusive for even cut sizes)
    cy = torch.randint(0, h + (1 - ch % 2), (n, 1), generator=generator)
    cx = torch.randint(0, w + (1 - cw % 2), (n, 1), generator=generator)
    r = torch.arange(h)[None, :]
    c = torch.arange(w)[None, :]
    inside_r = (r >= cy - ch // 2) & (r < cy - ch // 2 + ch)
    inside_c = (c >= cx - cw // 2) & (c < cx - cw // 2 + cw)
    keep = ~(inside_r[:, :, None] & inside_c[:, None, :])  # (n, h, w)
    keep = keep[:, None].to(device=images.device, dtype=images.dtype)
    return images * keep + BACKGROUND * (1.0 - keep)  # exact: kept pixels are unchanged


_OPS = {
    "translation": (translation,),
    "cutout": (cutout,),
    "brightness": (brightness,),
    "contrast": (contrast,),
    "color": (brightness, contrast),
}


def diff_augment(images: torch.Tensor, policy: str, generator: torch.Generator) -> torch.Tensor:
    """Apply a DiffAugment policy to a batch of images.

    Parameters
    ----------
    images : torch.Tensor
        ``(n, c, H, W)`` images in [-1, 1] (background -1).
    policy : str
        Comma-separated operations (``"translation,cutout"``); ``""`` returns ``images``
        unchanged.
    generator : torch.Generator
        A CPU generator; the source of every random number.

    Returns
    -------
    torch.Tensor
        The augmented images, same shape, differentiable with respect to ``images``.

    Raises
    ------
    UserInputError
        For unknown operations.
    """
    for op in parse_diffaugment_policy(policy):
        for fn in _OPS[op]:
            images = fn(images, generator)
    return images
