"""What tiled prediction writes: a label image (TIFF streamed tile by tile, or PNG) and an overlay.

Label image: one integer per instance (k = the k-th instance of this image in
predictions.json, highest score first), 0 background; where instances overlap the
higher-scoring one keeps the pixel. uint16 up to 65535 instances, else uint32 (TIFF only).
A TIFF is written in 512 x 512 tiles, painted one at a time (memory: one tile), to a
temporary file renamed into place; a PNG needs the whole label image in memory.

Overlay: the image reduced by an integer factor so that its long side is at most
`max_side` (block means), instances painted from a reduced label map (colour, outline),
boxes and captions (visualize/label_overlay.py).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from maskrcnn.data.image_source import ImageSource
from maskrcnn.inference.tiling.instances import CroppedInstance
from maskrcnn.inference.tiling.tiled_prediction import (
    TiledPrediction,
    TooManyInstancesError,
    label_dtype,
    paint_labels,
)
from maskrcnn.visualize.canvas import caption_name
from maskrcnn.visualize.label_overlay import draw_label_overlay

LABEL_TILE = 512
LABEL_FORMATS = ("tif", "png")


def _bins(instances: list[CroppedInstance], height: int, width: int, cell: int) -> dict[tuple[int, int], list[int]]:
    """Instance indices whose crop meets each cell x cell block (a coarse spatial index)."""
    bins: dict[tuple[int, int], list[int]] = {}
    for k, i in enumerate(instances):
        for by in range(i.y0 // cell, (max(i.y1, i.y0 + 1) - 1) // cell + 1):
            for bx in range(i.x0 // cell, (max(i.x1, i.x0 + 1) - 1) // cell + 1):
                bins.setdefault((by, bx), []).append(k)
    return bins


def _label_tiles(result: TiledPrediction) -> Iterator[np.ndarray]:
    """The label image as LABEL_TILE-square tiles, row-major (edge tiles padded with 0)."""
    bins = _bins(result.instances, result.height, result.width, LABEL_TILE)
    for ty in range(math.ceil(result.height / LABEL_TILE)):
        for tx in range(math.ceil(result.width / LABEL_TILE)):
            chosen = [result.instances[k] for k in sorted(bins.get((ty, tx), []))]
            y0, x0 = ty * LABEL_TILE, tx * LABEL_TILE
            tile = paint_labels(chosen, y0, x0, y0 + LABEL_TILE, x0 + LABEL_TILE)
            # paint_labels numbers by position in `chosen`: renumber to positions in the result
            numbers = np.array([0] + sorted(bins.get((ty, tx), [])), dtype=np.int64) + np.array(
                [0] + [1] * len(chosen), dtype=np.int64
            )
            yield numbers[tile].astype(label_dtype(len(result.instances)))


def write_label_image(result: TiledPrediction, path: str | Path) -> Path:
    """Write the label image as a tiled TIFF (streamed) or a 16-bit PNG; atomically."""
    import tifffile

    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    dtype = label_dtype(len(result.instances))
    if fmt == "png" and dtype != np.uint16:
        raise TooManyInstancesError(
            f"{path}: {len(result.instances)} instances do not fit a 16-bit PNG label image; use --label-image tif"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if fmt == "png":
            labels = result.label_image()
            Image.fromarray(labels).save(tmp, format="PNG")
        else:
            tifffile.imwrite(
                tmp, _label_tiles(result), shape=(result.height, result.width), dtype=dtype,
                tile=(LABEL_TILE, LABEL_TILE), compression="zlib", photometric="minisblack",
                bigtiff=result.height * result.width * dtype.itemsize > 2**31,
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def reduction_factor(height: int, width: int, max_side: int) -> int:
    return max(1, math.ceil(max(height, width) / max_side))


def reduced_image(source: ImageSource, factor: int) -> np.ndarray:
    """(ceil(H/f), ceil(W/f), 3) uint8 block means, read in bands of rows."""
    out_h, out_w = math.ceil(source.height / factor), math.ceil(source.width / factor)
    out = np.zeros((out_h, out_w, 3), dtype=np.uint8)
    band = factor * max(1, 256 // factor)
    for y in range(0, source.height, band):
        pixels = source.read(y, min(y + band, source.height), 0, source.width).astype(np.float32)
        h, w = pixels.shape[:2]
        ph, pw = math.ceil(h / factor) * factor, out_w * factor
        padded = np.pad(pixels, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
        blocks = padded.reshape(ph // factor, factor, out_w, factor, 3).mean(axis=(1, 3))
        out[y // factor : y // factor + blocks.shape[0]] = np.rint(blocks).astype(np.uint8)
    return out


def reduced_labels(instances: list[CroppedInstance], factor: int, out_h: int, out_w: int) -> np.ndarray:
    """(out_h, out_w) label map sampled at the centre pixel of each factor x factor block."""
    labels = np.zeros((out_h, out_w), dtype=np.int32)
    centre = factor // 2
    for k in range(len(instances) - 1, -1, -1):
        i = instances[k]
        ry0, ry1 = math.ceil((i.y0 - centre) / factor), math.ceil((i.y1 - centre) / factor)
        rx0, rx1 = math.ceil((i.x0 - centre) / factor), math.ceil((i.x1 - centre) / factor)
        ry0, rx0, ry1, rx1 = max(ry0, 0), max(rx0, 0), min(ry1, out_h), min(rx1, out_w)
        if ry1 <= ry0 or rx1 <= rx0:
            continue
        rows = np.arange(ry0, ry1) * factor + centre - i.y0
        cols = np.arange(rx0, rx1) * factor + centre - i.x0
        part = i.mask[np.ix_(rows, cols)]
        labels[ry0:ry1, rx0:rx1][part] = k + 1
    return labels


def draw_overlay(
    source: ImageSource, result: TiledPrediction, class_names: Sequence[str] | None, max_side: int
) -> np.ndarray:
    """The overlay picture: (H/f, W/f, 3) uint8 (f: the reduction to `max_side`)."""
    factor = reduction_factor(result.height, result.width, max_side)
    picture = reduced_image(source, factor)
    labels = reduced_labels(result.instances, factor, *picture.shape[:2])
    boxes = np.asarray([i.box for i in result.instances], np.float32).reshape(-1, 4) / factor  # (N, 4)
    captions = [f"{caption_name(i.label, class_names)} {i.score:.2f}" for i in result.instances]
    return draw_label_overlay(picture, labels, boxes, captions)
