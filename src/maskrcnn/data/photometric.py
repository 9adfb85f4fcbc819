"""Intensity augmentations: brightness, contrast, gamma, colour jitter, Gaussian blur and noise.

Each transform is a callable `(image (3, H, W) float in [0, 1], Targets) -> (image, Targets)`
that leaves the geometry (and the targets) untouched and draws its random numbers from
torch's global generator (seeded by the training loop, restored on resume).

Microscopy images are often grey stored as RGB. Every factor here is one number for all
three channels, so a grey image stays exactly grey (no colour cast); noise is drawn as one
plane shared by the three channels for grey images (`channels="auto"`, see
`RandomGaussianNoise`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from maskrcnn.data.augment_common import is_gray, on_gray_plane, uniform
from maskrcnn.structures import Targets

# ITU-R BT.601 luma weights, as torchvision's rgb_to_grayscale
_LUMA = (0.299, 0.587, 0.114)
NOISE_CHANNEL_MODES = ("auto", "gray", "color")


def luma(image: Tensor) -> Tensor:
    """(3, H, W) -> (1, H, W) weighted grey level; a (1, H, W) plane is its own grey level."""
    if image.shape[0] == 1:
        return image
    weights = torch.tensor(_LUMA, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return (image * weights).sum(dim=0, keepdim=True)


class PhotometricJitter:
    """Random brightness, contrast and saturation factors in [1 - x, 1 + x]; geometry untouched."""

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2) -> None:
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation

    def __call__(self, image: Tensor, targets: Targets) -> tuple[Tensor, Targets]:
        if self.brightness > 0:
            image = image * uniform(1 - self.brightness, 1 + self.brightness)
        if self.contrast > 0:
            mean = luma(image).mean()
            factor = uniform(1 - self.contrast, 1 + self.contrast)
            image = (image - mean) * factor + mean
        if self.saturation > 0:
            gray = luma(image)  # (1, H, W)
            factor = uniform(1 - self.saturation, 1 + self.saturation)
            image = (image - gray) * factor + gray
        return image.clamp(0.0, 1.0), targets

    def __repr__(self) -> str:
        return f"PhotometricJitter({self.brightness}, {self.contrast}, {self.saturation})"


class IntensityJitter:
    """Brightness (multiply by [1 - b, 1 + b]), contrast (stretch around the mean grey level
    by [1 - c, 1 + c]) and gamma (power in [1 / (1 + g), 1 + g], log-uniform), in that order.

    One factor per image for all channels: a grey image stays grey. 0 switches a part off.
    """

    def __init__(self, brightness: float = 0.0, contrast: float = 0.0, gamma: float = 0.0) -> None:
        for name, value in (("brightness", brightness), ("contrast", contrast)):
            if not 0 <= value < 1:
                raise ValueError(f"IntensityJitter: {name} must be in [0, 1), got {value}")
        if gamma < 0:
            raise ValueError(f"IntensityJitter: gamma must be >= 0, got {gamma}")
        self.brightness = brightness
        self.contrast = contrast
        self.gamma = gamma

    def __call__(self, image: Tensor, targets: Targets) -> tuple[Tensor, Targets]:
        brightness = uniform(1 - self.brightness, 1 + self.brightness) if self.brightness > 0 else None
        contrast = uniform(1 - self.contrast, 1 + self.contrast) if self.contrast > 0 else None
        exponent = math.exp(uniform(-math.log1p(self.gamma), math.log1p(self.gamma))) if self.gamma > 0 else None

        def jitter(x: Tensor) -> Tensor:
            if brightness is not None:
                x = (x * brightness).clamp_(0.0, 1.0)
            if contrast is not None:
                mean = luma(x).mean()
                x = ((x - mean) * contrast + mean).clamp_(0.0, 1.0)
            if exponent is not None:
                x = x.pow(exponent)
            return x

        return on_gray_plane(image, jitter), targets

    def __repr__(self) -> str:
        return f"IntensityJitter(brightness={self.brightness}, contrast={self.contrast}, gamma={self.gamma})"


def gaussian_kernel1d(sigma: float, dtype: torch.dtype = torch.float32) -> Tensor:
    """Normalised 1-D Gaussian of radius ceil(3 sigma): (2 r + 1,)."""
    radius = max(1, math.ceil(3.0 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).to(dtype)


def gaussian_blur(image: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of a (C, H, W) image, edges replicated.

    As a sum of shifted, weighted copies (2 r + 1 per axis): on one CPU thread this is about
    twice as fast as `conv2d` with 1-D kernels, which does not vectorise such thin kernels."""
    _, height, width = image.shape
    kernel = gaussian_kernel1d(sigma).tolist()
    radius = len(kernel) // 2
    padded = F.pad(image[None], (radius, radius, radius, radius), mode="replicate")[0]  # (C, H + 2r, W + 2r)
    rows = padded[:, :, 0:width] * kernel[0]  # (C, H + 2r, W): along each row
    for offset in range(1, len(kernel)):
        rows.add_(padded[:, :, offset : offset + width], alpha=kernel[offset])
    out = rows[:, 0:height] * kernel[0]  # (C, H, W): along each column
    for offset in range(1, len(kernel)):
        out.add_(rows[:, offset : offset + height], alpha=kernel[offset])
    return out


