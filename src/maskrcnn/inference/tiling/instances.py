"""Instances held as mask crops (never a full-size mask), and their full-image COCO RLE.

Shape glossary: h, w the size of one instance's crop; H, W the image's; M the model's
mask side (28).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from pycocotools import mask as coco_mask

from maskrcnn.data.validate import COCO_MASK_MAX_PIXELS
from maskrcnn.errors import UserError
from maskrcnn.ops.masks import paste_masks
from maskrcnn.structures import Detections

RLE_MAX_PIXELS = COCO_MASK_MAX_PIXELS  # pycocotools counts are 32-bit


class RLESizeError(UserError):
    """An image too large for COCO RLE (32-bit run lengths)."""


@dataclass
class CroppedInstance:
    """One instance: its mask as a crop at (y0, x0) of the image."""

    box: np.ndarray  # (4,) float32 x1 y1 x2 y2, image pixels
    label: int
    score: float
    y0: int
    x0: int
    mask: np.ndarray  # (h, w) bool

    @property
    def y1(self) -> int:
        return self.y0 + self.mask.shape[0]

    @property
    def x1(self) -> int:
        return self.x0 + self.mask.shape[1]

    def shifted(self, dy: int, dx: int) -> "CroppedInstance":
        box = self.box + np.array([dx, dy, dx, dy], dtype=np.float32)
        return CroppedInstance(box, self.label, self.score, self.y0 + dy, self.x0 + dx, self.mask)


def trim(instance: CroppedInstance) -> CroppedInstance:
    """The same instance with its crop cut to the mask's own bounding box (kept if empty)."""
    rows = np.flatnonzero(instance.mask.any(axis=1))
    if rows.size == 0:
        return instance
    cols = np.flatnonzero(instance.mask.any(axis=0))
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    mask = np.ascontiguousarray(instance.mask[r0:r1, c0:c1])
    return CroppedInstance(instance.box, instance.label, instance.score, instance.y0 + r0, instance.x0 + c0, mask)


def crop_to_rle(mask: np.ndarray, y0: int, x0: int, height: int, width: int) -> dict:
    """COCO compressed RLE of an (H, W) image that is zero except `mask` (h, w) at (y0, x0).

    Built from the crop's runs alone: the same string pycocotools gives for the dense mask.
    """
    if height * width > RLE_MAX_PIXELS:
        raise RLESizeError(f"image of {width}x{height} pixels: COCO RLE holds at most {RLE_MAX_PIXELS} pixels")
    h, w = mask.shape
    columns = np.zeros((w, h + 2), dtype=np.int8)  # each crop column with a zero above and below
    columns[:, 1:-1] = mask.T
    col, row = np.nonzero(np.diff(columns, axis=1))  # (K,) transitions, column-major order
    positions = (x0 + col).astype(np.int64) * height + y0 + row  # in the image's column-major order
    duplicate = np.flatnonzero(positions[1:] == positions[:-1])  # a run continuing into the next column
    keep = np.ones(positions.size, dtype=bool)
    keep[duplicate] = False
    keep[duplicate + 1] = False
    bounds = np.concatenate(([0], positions[keep], [height * width]))
    counts = np.diff(bounds).tolist()
    if len(counts) > 1 and counts[-1] == 0:  # the last run ends at the image's end
        counts.pop()
    height, width = int(height), int(width)
    encoded = coco_mask.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    text = encoded["counts"]
    return {"size": [height, width], "counts": text.decode("ascii") if isinstance(text, bytes) else text}


def detections_to_crops(
    det: Detections, tile_height: int, tile_width: int, mask_threshold: float, mask_paste: str = "torchvision"
) -> list[CroppedInstance]:
    """Model output with (N, M, M) mask probabilities (not pasted) -> instances with crop masks.

    Each mask is pasted into a crop around its box that holds every pixel the full paste
    would write (torchvision's one-pixel padding expands the box by box_side / M), so the
    crop equals the full-tile paste cut to it (the exact paste reaches one cell past the box).
    """
    out: list[CroppedInstance] = []
    boxes = det.boxes.detach().float().cpu()  # (N, 4) tile pixels
    masks = det.masks.detach().float().cpu() if det.masks is not None else None  # (N, M, M)
    for n in range(boxes.shape[0]):
        box = boxes[n]
        x1, y1, x2, y2 = (float(v) for v in box)
        if masks is None:
            continue
        side = masks.shape[-1]
        pad_x, pad_y = (x2 - x1) / side + 2.0, (y2 - y1) / side + 2.0
        cx0 = min(max(0, math.floor(x1 - pad_x)), tile_width)
        cy0 = min(max(0, math.floor(y1 - pad_y)), tile_height)
        cx1 = min(tile_width, math.ceil(x2 + pad_x) + 1)
        cy1 = min(tile_height, math.ceil(y2 + pad_y) + 1)
        if cx1 <= cx0 or cy1 <= cy0:
            continue
        shifted = box - torch.tensor([cx0, cy0, cx0, cy0], dtype=box.dtype)
        pasted = paste_masks(masks[n : n + 1], shifted[None], (cy1 - cy0, cx1 - cx0), mask_paste)[0]
        crop = (pasted > mask_threshold).numpy()  # above the threshold, as the Predictor and the evaluation
        instance = CroppedInstance(box.numpy().astype(np.float32), int(det.labels[n]), float(det.scores[n]), cy0, cx0, crop)
        out.append(trim(instance))
    return out
