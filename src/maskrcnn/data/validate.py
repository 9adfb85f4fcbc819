"""Checks on single COCO annotations and results made before pycocotools sees them.

pycocotools trusts its input: a polygon coordinate of NaN or 1e9 becomes a huge integer in
its rasteriser (memory grows without bound, or it segfaults), and a compressed RLE whose
runs stop short of h*w (or run past it) is decoded into uninitialised or foreign memory.
These functions find such items in plain Python first, without rasterising anything.

Each returns None when the item is fine, else a short reason (for `dataset.warnings`) or
raises `ValueError` subclasses that the callers turn into one line naming the item.
"""

from __future__ import annotations

import math
from typing import Any

from maskrcnn.errors import UserError

# COCO RLE run lengths are 32-bit: a mask of more pixels cannot be encoded (pycocotools
# would wrap the counts around).
COCO_MASK_MAX_PIXELS = 2**32 - 1

# A polygon point may lie outside its image (COCO has a few), but not by more than this many
# image sides: beyond that the coordinates are not pixels of this image.
POLYGON_MARGIN_SIDES = 1.0


class RleCountsError(UserError):
    """A compressed RLE `counts` string that is not valid COCO run-length code."""


def is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def non_finite_field(ann: dict[str, Any]) -> str | None:
    """The first field of an annotation holding NaN or +-inf ('bbox', 'area', 'segmentation'), or None.

    Python's json module reads `NaN` and `Infinity` (which JSON itself does not allow).
    """
    bbox = ann.get("bbox")
    if isinstance(bbox, list) and any(isinstance(v, float) and not math.isfinite(v) for v in bbox):
        return "bbox"
    area = ann.get("area")
    if isinstance(area, float) and not math.isfinite(area):
        return "area"
    segm = ann.get("segmentation")
    if isinstance(segm, list):
        for poly in segm:
            if isinstance(poly, list) and any(isinstance(v, float) and not math.isfinite(v) for v in poly):
                return "segmentation"
    return None


def polygons_outside(polygons: list[list[float]], height: int, width: int) -> bool:
    """True when a point lies more than POLYGON_MARGIN_SIDES image sides outside the image."""
    margin_x, margin_y = POLYGON_MARGIN_SIDES * width, POLYGON_MARGIN_SIDES * height
    for poly in polygons:
        xs, ys = poly[0::2], poly[1::2]
        if min(xs) < -margin_x or max(xs) > width + margin_x or min(ys) < -margin_y or max(ys) > height + margin_y:
            return True
    return False


def box_outside(bbox: list[float], height: int, width: int) -> bool:
    """True when an [x, y, w, h] box reaches more than POLYGON_MARGIN_SIDES image sides outside
    the image: clipping it would give a box that has nothing to do with the object."""
    x, y, w, h = (float(v) for v in bbox)
    margin_x, margin_y = POLYGON_MARGIN_SIDES * width, POLYGON_MARGIN_SIDES * height
    return x < -margin_x or y < -margin_y or x + w > width + margin_x or y + h > height + margin_y


def decode_counts_string(counts: str | bytes) -> list[int]:
    """COCO's compressed counts string -> run lengths (pycocotools' rleFrString, checked).

    Each run is a little-endian base-32 number, 5 bits per character ('0' + value), bit 0x20
    meaning "more characters follow" and 0x10 in the last character the sign; from the
    third run on, the number is a difference to the run two before. Raises RleCountsError
    for characters outside '0'..'o', a number cut short, or a negative run.
    """
    if isinstance(counts, bytes):
        try:
            counts = counts.decode("ascii")
        except UnicodeDecodeError:
            raise RleCountsError("counts are not ASCII") from None
    runs: list[int] = []
    position, length = 0, len(counts)
    while position < length:
        value, shift, more = 0, 0, True
        while more:
            if position >= length:
                raise RleCountsError(f"counts end inside a number (after {len(runs)} runs)")
            code = ord(counts[position]) - 48
            if not 0 <= code < 64:
                raise RleCountsError(f"character {counts[position]!r} at {position} is not RLE code ('0'..'o')")
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            position += 1
            shift += 5
            if not more and code & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        if value < 0:
            raise RleCountsError(f"run {len(runs)} is negative ({value})")
        runs.append(value)
    return runs


def rle_problem(segm: dict[str, Any], height: int, width: int) -> str | None:
    """Why an RLE segmentation cannot describe an (height, width) mask, or None.

    Its `size` must be [height, width] and its runs (compressed string or list) must be
    non-negative and add up to exactly height * width.
    """
    size = segm.get("size")
    if not (isinstance(size, list) and len(size) == 2 and list(size) == [height, width]):
        return "RLE size does not match the image size"
    counts = segm.get("counts")
    if isinstance(counts, list):
        if any(not isinstance(c, int) or isinstance(c, bool) or c < 0 for c in counts):
            return "RLE counts invalid (not non-negative integers)"
        runs = counts
    elif isinstance(counts, (str, bytes)):
        try:
            runs = decode_counts_string(counts)
        except RleCountsError:
            return "RLE counts invalid (not COCO run-length code)"
    else:
        return "RLE counts invalid (not a string or a list)"
    if sum(runs) != height * width:
        return "RLE counts do not add up to the image size"
    return None
