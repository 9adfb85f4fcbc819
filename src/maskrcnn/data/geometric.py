"""Geometric augmentations: flips, 90-degree rotations, transpose, zoom in / out with crop or pad.

Each transform is a callable `(image (3, H, W) float in [0, 1], Targets) -> (image, Targets)`
that draws its random numbers from torch's global generator (seeded by the training loop
and restored on resume, so a resumed run sees the same augmentations).

Masks move with the pixels; boxes follow exactly (flips, rotations, transpose keep a tight
box tight) or are recomputed from the masks (zoom, where masks are resampled). Instances
left with fewer than `min_area` mask pixels are dropped together with their labels.
Without masks, boxes are mapped and clipped instead.

Shape glossary: N instances; H, W the image's height and width before; h, w after.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from maskrcnn.ops.boxes import masks_to_boxes
from maskrcnn.structures import Targets


def uniform(low: float, high: float) -> float:
    """A float drawn uniformly in [low, high] from torch's global generator."""
    return low + (high - low) * torch.rand(()).item()


def randint(low: int, high: int) -> int:
    """An integer drawn uniformly in [low, high] (both included) from torch's global generator."""
    return int(torch.randint(low, high + 1, ()).item())


def keep_instances(masks: Tensor, labels: Tensor, min_area: int) -> Targets:
    """Targets of the (N, h, w) masks with at least max(1, min_area) pixels; boxes tight around them."""
    areas = torch.count_nonzero(masks.flatten(1), dim=1)  # (N,)
    keep = areas >= max(1, min_area)
    masks = masks[keep]
    return Targets(boxes=masks_to_boxes(masks), labels=labels[keep], masks=masks)


def keep_boxes(boxes: Tensor, labels: Tensor, height: int, width: int, min_area: int) -> Targets:
    """Boxes clipped to the (height, width) image; empty ones, and with min_area > 1 those of a
    smaller area, dropped."""
    boxes = boxes.clone()
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    sides = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0)  # (N, 2)
    keep = (sides[:, 0] > 0) & (sides[:, 1] > 0)
    if min_area > 1:
        keep &= sides.prod(dim=1) >= min_area
    return Targets(boxes=boxes[keep], labels=labels[keep], masks=None)


# ---------------------------------------------------------------------------------------
# The eight orientations: flips, transpose, rotations by multiples of 90 degrees
# ---------------------------------------------------------------------------------------


def hflip(image: Tensor, targets: Targets) -> tuple[Tensor, Targets]:
    """Mirror left-right."""
    width = image.shape[-1]
    boxes = torch.stack([width - targets.boxes[:, 2], targets.boxes[:, 1], width - targets.boxes[:, 0], targets.boxes[:, 3]], 1)
    masks = None if targets.masks is None else targets.masks.flip(-1)
    return image.flip(-1), Targets(boxes=boxes.reshape(-1, 4), labels=targets.labels, masks=masks)


def vflip(image: Tensor, targets: Targets) -> tuple[Tensor, Targets]:
    """Mirror top-bottom."""
    height = image.shape[-2]
    boxes = torch.stack([targets.boxes[:, 0], height - targets.boxes[:, 3], targets.boxes[:, 2], height - targets.boxes[:, 1]], 1)
    masks = None if targets.masks is None else targets.masks.flip(-2)
    return image.flip(-2), Targets(boxes=boxes.reshape(-1, 4), labels=targets.labels, masks=masks)


def transpose(image: Tensor, targets: Targets) -> tuple[Tensor, Targets]:
    """Swap rows and columns: (3, H, W) -> (3, W, H); a box (x1, y1, x2, y2) -> (y1, x1, y2, x2)."""
    boxes = targets.boxes[:, [1, 0, 3, 2]]
    masks = None if targets.masks is None else targets.masks.transpose(-2, -1).contiguous()
    return image.transpose(-2, -1).contiguous(), Targets(boxes=boxes, labels=targets.labels, masks=masks)


