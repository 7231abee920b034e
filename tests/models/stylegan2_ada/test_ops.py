"""The fast paths of the StyleGAN2-ADA operations give the numbers of the plain ones (for any filter)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from napari_latent.models.stylegan2_ada.ops import (
    bias_act,
    conv2d_resample,
    downsample2d,
    fir_filter,
    modulated_conv2d,
    modulated_conv_bias_act,
    upfirdn2d,
    upsample2d,
    upsample_conv2d,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def filters() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(4, generator=g, dtype=torch.float64) + 0.5, torch.rand(4, generator=g, dtype=torch.float64) + 0.5
    separable = torch.outer(a, b)
    # asymmetric; the second is not separable
    return [separable / separable.sum(), torch.rand(4, 4, generator=g, dtype=torch.float64)]


@pytest.mark.parametrize("f", filters(), ids=["separable", "full"])
def test_resampling_fast_paths(f) -> None:
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    f = f.double()
    plain_up = upfirdn2d(x, f, up=2, pad=(2, 1, 2, 1), gain=4)
    assert torch.allclose(upsample2d(x, f), plain_up, atol=1e-12)
    plain_down = upfirdn2d(x, f, down=2, pad=(1, 1, 1, 1))
    assert torch.allclose(downsample2d(x, f), plain_down, atol=1e-12)
    assert torch.allclose(fir_filter(x, f, (1, 2, 0, 1)), upfirdn2d(x, f, pad=(1, 2, 0, 1)), atol=1e-12)


@pytest.mark.parametrize("f", filters(), ids=["separable", "full"])
def test_the_upsampling_convolution_by_phases(f) -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 5, 6, 6, generator=g, dtype=torch.float64)
    weight = torch.randn(4, 5, 3, 3, generator=g, dtype=torch.float64)
    f = f.double()
    transposed = conv2d_resample(x, weight, f, up=2, padding=1)
    # upsample first, then convolve: the definition
    upsampled_first = F.conv2d(upfirdn2d(x, f, up=2, pad=(2, 1, 2, 1), gain=4), weight.flip((2, 3)), padding=1)
    assert torch.allclose(upsample_conv2d(x, weight, f), transposed, atol=1e-10)
    assert upsampled_first.shape == transposed.shape == (2, 4, 12, 12)


def test_the_fused_layer_equals_its_parts() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 6, 8, 8, generator=g)
    weight, styles = torch.randn(5, 6, 3, 3, generator=g), torch.randn(3, 6, generator=g)
    bias, noise = torch.randn(5, generator=g), torch.randn(1, 1, 16, 16, generator=g)
    f = filters()[0].float()
    for up, noise_, clamp in ((1, None, None), (2, noise, 0.5)):
        plain = bias_act(modulated_conv2d(x, weight, styles, True, up, 1, f, noise_), bias, "lrelu", 2 ** 0.5, clamp)
        fused = modulated_conv_bias_act(x, weight, styles, bias, up, 1, f, noise_, 2 ** 0.5, clamp)
        channels_last = modulated_conv_bias_act(x.contiguous(memory_format=torch.channels_last), weight, styles,
                                                bias, up, 1, f, noise_, 2 ** 0.5, clamp)
        assert torch.allclose(fused, plain, atol=1e-5) and torch.allclose(channels_last, plain, atol=1e-5)
    # per-sample weights (the official "fused" modulated convolution) give the same
    w = weight[None] * styles[:, None, :, None, None]
    w = w * (w.square().sum(dim=(2, 3, 4)) + 1e-8).rsqrt()[:, :, None, None, None]
    grouped = F.conv2d(x.reshape(1, -1, 8, 8), w.reshape(-1, 6, 3, 3), padding=1, groups=3).reshape(3, 5, 8, 8)
    assert torch.allclose(modulated_conv2d(x, weight, styles, True, 1, 1), grouped, atol=1e-5)


def test_gradients_flow_through_the_fused_layer() -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 4, 8, 8, generator=g)
    weight, bias = torch.randn(3, 4, 3, 3, generator=g), torch.randn(3, generator=g)
    styles = torch.randn(2, 4, generator=g, requires_grad=True)
    out = modulated_conv_bias_act(x, weight, styles, bias, up=2, padding=1, f=filters()[0].float(), clamp=0.3)
    out.square().sum().backward()
    assert styles.grad is not None and torch.isfinite(styles.grad).all() and styles.grad.abs().sum() > 0
