"""Intensity augmentations: ranges, grey images stay grey, blur and noise by hand."""

from __future__ import annotations

import pytest
import torch

from maskrcnn.data.augment_common import is_gray
from maskrcnn.data.photometric import (
    IntensityJitter,
    PhotometricJitter,
    RandomGaussianBlur,
    RandomGaussianNoise,
    gaussian_blur,
    gaussian_kernel1d,
)
from maskrcnn.structures import Targets


def _gray(height: int = 24, width: int = 31) -> torch.Tensor:
    plane = torch.rand((1, height, width), generator=torch.Generator().manual_seed(0))
    return plane.expand(3, height, width).contiguous()


def _color(height: int = 24, width: int = 31) -> torch.Tensor:
    return torch.rand((3, height, width), generator=torch.Generator().manual_seed(1))


ALL = [
    IntensityJitter(0.5, 0.5, 1.0),
    PhotometricJitter(0.5, 0.5, 0.5),
    RandomGaussianBlur(1.0, (0.5, 2.0)),
    RandomGaussianNoise(1.0, (0.05, 0.2)),
]


@pytest.mark.parametrize("transform", ALL, ids=lambda t: type(t).__name__)
def test_grey_images_stay_grey_and_in_range(transform):
    torch.manual_seed(0)
    targets = Targets.empty(24, 31)
    for _ in range(10):
        image = _gray()
        out, out_targets = transform(image, targets)
        assert out_targets is targets
        assert out.shape == image.shape and out.dtype == image.dtype
        assert is_gray(out), f"{transform} put a colour cast on a grey image"
        assert 0.0 <= out.min() and out.max() <= 1.0
        assert not torch.equal(out, image)


def test_noise_is_drawn_per_channel_for_colour_images_unless_asked():
    torch.manual_seed(0)
    image = _color()
    per_channel, _ = RandomGaussianNoise(1.0, (0.1, 0.1))(image, Targets.empty(24, 31))
    differences = per_channel - image
    assert not torch.allclose(differences[0], differences[1], atol=1e-3)
    shared, _ = RandomGaussianNoise(1.0, (0.1, 0.1), channels="gray")(_gray(), Targets.empty(24, 31))
    assert is_gray(shared)
    colour_on_grey, _ = RandomGaussianNoise(1.0, (0.1, 0.1), channels="color")(_gray(), Targets.empty(24, 31))
    assert not is_gray(colour_on_grey)


def test_noise_sigma_is_what_was_asked():
    torch.manual_seed(0)
    image = torch.full((3, 200, 200), 0.5)
    out, _ = RandomGaussianNoise(1.0, (0.05, 0.05))(image, Targets.empty(200, 200))
    assert abs(float((out - image).std()) - 0.05) < 0.002


def test_intensity_parts_by_hand():
    image = torch.tensor([0.2, 0.4, 0.6, 0.8]).view(1, 1, 4).expand(3, 1, 4).contiguous()
    targets = Targets.empty(1, 4)
    torch.manual_seed(0)
    factor = 1 - 0.5 + torch.rand(()).item() * 1.0
    torch.manual_seed(0)
    bright, _ = IntensityJitter(brightness=0.5)(image, targets)
    torch.testing.assert_close(bright, (image * factor).clamp(0, 1))
    torch.manual_seed(0)
    contrast_factor = 1 - 0.5 + torch.rand(()).item() * 1.0
    torch.manual_seed(0)
    stretched, _ = IntensityJitter(contrast=0.5)(image, targets)
    torch.testing.assert_close(stretched, ((image - 0.5) * contrast_factor + 0.5).clamp(0, 1))
    torch.manual_seed(0)
    bound = torch.tensor(2.0).log().item()
    exponent = torch.tensor(-bound + 2 * bound * torch.rand(()).item()).exp().item()
    torch.manual_seed(0)
    powered, _ = IntensityJitter(gamma=1.0)(image, targets)
    torch.testing.assert_close(powered, image.pow(exponent))
    assert 0.5 <= exponent <= 2.0


def test_blur_kernel_and_a_blurred_impulse():
    kernel = gaussian_kernel1d(1.0)
    assert kernel.numel() == 7 and abs(float(kernel.sum()) - 1) < 1e-6
    torch.testing.assert_close(kernel, kernel.flip(0))
    image = torch.zeros(3, 21, 21)
    image[:, 10, 10] = 1.0
    out = gaussian_blur(image, 1.0)
    torch.testing.assert_close(out[0], torch.outer(kernel, kernel).new_zeros(21, 21).index_put_(
        (torch.arange(7).repeat_interleave(7) + 7, torch.arange(7).repeat(7) + 7), torch.outer(kernel, kernel).flatten()))
    assert abs(float(out.sum()) - 3.0) < 1e-5  # mass preserved away from the borders
    flat = torch.full((3, 9, 13), 0.3)
    torch.testing.assert_close(gaussian_blur(flat, 2.5), flat)  # replicated edges: a flat image stays flat


def test_random_blur_probability_zero_changes_nothing():
    image = _color()
    out, _ = RandomGaussianBlur(0.0)(image, Targets.empty(24, 31))
    assert out is image


def test_bad_values_are_refused():
    with pytest.raises(ValueError, match="brightness"):
        IntensityJitter(brightness=1.5)
    with pytest.raises(ValueError, match="sigma"):
        RandomGaussianBlur(1.0, (0.0, 1.0))
    with pytest.raises(ValueError, match="channels"):
        RandomGaussianNoise(1.0, channels="rgb")