class RandomGaussianBlur:
    """With probability p blur with a Gaussian whose sigma (pixels) is drawn uniformly in `sigma_range`."""

    def __init__(self, p: float = 0.5, sigma_range: tuple[float, float] = (0.5, 1.5)) -> None:
        low, high = (float(v) for v in sigma_range)
        if not 0 < low <= high:
            raise ValueError(f"RandomGaussianBlur: sigma range must be [min, max] with 0 < min <= max, got {list(sigma_range)}")
        self.p = p
        self.sigma_range = (low, high)

    def __call__(self, image: Tensor, targets: Targets) -> tuple[Tensor, Targets]:
        if torch.rand(()).item() >= self.p:
            return image, targets
        sigma = uniform(*self.sigma_range)
        return on_gray_plane(image, lambda x: gaussian_blur(x, sigma)), targets

    def __repr__(self) -> str:
        return f"RandomGaussianBlur(p={self.p}, sigma_range={list(self.sigma_range)})"


class RandomGaussianNoise:
    """With probability p add zero-mean Gaussian noise, sigma drawn uniformly in `sigma_range`
    (intensity units: the image is in [0, 1]), then clip to [0, 1].

    channels: "color" draws noise per channel; "gray" one plane shared by the three
    channels; "auto" shares it when the image is grey (its channels identical) so that a
    grey image stays grey, and draws per channel otherwise.
    """

    def __init__(self, p: float = 0.5, sigma_range: tuple[float, float] = (0.01, 0.05), channels: str = "auto") -> None:
        low, high = (float(v) for v in sigma_range)
        if not 0 <= low <= high:
            raise ValueError(f"RandomGaussianNoise: sigma range must be [min, max] with 0 <= min <= max, got {list(sigma_range)}")
        if channels not in NOISE_CHANNEL_MODES:
            raise ValueError(f"RandomGaussianNoise: channels must be one of {list(NOISE_CHANNEL_MODES)}, got {channels!r}")
        self.p = p
        self.sigma_range = (low, high)
        self.channels = channels

    def __call__(self, image: Tensor, targets: Targets) -> tuple[Tensor, Targets]:
        if torch.rand(()).item() >= self.p:
            return image, targets
        sigma = uniform(*self.sigma_range)
        shared = self.channels == "gray" or (self.channels == "auto" and is_gray(image))
        planes = 1 if shared else image.shape[0]
        noise = torch.randn((planes, *image.shape[1:]), dtype=image.dtype).to(image.device)  # (1 or 3, H, W)
        return (image + noise * sigma).clamp_(0.0, 1.0), targets

    def __repr__(self) -> str:
        return f"RandomGaussianNoise(p={self.p}, sigma_range={list(self.sigma_range)}, channels={self.channels!r})"
