"""The reconstruction error of the autoencoder objectives: squared error, plus an optional SSIM term.

``reconstruction_error`` is in the unit of the per-image sum of squared errors (the
Gaussian likelihood term of the VAE, VQ-VAE and IntroVAE objectives), so the objectives
keep their form: ``SSE + ssim_weight * pixels * (1 - SSIM)``. Per pixel, as the losses are
reported, the SSIM term is ``ssim_weight * (1 - SSIM)`` next to the MSE. SSIM is
:func:`napari_latent.metrics.ssim` (Gaussian window, differentiable), so a weight of 0.05
adds about as much as the MSE of a model that reconstructs at 30 dB. Structural similarity
as a training loss for image restoration: Zhao et al. 2017, "Loss functions for image
restoration with neural networks".
"""

from __future__ import annotations

import torch

from ...metrics import ssim


def reconstruction_error(reconstruction: torch.Tensor, images: torch.Tensor,
                         ssim_weight: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The reconstruction loss (per-image sum, batch mean) and the plain SSE (for reporting).

    Parameters
    ----------
    reconstruction, images : Tensor
        ``(n, 1, S, S)`` batches; the reconstruction is cast to float32.
    ssim_weight : float
        Weight of ``1 - SSIM`` per pixel; 0 leaves the squared error alone (no SSIM computed).

    Returns
    -------
    (Tensor, Tensor)
        The loss term and the sum of squared errors, both per image and averaged over the batch.
    """
    reconstruction = reconstruction.float()
    sse = (reconstruction - images).pow(2).flatten(1).sum(1).mean()
    if not ssim_weight:
        return sse, sse
    pixels = images[0].numel()
    return sse + ssim_weight * pixels * (1.0 - ssim(reconstruction, images)), sse
