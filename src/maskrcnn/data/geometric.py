"""Geometric augmentations: flips, 90-degree rotations, transpose, zoom in / out with crop or pad.

Each transform is a callable `(image (3, H, W) float in [0, 1], Targets) -> (image, Targets)`
that draws its random numbers from torch's global generator (seeded by the training loop
and restored on resume, so a resumed run sees the same augmentations).

Masks move with the pixels; boxes follow exactly (flips, rotations, transpose keep a tight
box tight) or are recomputed from the masks (crop, zoom). Instances left with fewer than
`min_area` mask pixels are dropped together with their labels. Without masks, boxes are
mapped and clipped instead. Masks are moved instance by instance inside their tight boxes
(instance_masks.py), so the cost follows the instances' areas, not N x H x W.

Shape glossary: N instances; H, W the image's height and width before; h, w after.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from maskrcnn.data.augment_common import on_gray_plane, randint, uniform
from maskrcnn.data.instance_masks import Patch, mask_extents, move_masks, place_patches
from maskrcnn.structures import Targets

# Masks up to this many elements (4 MB of uint8) are flipped / rotated as one tensor: below
# it, one pass over all pixels costs less than a few small operations per instance.
WHOLE_TENSOR_MAX_ELEMENTS = 4 * 2**20


def crop_masks(targets: Targets, top: int, left: int, height: int, width: int, min_area: int = 1) -> Targets:
    """The masks' part inside the window [top, top+height) x [left, left+width); instances with
    fewer than max(1, min_area) pixels left dropped; boxes tight around what is left."""
    if targets.masks is None:
        raise ValueError("crop_masks: the targets have no masks (crop their boxes with keep_boxes)")
    patches: list[Patch | None] = []
    for i, (x0, y0, x1, y1) in enumerate(mask_extents(targets.masks).tolist()):
        cx0, cy0, cx1, cy1 = max(x0, left), max(y0, top), min(x1, left + width), min(y1, top + height)
        inside = cx1 > cx0 and cy1 > cy0
        patches.append(Patch(targets.masks[i, cy0:cy1, cx0:cx1], cy0 - top, cx0 - left) if inside else None)
    return _targets_from_patches(patches, targets.labels, (height, width), targets.masks.dtype, min_area)


def _targets_from_patches(
    patches: list[Patch | None], labels: Tensor, out_hw: tuple[int, int], dtype: torch.dtype, min_area: int
) -> Targets:
    placed = place_patches(patches, out_hw[0], out_hw[1], dtype, min_area)
    return Targets(boxes=placed.extents.to(torch.float32), labels=labels[placed.keep], masks=placed.masks)


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


def _orient(
    image: Tensor,
    targets: Targets,
    image_op: Callable[[Tensor], Tensor],
    box_map: Callable[[Tensor], Tensor],
    out_hw: tuple[int, int],
) -> tuple[Tensor, Targets]:
    """Apply a rigid map of the pixel grid: `image_op` to (C, H, W) tensors and (h, w) patches,
    `box_map` to (N, 4) boxes (given ones and the masks' tight extents alike)."""
    boxes = box_map(targets.boxes).reshape(-1, 4)
    masks = targets.masks
    if masks is not None and masks.numel() <= WHOLE_TENSOR_MAX_ELEMENTS:
        masks = image_op(masks).contiguous()
    elif masks is not None:
        extents = mask_extents(masks)
        masks = move_masks(masks, extents, out_hw, box_map(extents).reshape(-1, 4), image_op)
    return image_op(image).contiguous(), Targets(boxes=boxes, labels=targets.labels, masks=masks)


def hflip(image: Tensor, targets: Targets) -> tuple[Tensor, Targets]:
    """Mirror left-right: x -> W - x."""
    height, width = image.shape[-2:]

    def box_map(b: Tensor) -> Tensor:
        return torch.stack([width - b[:, 2], b[:, 1], width - b[:, 0], b[:, 3]], 1)

    return _orient(image, targets, lambda x: x.flip(-1), box_map, (height, width))


def vflip(image: Tensor, targets: Targets) -> tuple[Tensor, Targets]:
    """Mirror top-bottom: y -> H - y."""
    height, width = image.shape[-2:]

    def box_map(b: Tensor) -> Tensor:
        return torch.stack([b[:, 0], height - b[:, 3], b[:, 2], height - b[:, 1]], 1)

    return _orient(image, targets, lambda x: x.flip(-2), box_map, (height, width))


def transpose(image: Tensor, targets: Targets) -> tuple[Tensor, Targets]:
    """Swap rows and columns: (3, H, W) -> (3, W, H); a box (x1, y1, x2, y2) -> (y1, x1, y2, x2)."""
    height, width = image.shape[-2:]
    return _orient(image, targets, lambda x: x.transpose(-2, -1), lambda b: b[:, [1, 0, 3, 2]], (width, height))


def rotate90(image: Tensor, targets: Targets, k: int) -> tuple[Tensor, Targets]:
    """Rotate counter-clockwise (as displayed) by k * 90 degrees, as `torch.rot90(x, k, (-2, -1))`."""
    k %= 4
    if k == 0:
        return image, targets
    height, width = image.shape[-2:]

    def box_map(b: Tensor) -> Tensor:
        x1, y1, x2, y2 = b.unbind(dim=1)
        if k == 1:  # out[i, j] = in[j, W-1-i]: transpose, then mirror top-bottom
            return torch.stack([y1, width - x2, y2, width - x1], 1)
        if k == 2:  # both mirrors
            return torch.stack([width - x2, height - y2, width - x1, height - y1], 1)
        return torch.stack([height - y2, x1, height - y1, x2], 1)  # out[i, j] = in[H-1-j, i]

    out_hw = (width, height) if k % 2 else (height, width)
    return _orient(image, targets, lambda x: torch.rot90(x, k, (-2, -1)), box_map, out_hw)


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


class LinearTaps(NamedTuple):
    """Bilinear interpolation along one axis: output i = lerp(source[low[i]], source[high[i]], weight[i])."""

    low: Tensor  # (n,) int64
    high: Tensor  # (n,) int64
    weight: Tensor  # (n,) float32 in [0, 1]


def _linear_taps(start: int, stop: int, scaled: int, size: int) -> LinearTaps:
    """Taps of scaled positions [start, stop) from `size` source pixels, placed as
    `F.interpolate(mode="bilinear", align_corners=False)` places them (edges clamped)."""
    positions = torch.arange(start, stop, dtype=torch.float64)
    source = ((positions + 0.5) * (size / scaled) - 0.5).clamp(min=0.0)  # (n,)
    low = source.floor().long().clamp_(max=size - 1)
    high = (low + 1).clamp_(max=size - 1)
    return LinearTaps(low, high, (source - low).clamp_(0.0, 1.0).float())


def _zoom_pixels(image: Tensor, window: ZoomWindow, span: tuple[int, int, int, int]) -> Tensor:
    """The (C, y1-y0, x1-x0) pixels of output rows [y0, y1) and columns [x0, x1) of `window`.

    Zooming in, only the window is interpolated (cost follows the output); zooming out, the
    whole image is resized with antialiasing (cost follows the input, which is larger)."""
    height, width = image.shape[-2:]
    sh, sw, top, left, _, _ = window
    y0, y1, x0, x1 = span
    if sh < height or sw < width:
        scaled = F.interpolate(image[None], size=(sh, sw), mode="bilinear", align_corners=False, antialias=True)[0]
        return scaled[:, y0 + top : y1 + top, x0 + left : x1 + left]
    rows = _linear_taps(y0 + top, y1 + top, sh, height)
    cols = _linear_taps(x0 + left, x1 + left, sw, width)
    first, last = int(cols.low[0]), int(cols.high[-1])
    source = image[:, :, first : last + 1]  # only the columns the window reads
    band = torch.lerp(source.index_select(1, rows.low), source.index_select(1, rows.high), rows.weight.view(1, -1, 1))
    return torch.lerp(band.index_select(2, cols.low - first), band.index_select(2, cols.high - first), cols.weight.view(1, 1, -1))


def zoom(image: Tensor, targets: Targets, window: ZoomWindow, *, pad_value: float = 0.0, min_area: int = 1) -> tuple[Tensor, Targets]:
    """Resize (3, H, W) to (scaled_h, scaled_w) and cut the window out of it, padding where it overhangs.

    The image is resized bilinearly (antialiased when shrinking; a grey image as one plane);
    masks take the nearest source pixel of each output pixel (only the window, instance by
    instance inside its extent); boxes are recomputed from the masks.
    """
    height, width = image.shape[-2:]
    sh, sw, top, left, out_h, out_w = window
    y0, y1 = _valid_span(top, sh, out_h)
    x0, x1 = _valid_span(left, sw, out_w)
    out_image = image.new_full((image.shape[0], out_h, out_w), float(pad_value))
    if y1 > y0 and x1 > x0:
        pixels = on_gray_plane(image, lambda x: _zoom_pixels(x, window, (y0, y1, x0, x1)))
        out_image[:, y0:y1, x0:x1] = pixels.clamp(0.0, 1.0)
    if targets.masks is None:
        ratios = torch.tensor([sw / width, sh / height, sw / width, sh / height], dtype=targets.boxes.dtype)
        shift = torch.tensor([left, top, left, top], dtype=targets.boxes.dtype)
        return out_image, keep_boxes(targets.boxes * ratios - shift, targets.labels, out_h, out_w, min_area)
    patches: list[Patch | None] = [None] * len(targets)
    if len(targets) > 0 and y1 > y0 and x1 > x0:
        rows = _nearest_sources(y0, y1, top, sh, height)  # (y1 - y0,) nondecreasing
        cols = _nearest_sources(x0, x1, left, sw, width)  # (x1 - x0,)
        ex0, ey0, ex1, ey1 = mask_extents(targets.masks).t().contiguous()  # 4 x (N,)
        # the output rows / columns whose source lies inside each instance's extent
        row_from, row_to = torch.searchsorted(rows, ey0).tolist(), torch.searchsorted(rows, ey1).tolist()
        col_from, col_to = torch.searchsorted(cols, ex0).tolist(), torch.searchsorted(cols, ex1).tolist()
        for i in range(len(targets)):
            if row_to[i] > row_from[i] and col_to[i] > col_from[i]:
                source_rows = rows[row_from[i] : row_to[i]].view(-1, 1)
                source_cols = cols[col_from[i] : col_to[i]].view(1, -1)
                patches[i] = Patch(targets.masks[i][source_rows, source_cols], y0 + row_from[i], x0 + col_from[i])
    return out_image, _targets_from_patches(patches, targets.labels, (out_h, out_w), targets.masks.dtype, min_area)


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