def rotate90(image: Tensor, targets: Targets, k: int) -> tuple[Tensor, Targets]:
    """Rotate counter-clockwise (as displayed) by k * 90 degrees, as `torch.rot90(x, k, (-2, -1))`."""
    k %= 4
    if k == 0:
        return image, targets
    height, width = image.shape[-2:]
    x1, y1, x2, y2 = targets.boxes.unbind(dim=1)
    if k == 1:  # out[i, j] = in[j, W-1-i]: transpose, then mirror top-bottom
        boxes = torch.stack([y1, width - x2, y2, width - x1], 1)
    elif k == 2:  # both mirrors
        boxes = torch.stack([width - x2, height - y2, width - x1, height - y1], 1)
    else:  # out[i, j] = in[H-1-j, i]: transpose, then mirror left-right
        boxes = torch.stack([height - y2, x1, height - y1, x2], 1)
    masks = None if targets.masks is None else torch.rot90(targets.masks, k, (-2, -1)).contiguous()
    rotated = torch.rot90(image, k, (-2, -1)).contiguous()
    return rotated, Targets(boxes=boxes.reshape(-1, 4), labels=targets.labels, masks=masks)


class RandomVerticalFlip:
    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, image: Tensor, targets: Targets) -> tuple[Tensor, Targets]:
        if torch.rand(()).item() >= self.p:
            return image, targets
        return vflip(image, targets)

    def __repr__(self) -> str:
        return f"RandomVerticalFlip(p={self.p})"


class RandomTranspose:
    """With probability p swap rows and columns (a non-square image changes orientation)."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, image: Tensor, targets: Targets) -> tuple[Tensor, Targets]:
        if torch.rand(()).item() >= self.p:
            return image, targets
        return transpose(image, targets)

    def __repr__(self) -> str:
        return f"RandomTranspose(p={self.p})"


class RandomRotate90:
    """With probability p rotate by 90, 180 or 270 degrees, each equally likely."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, image: Tensor, targets: Targets) -> tuple[Tensor, Targets]:
        if torch.rand(()).item() >= self.p:
            return image, targets
        return rotate90(image, targets, randint(1, 3))

    def __repr__(self) -> str:
        return f"RandomRotate90(p={self.p})"


# ---------------------------------------------------------------------------------------
# Zoom in / out, then crop or pad to an output size
# ---------------------------------------------------------------------------------------


class ZoomWindow(NamedTuple):
    """Where the output lies in the scaled image: output pixel (y, x) is scaled pixel (y + top, x + left).

    A negative top / left puts the scaled image inside a padded border."""

    scaled_h: int
    scaled_w: int
    top: int
    left: int
    out_h: int
    out_w: int


def _valid_span(offset: int, scaled: int, out: int) -> tuple[int, int]:
    """Output positions [start, stop) that fall inside the scaled image."""
    return max(0, -offset), min(out, scaled - offset)


def _nearest_sources(start: int, stop: int, offset: int, scaled: int, size: int) -> Tensor:
    """Source index of each output position: the pixel whose centre is nearest (half-pixel centres,
    as bilinear `F.interpolate(align_corners=False)` places them)."""
    positions = torch.arange(start + offset, stop + offset, dtype=torch.float64)
    return ((positions + 0.5) * (size / scaled)).floor().long().clamp_(0, size - 1)


