"""Moving (N, H, W) instance masks box by box, so that the cost follows the instances' areas.

A dense microscopy image has hundreds of instances, each stored as a full-size mask: 300
masks of a 1000 x 1000 image are 300 MB. Rotating, transposing or resampling all of that
costs far more than the few thousand pixels each instance covers. These helpers find
each mask's tight extent with two vectorised reductions, then move only the pixels inside
it (one small patch per instance) into a new zero-filled (N, h, w) tensor.

Two things keep a chain of transforms cheap: the new tensor's memory is an anonymous
memory map that the operating system zeroes page by page on first touch, so pages no
instance reaches cost nothing (NumPy's calloc would ask for 2 MB huge pages, each zeroed
whole: ten times slower here); and each result remembers its masks' extents (an attribute on the tensor), so
the next transform of a pipeline does not scan the masks again.

Shape glossary: N instances; H, W the masks' height and width before; h, w after.
Extents are (N, 4) int64 [x0, y0, x1, y1], end-exclusive: a mask's tight box in pixels.
"""

from __future__ import annotations

import math
import mmap
from typing import Callable, NamedTuple

import torch
from torch import Tensor

# Attribute a mask tensor made here carries: its (N, 4) extents. Nothing modifies these
# tensors in place afterwards (transforms always return new ones).
_EXTENTS_ATTRIBUTE = "_maskrcnn_tight_extents"
# Below this many bytes a memset costs less than the page faults it saves.
LAZY_MIN_BYTES = 1 << 20


def _first_last(any_along: Tensor) -> tuple[Tensor, Tensor]:
    """(N, L) 0/1 -> first index and last index + 1 of the ones in each row (0, 0 for none)."""
    length = any_along.shape[1]
    present = any_along != 0
    found = present.any(dim=1)
    first = torch.where(found, present.to(torch.uint8).argmax(dim=1), 0)
    last = torch.where(found, length - present.flip(1).to(torch.uint8).argmax(dim=1), 0)
    return first, last


def _span(values: Tensor) -> tuple[int, int] | None:
    """First index and last index + 1 of the non-zero entries of a 1-D tensor; None when all zero."""
    where = torch.nonzero(values).flatten()
    if where.numel() == 0:
        return None
    first, last = where[[0, -1]].tolist()
    return first, last + 1


def mask_extents(masks: Tensor) -> Tensor:
    """Tight boxes of (N, H, W) masks: (N, 4) int64 [x0, y0, x1, y1]; [0, 0, 0, 0] for an empty mask.

    One pass over all pixels finds each mask's rows; its columns are then looked for only
    within those rows. Masks made by this module give back the extents they were made with."""
    known = getattr(masks, _EXTENTS_ATTRIBUTE, None)
    if known is not None:
        return known
    count = masks.shape[0]
    if count == 0:
        return torch.zeros((0, 4), dtype=torch.int64)
    y0, y1 = _first_last(masks.amax(dim=2))  # (N,) each
    extents = torch.zeros((count, 4), dtype=torch.int64)
    for i, (top, bottom) in enumerate(zip(y0.tolist(), y1.tolist())):
        if bottom > top:
            left, right = _span(masks[i, top:bottom].amax(dim=0))  # type: ignore[misc]
            extents[i] = torch.tensor([left, top, right, bottom])
    return extents


def trim(pixels: Tensor) -> tuple[Tensor, int, int] | None:
    """A (h, w) patch cut to its non-zero pixels, with the offsets (top, left) of the cut; None when empty."""
    rows = _span(pixels.amax(dim=1))
    if rows is None:
        return None
    band = pixels[rows[0] : rows[1]]
    left, right = _span(band.amax(dim=0))  # type: ignore[misc]
    return band[:, left:right], rows[0], left


def lazy_zeros(shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """A zero tensor whose 4 KiB pages the operating system zeroes on first touch, not now.

    Small tensors (and dtypes other than uint8) are plain `torch.zeros`."""
    count = math.prod(shape)
    if dtype != torch.uint8 or count < LAZY_MIN_BYTES:
        return torch.zeros(shape, dtype=dtype)
    buffer = mmap.mmap(-1, count)  # anonymous, private; the tensor keeps it alive
    return torch.frombuffer(buffer, dtype=torch.uint8, count=count).view(shape)


def remember_extents(masks: Tensor, extents: Tensor) -> Tensor:
    """Attach (N, 4) extents to masks made here, so that `mask_extents` need not scan them."""
    setattr(masks, _EXTENTS_ATTRIBUTE, extents)
    return masks


class Patch(NamedTuple):
    """One instance's pixels, placed at (top, left) of the output."""

    pixels: Tensor  # (h_i, w_i)
    top: int
    left: int


class PlacedMasks(NamedTuple):
    masks: Tensor  # (K, h, w)
    extents: Tensor  # (K, 4) int64 tight boxes
    keep: Tensor  # (N,) bool: which of the N inputs survived


def place_patches(patches: list[Patch | None], height: int, width: int, dtype: torch.dtype, min_area: int) -> PlacedMasks:
    """Trim each patch to its non-zero pixels and paste those with >= max(1, min_area) pixels into
    a zero (K, height, width) tensor; None (an instance with nothing left) is dropped."""
    kept: list[tuple[Tensor, int, int]] = []
    keep = torch.zeros(len(patches), dtype=torch.bool)
    for index, patch in enumerate(patches):
        if patch is None or patch.pixels.numel() == 0:
            continue
        trimmed = trim(patch.pixels)
        if trimmed is None:
            continue
        pixels, y0, x0 = trimmed
        if min_area > 1 and int(torch.count_nonzero(pixels)) < min_area:
            continue
        keep[index] = True
        kept.append((pixels, patch.top + y0, patch.left + x0))
    masks = lazy_zeros((len(kept), height, width), dtype)
    corners = []
    for i, (pixels, top, left) in enumerate(kept):
        h, w = pixels.shape
        masks[i, top : top + h, left : left + w] = pixels
        corners.append([left, top, left + w, top + h])
    extents = torch.tensor(corners, dtype=torch.int64).reshape(-1, 4)
    return PlacedMasks(remember_extents(masks, extents), extents, keep)


def move_masks(
    masks: Tensor,
    extents: Tensor,
    out_hw: tuple[int, int],
    new_extents: Tensor,
    patch_op: Callable[[Tensor], Tensor],
) -> Tensor:
    """Masks under a rigid map (flip, transpose, rotation by 90 degrees): each instance's patch
    inside `extents` goes through `patch_op` and lands at `new_extents`. Empty masks stay empty."""
    out = lazy_zeros((masks.shape[0], *out_hw), masks.dtype)
    empty = (extents[:, 2] <= extents[:, 0]) | (extents[:, 3] <= extents[:, 1])  # (N,)
    for i, ((x0, y0, x1, y1), (nx0, ny0, nx1, ny1)) in enumerate(zip(extents.tolist(), new_extents.tolist())):
        if x1 > x0 and y1 > y0:
            out[i, ny0:ny1, nx0:nx1] = patch_op(masks[i, y0:y1, x0:x1])
    return remember_extents(out, torch.where(empty[:, None], 0, new_extents))
