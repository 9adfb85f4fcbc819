"""Augmentations that move an image, its boxes and its masks together.

Each transform is a callable `(image (3, H, W) float in [0, 1], Targets) -> (image, Targets)`.
Random choices use torch's global random generator, which the training loop seeds.
By default nothing is resized here: the model's own transform resizes (see
`TransformConfig.min_size`); `ResizeShortestEdge` is for users who want it in the data.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from maskrcnn.config import AugmentConfig
from maskrcnn.ops.boxes import masks_to_boxes
from maskrcnn.structures import Targets


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * torch.rand(()).item()


class Compose:
    def __init__(self, transforms: Sequence[Callable[[Tensor, Targets], tuple[Tensor, Targets]]]) -> None:
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
        width = image.shape[-1]
        boxes = targets.boxes.clone()
        boxes[:, 0] = width - targets.boxes[:, 2]
        boxes[:, 2] = width - targets.boxes[:, 0]
        masks = None if targets.masks is None else targets.masks.flip(-1)
        return image.flip(-1), Targets(boxes=boxes, labels=targets.labels, masks=masks)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class RandomCrop:
    """With probability p, crop a random window whose sides are `min_fraction`..1 of the image's.

    Masks are cropped and the boxes recomputed from them; instances with nothing left are
    dropped. Without masks, boxes are clipped to the window instead. A window that would
    leave no instance of an image that has some is drawn again (up to `tries` times, then
    the image is kept whole).
    """

    tries = 10

    def __init__(self, p: float = 0.5, min_fraction: float = 0.6) -> None:
        if not 0 < min_fraction <= 1:
            raise ValueError(f"RandomCrop: min_fraction must be in (0, 1], got {min_fraction}")
        self.p = p
        self.min_fraction = min_fraction

    def __call__(self, image: Tensor, targets: Targets) -> tuple[Tensor, Targets]:
        if torch.rand(()).item() >= self.p:
            return image, targets
        height, width = image.shape[-2:]
        for _ in range(self.tries):
            crop_h = max(1, round(height * _uniform(self.min_fraction, 1.0)))
            crop_w = max(1, round(width * _uniform(self.min_fraction, 1.0)))
            top = int(torch.randint(0, height - crop_h + 1, ()).item())
            left = int(torch.randint(0, width - crop_w + 1, ()).item())
            out_image, out_targets = crop(image, targets, top, left, crop_h, crop_w)
            if len(out_targets) > 0 or len(targets) == 0:
                return out_image, out_targets
        return image, targets

    def __repr__(self) -> str:
        return f"RandomCrop(p={self.p}, min_fraction={self.min_fraction})"


def crop(image: Tensor, targets: Targets, top: int, left: int, height: int, width: int) -> tuple[Tensor, Targets]:
    """Cut the window [top, top+height) x [left, left+width) out of image and targets."""
    image = image[:, top : top + height, left : left + width]
    if targets.masks is not None:
        masks = targets.masks[:, top : top + height, left : left + width]
        keep = (masks != 0).flatten(1).any(dim=1)  # (N,)
        masks = masks[keep]
        boxes = masks_to_boxes(masks)
    else:
        masks = None
        boxes = targets.boxes - torch.tensor([left, top, left, top], dtype=targets.boxes.dtype)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes = boxes[keep]
    return image, Targets(boxes=boxes, labels=targets.labels[keep], masks=masks)


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


class PhotometricJitter:
    """Random brightness, contrast and saturation factors in [1 - x, 1 + x]; geometry untouched."""

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2) -> None:
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation

    def __call__(self, image: Tensor, targets: Targets) -> tuple[Tensor, Targets]:
        gray_weights = torch.tensor([0.299, 0.587, 0.114], dtype=image.dtype).view(3, 1, 1)
        if self.brightness > 0:
            image = image * _uniform(1 - self.brightness, 1 + self.brightness)
        if self.contrast > 0:
            mean = (image * gray_weights).sum(0).mean()
            factor = _uniform(1 - self.contrast, 1 + self.contrast)
            image = (image - mean) * factor + mean
        if self.saturation > 0:
            gray = (image * gray_weights).sum(0, keepdim=True)  # (1, H, W)
            factor = _uniform(1 - self.saturation, 1 + self.saturation)
            image = (image - gray) * factor + gray
        return image.clamp(0.0, 1.0), targets

    def __repr__(self) -> str:
        return f"PhotometricJitter({self.brightness}, {self.contrast}, {self.saturation})"


def build_transforms(augment: AugmentConfig | None, train: bool) -> Compose | None:
    """The training augmentations named by `augment`; None for evaluation or when none is on."""
    if not train or augment is None:
        return None
    parts: list[Callable[[Tensor, Targets], tuple[Tensor, Targets]]] = []
    if augment.random_crop > 0:
        parts.append(RandomCrop(augment.random_crop, augment.crop_min_fraction))
    if augment.horizontal_flip > 0:
        parts.append(RandomHorizontalFlip(augment.horizontal_flip))
    if augment.photometric:
        parts.append(PhotometricJitter())
    return Compose(parts) if parts else None