def zoom(image: Tensor, targets: Targets, window: ZoomWindow, *, pad_value: float = 0.0, min_area: int = 1) -> tuple[Tensor, Targets]:
    """Resize (3, H, W) to (scaled_h, scaled_w) and cut the window out of it, padding where it overhangs.

    The image is resized bilinearly (antialiased when shrinking); masks take the nearest
    source pixel of each output pixel (only the window is computed); boxes are recomputed
    from the masks.
    """
    height, width = image.shape[-2:]
    sh, sw, top, left, out_h, out_w = window
    y0, y1 = _valid_span(top, sh, out_h)
    x0, x1 = _valid_span(left, sw, out_w)
    out_image = image.new_full((image.shape[0], out_h, out_w), float(pad_value))
    if y1 > y0 and x1 > x0:
        scaled = image
        if (sh, sw) != (height, width):
            shrinking = sh < height or sw < width
            scaled = F.interpolate(image[None], size=(sh, sw), mode="bilinear", align_corners=False, antialias=shrinking)[0]
        out_image[:, y0:y1, x0:x1] = scaled[:, y0 + top : y1 + top, x0 + left : x1 + left].clamp(0.0, 1.0)
    if targets.masks is None:
        ratios = torch.tensor([sw / width, sh / height, sw / width, sh / height], dtype=targets.boxes.dtype)
        shift = torch.tensor([left, top, left, top], dtype=targets.boxes.dtype)
        return out_image, keep_boxes(targets.boxes * ratios - shift, targets.labels, out_h, out_w, min_area)
    masks = targets.masks.new_zeros((len(targets), out_h, out_w))
    if len(targets) > 0 and y1 > y0 and x1 > x0:
        rows = _nearest_sources(y0, y1, top, sh, height)  # (y1 - y0,)
        cols = _nearest_sources(x0, x1, left, sw, width)  # (x1 - x0,)
        masks[:, y0:y1, x0:x1] = targets.masks.index_select(1, rows).index_select(2, cols)
    return out_image, keep_instances(masks, targets.labels, min_area)


def _random_offset(scaled: int, out: int) -> int:
    """Top (or left) of the output in the scaled image: a random crop when the scaled image is
    larger, a random placement inside the padding (negative offset) when it is smaller."""
    if scaled >= out:
        return randint(0, scaled - out)
    return -randint(0, out - scaled)


class RandomScaleJitter:
    """With probability p zoom by a factor drawn uniformly in `scale_range`, then crop or pad.

    target_size 0: the output keeps the image's own size (a factor > 1 zooms in and crops,
    < 1 zooms out and pads with `pad_value`). target_size N: large-scale jitter as in
    Copy-Paste (Ghiasi et al. 2021): the image is first fitted inside N x N, then zoomed by
    the factor, then cropped / padded to N x N. The crop or placement is random; a crop
    that would leave no instance of an image that has some is drawn again (up to `tries`
    times; then the image is kept as it was).
    """

    tries = 10

    def __init__(
        self,
        p: float = 0.5,
        scale_range: tuple[float, float] = (0.5, 1.5),
        target_size: int = 0,
        pad_value: float = 0.0,
        min_area: int = 1,
    ) -> None:
        low, high = (float(v) for v in scale_range)
        if not 0 < low <= high:
            raise ValueError(f"RandomScaleJitter: scale_range must be [min, max] with 0 < min <= max, got {list(scale_range)}")
        if target_size < 0:
            raise ValueError(f"RandomScaleJitter: target_size must be 0 (the image's own size) or positive, got {target_size}")
        self.p = p
        self.scale_range = (low, high)
        self.target_size = int(target_size)
        self.pad_value = float(pad_value)
        self.min_area = int(min_area)

    def __call__(self, image: Tensor, targets: Targets) -> tuple[Tensor, Targets]:
        if torch.rand(()).item() >= self.p:
            return image, targets
        height, width = image.shape[-2:]
        factor = uniform(*self.scale_range)
        if self.target_size:
            out_h = out_w = self.target_size
            factor *= min(self.target_size / height, self.target_size / width)
        else:
            out_h, out_w = height, width
        sh, sw = max(1, round(height * factor)), max(1, round(width * factor))
        for _ in range(self.tries):
            window = ZoomWindow(sh, sw, _random_offset(sh, out_h), _random_offset(sw, out_w), out_h, out_w)
            out_image, out_targets = zoom(image, targets, window, pad_value=self.pad_value, min_area=self.min_area)
            if len(out_targets) > 0 or len(targets) == 0:
                return out_image, out_targets
        return image, targets

    def __repr__(self) -> str:
        return (f"RandomScaleJitter(p={self.p}, scale_range={list(self.scale_range)}, target_size={self.target_size}, "
                f"pad_value={self.pad_value}, min_area={self.min_area})")  # fmt: skip
