"""Exact inference rewrites: nearest upsampling + 3x3 convolution as one transposed convolution."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from napari_latent.models.base import build_model
from napari_latent.models.inference_rewrites import UpsampleConv, rewrite_for_inference


@pytest.mark.parametrize(("cin", "cout", "size", "bias"), [(3, 5, 4, True), (8, 8, 7, False), (16, 4, 9, True)])
def test_upsample_conv_equals_upsampling_then_convolution(cin: int, cout: int, size: int, bias: bool) -> None:
    torch.manual_seed(cin)
    conv = nn.Conv2d(cin, cout, 3, padding=1, bias=bias)
    x = torch.randn(2, cin, size, size + 1)
    expected = conv(F.interpolate(x, scale_factor=2, mode="nearest"))
    with torch.no_grad():
        got = UpsampleConv(conv)(x)
    assert got.shape == expected.shape == (2, cout, 2 * size, 2 * size + 2)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # and in channels-last memory format
    module = UpsampleConv(conv).to(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(module(x.contiguous(memory_format=torch.channels_last)), expected,
                                   atol=1e-5, rtol=1e-5)


def test_only_plain_3x3_convolutions_are_rewritten() -> None:
    with pytest.raises(ValueError, match="3x3"):
        UpsampleConv(nn.Conv2d(2, 2, 3, padding=1, stride=2))
    strided = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(2, 2, 3, padding=1, dilation=2))
    bilinear = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear"), nn.Conv2d(2, 2, 3, padding=1))
    assert rewrite_for_inference(strided) == 0 and rewrite_for_inference(bilinear) == 0


def test_a_vae_decoder_rewritten_decodes_the_same_images() -> None:
    torch.manual_seed(0)
    model = build_model("vae", image_size=32, latent_dim=6, base_channels=8, max_channels=32).eval()
    fast = copy.deepcopy(model)
    count = rewrite_for_inference(fast)
    assert count >= 3  # the up path's three upsampling convolutions (plus SiLUs made in-place)
    assert not any(isinstance(m, nn.Upsample) for m in fast.modules())
    codes = torch.randn(5, 6)
    with torch.inference_mode():
        torch.testing.assert_close(fast.decode(codes, "z"), model.decode(codes, "z"), atol=1e-5, rtol=1e-4)
