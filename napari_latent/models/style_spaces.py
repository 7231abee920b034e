"""What every StyleGAN-like family shares: the latent spaces ``z``, ``w`` and ``w+`` and how they describe themselves.

Our own compact StyleGAN2 (:mod:`napari_latent.models.stylegan`) and the re-implemented
official StyleGAN2-ADA networks (:mod:`napari_latent.models.stylegan2_ada`) differ in their
layers but not in their latent spaces: ``z`` is the prior (standard normal, normalised by its
second moment inside the mapping, so 0 is singular), ``w`` the mapped space with its tracked
mean ``w_avg``, and ``w+`` one ``w`` per style input (``num_ws`` of them). SeFa factorises the
style affine weights: shared by every input in ``w``, one block per input in ``w+``.

A family subclasses :class:`StyleSpacesGAN`, keeps its generator in ``self.generator`` (with
``num_ws`` and ``mapping.w_avg``), and implements :meth:`StyleSpacesGAN.style_affines`,
:meth:`StyleSpacesGAN.mapping_input_weight` and :meth:`StyleSpacesGAN.map_z`.
"""

from __future__ import annotations

import abc

import torch

from ..errors import MismatchError
from .base import LatentPrior, LatentWeights
from .gan import GANModel


def straight_through_clamp(images: torch.Tensor) -> torch.Tensor:
    """Values clamped to [-1, 1] with the gradient of the identity."""
    return images + (images.clamp(-1.0, 1.0) - images).detach()


class StyleSpacesGAN(GANModel):
    """A GAN with the latent spaces ``z``, ``w`` and ``w+`` (see the module docstring)."""

    spaces = ("z", "w", "w+")

    @property
    def num_ws(self) -> int:
        """Number of style inputs of the synthesis network (rows of a ``w+`` code)."""
        return int(self.generator.num_ws)

    @property
    def w_avg(self) -> torch.Tensor:
        """The tracked mean of ``w`` ``(w_dim,)`` (a buffer of the generator's mapping)."""
        return self.generator.mapping.w_avg

    @property
    def analysis_space(self) -> str:
        """``w``: inversion and discovery work there by default."""
        return "w"

    def latent_shape(self, space: str | None = None) -> tuple[int, ...]:
        """``(latent_dim,)`` in ``z``, ``(w_dim,)`` in ``w``, ``(num_ws, w_dim)`` in ``w+``."""
        space = self.check_space(space)
        if space == "z":
            return (int(self.config.latent_dim),)
        if space == "w":
            return (int(self.config.w_dim),)
        return (self.num_ws, int(self.config.w_dim))

    def prior(self, space: str | None = None) -> LatentPrior:
        """``z`` is standard normal but normalised by its second moment (0 is singular); ``w``/``w+`` are mapped."""
        space = self.check_space(space)
        return LatentPrior(standard_normal=space == "z", mean_is_typical=space != "z")

    def mean_latent(self, space: str | None = None, samples: int = 512, seed: int = 0) -> torch.Tensor:
        """``w_avg`` in ``w`` (repeated in ``w+``), 0 in ``z``: the start of optimisation-based inversion.

        ``samples`` and ``seed`` are unused: the mean is tracked.
        """
        space = self.check_space(space)
        if space == "z":
            return torch.zeros(1, self.config.latent_dim, device=self.device)
        w = self.w_avg.detach().clone()[None]
        return w if space == "w" else w.repeat(1, self.num_ws)

    @abc.abstractmethod
    def map_z(self, z: torch.Tensor, target: str) -> torch.Tensor:
        """Flat codes in ``target`` (``"w"`` or ``"w+"``) of ``z`` codes: the mapping, with the config's truncation."""

    def to_space(self, codes: torch.Tensor, source: str, target: str) -> torch.Tensor:
        """Convert flat codes: ``z -> w`` and ``z -> w+`` (:meth:`map_z`), ``w -> w+`` (repeated).

        ``w+ -> w`` and anything back to ``z`` raise :class:`MismatchError`: the mapping
        network is not invertible and a ``w+`` code has a separate ``w`` per style input.
        """
        source, target = self.check_space(source), self.check_space(target)
        codes = self.check_codes(codes, source)
        if source == target:
            return codes
        if target == "z" or source == "w+":
            why = ("the mapping network z -> w is not invertible" if target == "z" else
                   f"a w+ code has a separate w for each of the {self.num_ws} style inputs")
            raise MismatchError(f"codes in space {source!r} cannot be converted to {target!r}: {why}")
        if source == "z":
            return self.map_z(codes, target)
        return codes.repeat(1, self.num_ws)

    def sample_latent(self, n: int, generator: torch.Generator | None = None, space: str | None = None) -> torch.Tensor:
        """``n`` codes: ``z ~ N(0, I)``, mapped (with the config's truncation) for ``w`` and ``w+``."""
        space = self.check_space(space)
        z = torch.randn(n, self.config.latent_dim, generator=generator, device="cpu").to(self.device)
        if space == "z":
            return z
        with torch.no_grad():
            return self.to_space(z, "z", space)

    @abc.abstractmethod
    def style_affines(self) -> list[list[torch.Tensor]]:
        """Effective weights ``(channels, w_dim)`` of the style affine layers fed by each style input."""

    @abc.abstractmethod
    def mapping_input_weight(self) -> torch.Tensor:
        """The effective weight of the mapping's first layer on the ``z`` values ``(units, latent_dim)``."""

    def latent_weights(self, space: str | None = None) -> LatentWeights:
        """``z``: the mapping's first layer; ``w``: all style affines (``"shared"``); ``w+``: one block per input.

        Each style input's entry stacks the affines it feeds (a convolution's, and a ``torgb``
        or ``toGray`` layer's for inputs shared with one), as effective weights.
        """
        space = self.check_space(space)
        if space == "z":
            return LatentWeights((self.mapping_input_weight(),))
        inputs = tuple(torch.cat(weights) for weights in self.style_affines())
        return LatentWeights(inputs, "shared" if space == "w" else "blocks")
