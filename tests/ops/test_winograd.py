"""Winograd F(4x4, 3x3): equal to the direct 3x3 convolution up to float rounding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from maskrcnn.ops.winograd import TILES_PER_BAND, winograd_conv3x3, winograd_weight


def direct(x, weight, bias, relu=False, residual=None):
    out = F.conv2d(x, weight, bias, padding=1)
    if residual is not None:
        out = out + residual
    return out.clamp_min(0) if relu else out


@pytest.mark.parametrize(
    "n, c, k, h, w",
    [
        (1, 8, 16, 16, 16),  # whole tiles
        (2, 5, 3, 7, 9),  # partial tiles on both sides, odd channel counts
        (3, 4, 6, 1, 1),  # a single pixel
        (1, 3, 2, 5, 13),
        (1, 2, 3, 10, 400),  # 100 tiles per row: bands of 2 tile rows, the last one partial
        (2, 2, 2, 9, 1030),  # 2 x 258 tiles per row: one tile row per band (more than a band)
    ],
)
def test_matches_direct_convolution_in_float64(n, c, k, h, w):
    generator = torch.Generator().manual_seed(n * 100 + h)
    x = torch.randn((n, c, h, w), generator=generator, dtype=torch.float64)
    weight = torch.randn((k, c, 3, 3), generator=generator, dtype=torch.float64)
    bias = torch.randn(k, generator=generator, dtype=torch.float64)
    got = winograd_conv3x3(x, winograd_weight(weight), bias)
    assert got.shape == (n, k, h, w)
    torch.testing.assert_close(got, direct(x, weight, bias), rtol=0, atol=1e-10)


def test_band_sizes_in_the_cases_above():
    assert TILES_PER_BAND // 100 == 2 and TILES_PER_BAND // (2 * 258) == 0  # so both cases split


def test_float32_error_and_fused_bias_relu_residual():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((2, 64, 30, 22), generator=generator).contiguous(memory_format=torch.channels_last)
    weight = torch.randn((32, 64, 3, 3), generator=generator) / 24
    bias = torch.randn(32, generator=generator)
    residual = torch.randn((2, 32, 30, 22), generator=generator)
    got = winograd_conv3x3(x, winograd_weight(weight), bias, relu=True, residual=residual)
    expected = direct(x.double(), weight.double(), bias.double(), relu=True, residual=residual.double())
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert (got >= 0).all()
    # F(4x4, 3x3) in float32: ~1e-5 of the output's largest value (direct float32: ~1e-6).
    assert float((got.double() - expected).abs().max() / expected.abs().max()) < 5e-5


def test_without_bias_and_from_a_contiguous_input():
    x = torch.randn(1, 6, 10, 11)
    weight = torch.randn(4, 6, 3, 3)
    got = winograd_conv3x3(x, winograd_weight(weight))
    torch.testing.assert_close(got, F.conv2d(x, weight, padding=1), rtol=1e-4, atol=1e-4)


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"\(K, C, 3, 3\) kernel, got \(4, 6, 5, 5\)"):
        winograd_weight(torch.zeros(4, 6, 5, 5))
    with pytest.raises(ValueError, match="does not fit input with 7 channels"):
        winograd_conv3x3(torch.zeros(1, 7, 8, 8), winograd_weight(torch.zeros(4, 6, 3, 3)))
