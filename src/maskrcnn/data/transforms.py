"""Augmentations that move an image, its boxes and its masks together, and the pipeline
that `data.augment` (AugmentConfig) builds from them.

Each transform is a callable `(image (3, H, W) float in [0, 1], Targets) -> (image, Targets)`.
Random choices use torch's global random generator, which the training loop seeds and a
resumed run restores. More transforms live in `geometric.py` (vertical flip, rotations,
transpose, zoom) and `photometric.py` (intensity, blur, noise).
By default nothing is resized here: the model's own transform resizes (see
`TransformConfig.min_size`); `ResizeShortestEdge` is for users who want it in the data.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from maskrcnn.config import AugmentConfig, ConfigError
from maskrcnn.data.augment_common import uniform as _uniform
from maskrcnn.data.geometric import (
    RandomRotate90,
    RandomScaleJitter,
    RandomTranspose,
    RandomVerticalFlip,
    crop_masks,
    hflip,
    keep_boxes,
)
from maskrcnn.data.photometric import (  # PhotometricJitter also re-exported for older imports
    IntensityJitter,
    PhotometricJitter,
    RandomGaussianBlur,
    RandomGaussianNoise,
)
from maskrcnn.data.window import RandomWindow
from maskrcnn.structures import Targets

Transform = Callable[[Tensor, Targets], tuple[Tensor, Targets]]


class AugmentConfigError(ConfigError):
    """A `data.augment` value that is out of range."""


class Compose:
    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: Tensor, targets: Targets) -> tuple[Tensor, Targets]:
        for transform in self.transforms:
            image, targets = transform(image, targets)
        return image, targets

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"


class RandomHorizontalFlip:
    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, image: Tensor, targets: Targets) -> tuple[Tensor, Targets]:
        if torch.rand(()).item() >= self.p:
            return image, targets
        return hflip(image, targets)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class RandomCrop:
    """With probability p, crop a random window whose sides are `min_fraction`..1 of the image's.

    Masks are cropped and the boxes recomputed from them; instances with fewer than
    `min_area` pixels left are dropped. Without masks, boxes are clipped to the window instead. A window that would
    leave no instance of an image that has some is drawn again (up to `tries` times, then
    the image is kept whole).
    """

    tries = 10

    def __init__(self, p: float = 0.5, min_fraction: float = 0.6, min_area: int = 1) -> None:
        if not 0 < min_fraction <= 1:
            raise ValueError(f"RandomCrop: min_fraction must be in (0, 1], got {min_fraction}")
        self.p = p
        self.min_fraction = min_fraction
        self.min_area = min_area

    def __call__(self, image: Tensor, targets: Targets) -> tuple[Tensor, Targets]:
        if torch.rand(()).item() >= self.p:
            return image, targets
        height, width = image.shape[-2:]
        for _ in range(self.tries):
            crop_h = max(1, round(height * _uniform(self.min_fraction, 1.0)))
            crop_w = max(1, round(width * _uniform(self.min_fraction, 1.0)))
            top = int(torch.randint(0, height - crop_h + 1, ()).item())
            left = int(torch.randint(0, width - crop_w + 1, ()).item())
            out_image, out_targets = crop(image, targets, top, left, crop_h, crop_w, self.min_area)
            if len(out_targets) > 0 or len(targets) == 0:
                return out_image, out_targets
        return image, targets

    def __repr__(self) -> str:
        return f"RandomCrop(p={self.p}, min_fraction={self.min_fraction})"


def crop(
    image: Tensor, targets: Targets, top: int, left: int, height: int, width: int, min_area: int = 1
) -> tuple[Tensor, Targets]:
    """Cut the window [top, top+height) x [left, left+width) out of image and targets.

    Instances with fewer than max(1, min_area) mask pixels (box area without masks) left are dropped."""
    image = image[:, top : top + height, left : left + width]
    if targets.masks is not None:
        return image, crop_masks(targets, top, left, height, width, min_area)
    boxes = targets.boxes - torch.tensor([left, top, left, top], dtype=targets.boxes.dtype)
    return image, keep_boxes(boxes, targets.labels, height, width, min_area)


class ResizeShortestEdge:
    """Resize so the short side is a random choice of `min_sizes`, the long side at most `max_size`.

    The image is resized bilinearly, masks by nearest neighbour, boxes scaled.
    """

    def __init__(self, min_sizes: Sequence[int], max_size: int) -> None:
        if not min_sizes:
            raise ValueError("ResizeShortestEdge: min_sizes must name at least one size")
        self.min_sizes = [int(s) for s in min_sizes]
        self.max_size = int(max_size)

    def __call__(self, image: Tensor, targets: Targets) -> tuple[Tensor, Targets]:
        height, width = image.shape[-2:]
        short = self.min_sizes[int(torch.randint(0, len(self.min_sizes), ()).item())]
        scale = min(short / min(height, width), self.max_size / max(height, width))
        new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
        image = F.interpolate(image[None], size=(new_h, new_w), mode="bilinear", align_corners=False)[0]
        ratios = torch.tensor([new_w / width, new_h / height, new_w / width, new_h / height])
        boxes = targets.boxes * ratios
        masks = targets.masks
        if masks is not None and masks.shape[0] > 0:
            masks = F.interpolate(masks[None].float(), size=(new_h, new_w), mode="nearest")[0].to(masks.dtype)
        elif masks is not None:
            masks = masks.new_zeros((0, new_h, new_w))
        return image, Targets(boxes=boxes, labels=targets.labels, masks=masks)

    def __repr__(self) -> str:
        return f"ResizeShortestEdge(min_sizes={self.min_sizes}, max_size={self.max_size})"


def _probability(value: float, key: str) -> float:
    if not 0 <= value <= 1:
        raise AugmentConfigError(f"data.augment.{key}: expected a probability in [0, 1], got {value}")
    return value


def _range(values: Sequence[float], key: str, positive: bool) -> tuple[float, float]:
    if len(values) != 2 or not (0 < values[0] if positive else 0 <= values[0]) or values[0] > values[1]:
        low = "0 < min" if positive else "0 <= min"
        raise AugmentConfigError(f"data.augment.{key}: expected [min, max] with {low} <= max, got {list(values)}")
    return float(values[0]), float(values[1])


def check_augment_config(augment: AugmentConfig) -> None:
    """Stop with one line naming the first `data.augment` value out of range."""
    for key in ("horizontal_flip", "vertical_flip", "rotate90", "transpose", "random_crop", "scale_jitter", "blur", "noise"):
        _probability(getattr(augment, key), key)
    if not 0 < augment.crop_min_fraction <= 1:
        raise AugmentConfigError(f"data.augment.crop_min_fraction: expected a fraction in (0, 1], got {augment.crop_min_fraction}")
    _range(augment.scale_range, "scale_range", positive=True)
    _range(augment.blur_sigma, "blur_sigma", positive=True)
    _range(augment.noise_sigma, "noise_sigma", positive=False)
    if augment.crop_size < 0:
        raise AugmentConfigError(f"data.augment.crop_size: expected 0 (off) or a window side in pixels, got {augment.crop_size}")
    if augment.scale_target_size < 0:
        raise AugmentConfigError(
            f"data.augment.scale_target_size: expected 0 (the image's own size) or a side in pixels, got {augment.scale_target_size}"
        )
    if not 0 <= augment.pad_value <= 1:
        raise AugmentConfigError(f"data.augment.pad_value: expected an intensity in [0, 1], got {augment.pad_value}")
    if augment.min_area < 1:
        raise AugmentConfigError(f"data.augment.min_area: expected at least 1 pixel, got {augment.min_area}")
    for key in ("brightness", "contrast"):
        if not 0 <= getattr(augment, key) < 1:
            raise AugmentConfigError(f"data.augment.{key}: expected a fraction in [0, 1), got {getattr(augment, key)}")
    if augment.gamma < 0:
        raise AugmentConfigError(f"data.augment.gamma: expected >= 0, got {augment.gamma}")
    if augment.noise_channels not in ("auto", "gray", "color"):
        raise AugmentConfigError(f"data.augment.noise_channels: expected auto, gray or color, got {augment.noise_channels!r}")


def build_transforms(augment: AugmentConfig | None, train: bool) -> Compose | None:
    """The training augmentations named by `augment`; None for evaluation or when none is on.

    Order: geometry first (crop, zoom, flips, rotation, transpose), then intensity
    (brightness / contrast / gamma, colour jitter, blur, noise) on the final pixels.
    """
    if not train or augment is None:
        return None
    check_augment_config(augment)
    a = augment
    parts: list[Transform] = []
    if a.crop_size > 0:
        parts.append(RandomWindow(a.crop_size, a.min_area))
    if a.random_crop > 0:
        parts.append(RandomCrop(a.random_crop, a.crop_min_fraction, a.min_area))
    if a.scale_jitter > 0:
        parts.append(RandomScaleJitter(a.scale_jitter, tuple(a.scale_range), a.scale_target_size, a.pad_value, a.min_area))
    if a.horizontal_flip > 0:
        parts.append(RandomHorizontalFlip(a.horizontal_flip))
    if a.vertical_flip > 0:
        parts.append(RandomVerticalFlip(a.vertical_flip))
    if a.rotate90 > 0:
        parts.append(RandomRotate90(a.rotate90))
    if a.transpose > 0:
        parts.append(RandomTranspose(a.transpose))
    if a.brightness > 0 or a.contrast > 0 or a.gamma > 0:
        parts.append(IntensityJitter(a.brightness, a.contrast, a.gamma))
    if a.photometric:
        parts.append(PhotometricJitter())
    if a.blur > 0:
        parts.append(RandomGaussianBlur(a.blur, tuple(a.blur_sigma)))
    if a.noise > 0:
        parts.append(RandomGaussianNoise(a.noise, tuple(a.noise_sigma), a.noise_channels))
    return Compose(parts) if parts else None
