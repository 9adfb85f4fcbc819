"""A dataset's instance masks decoded once, kept as tight patches.

A training window of a dense image needs every instance's mask of that image, and the
image comes back many times in a run (8 images, 1149 iterations: each ~290 times).
Decoding its RLEs or polygons each time means hundreds of full-size (H, W) masks per
image, most of them zeros: for the nuclei recipe that was 2.9 of 5.2 s per 30 batches,
more than a quarter of each training iteration. Decoded once, each mask is kept as the
pixels inside its tight box plus that box's corner; rebuilding the (N, H, W) masks is
then one paste per instance into lazily zeroed memory, and the tensor carries its extents
for the transforms that follow (data.instance_masks).

Shape glossary: N instances of one image; H, W its size.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from maskrcnn.data.instance_masks import Patch, lazy_zeros, remember_extents, trim

# Patches kept per dataset (per worker process). Past this, images are decoded each time.
CACHE_MAX_BYTES = 1 << 30


def tight_patch(mask: np.ndarray) -> Patch | None:
    """An (H, W) 0/1 mask as the pixels inside its tight box; None when it is empty."""
    trimmed = trim(torch.from_numpy(np.asarray(mask, dtype=np.uint8)))
    if trimmed is None:
        return None
    pixels, top, left = trimmed
    return Patch(pixels.clone(), top, left)  # a copy: the view would keep the whole mask alive


def paste_patches(patches: list[Patch | None], height: int, width: int) -> Tensor:
    """(N, H, W) uint8 masks from their patches (None: an empty mask), with known extents."""
    masks = lazy_zeros((len(patches), height, width), torch.uint8)
    extents = torch.zeros((len(patches), 4), dtype=torch.int64)  # (N, 4) x0 y0 x1 y1
    for i, patch in enumerate(patches):
        if patch is not None:
            h, w = patch.pixels.shape
            masks[i, patch.top : patch.top + h, patch.left : patch.left + w] = patch.pixels
            extents[i] = torch.tensor([patch.left, patch.top, patch.left + w, patch.top + h])
    return remember_extents(masks, extents)


class MaskPatchCache:
    """Per image key: its instances' patches, decoded on first use (up to `max_bytes` in all)."""

    def __init__(self, max_bytes: int = CACHE_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._patches: dict[int, list[Patch | None]] = {}

    def masks(self, key: int, decoders: list[Callable[[], np.ndarray]], height: int, width: int) -> Tensor:
        """(N, H, W) uint8 masks of image `key`; decoders[i]() gives instance i's (H, W) mask."""
        patches = self._patches.get(key)
        if patches is None:
            patches = [tight_patch(decode()) for decode in decoders]
            size = sum(p.pixels.numel() for p in patches if p is not None)
            if self.bytes + size <= self.max_bytes:
                self._patches[key] = patches
                self.bytes += size
        return paste_patches(patches, height, width)
