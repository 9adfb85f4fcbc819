"""One large continuous canvas of shapes drawn like the shapes data set's small images.

`render_shapes_image(seed, i, 128, 1, 4)` draws 1-4 shapes of 12-50 % of 128 px on a
128-px image. `render_shapes_canvas(seed, 2048, 2048, object_scale=128)` draws on one
2048 x 2048 canvas what 256 such images would hold, without their 128-px edges: the same
shape sizes (fractions of `object_scale`, not of the canvas), the same number of shapes per
area ((min_shapes + max_shapes) / 2 per object_scale^2), the same backgrounds at the same
spatial frequency (plain colour, smooth noise with one coarse sample per object_scale / 6
px plus fine noise), the same occlusion rule (a placement that would hide more than 60 %
of an earlier shape is retried) and colours distinct from the local background and from
the shapes nearby. The gradient background ramps across the whole canvas, so it is locally
close to plain. It is the test image of tiled prediction (benchmarks/tiling_accuracy.py):
a model trained on the small images sees, in any object_scale window, the kind of picture
it was trained on.

Masks are held as crops at (y0, x0), never as (H, W) arrays: a 4096-px canvas holds
about 2,500 shapes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from maskrcnn.data.shapes import (
    DEFAULT_SHAPES,
    MAX_SIZE_FRACTION,
    MIN_SIZE_FRACTION,
    MIN_VISIBLE_FRACTION,
    MIN_VISIBLE_PIXELS,
    PLACEMENT_TRIES,
    _distinct_colour,
    _random_colour,
    _vertices,
)
from maskrcnn.errors import UserError

BACKGROUNDS: tuple[str, ...] = ("plain", "gradient", "noise")
NOISE_SAMPLES_PER_SCALE = 6  # coarse noise samples across one object_scale (6 per 128-px image)
COLOUR_DISTANCE = 90.0  # as render_shapes_image: shapes differ from their surroundings by this much (RGB)


class CanvasError(UserError):
    """Canvas arguments that cannot draw a canvas."""


@dataclass
class CanvasShape:
    """One shape's visible part: a crop at (y0, x0) of the canvas."""

    kind: int  # index into the `shapes` the canvas was drawn with
    y0: int
    x0: int
    mask: np.ndarray  # (h, w) bool, visible pixels only

    @property
    def y1(self) -> int:
        return self.y0 + self.mask.shape[0]

    @property
    def x1(self) -> int:
        return self.x0 + self.mask.shape[1]


@dataclass
class ShapesCanvas:
    pixels: np.ndarray  # (H, W, 3) uint8
    instances: list[CanvasShape]  # drawing order; visible parts never overlap
    background: str


def _canvas_background(rng: np.random.Generator, kind: str, height: int, width: int, scale: int) -> np.ndarray:
    """(H, W, 3) float32 background like shapes._background, at the spatial frequency of `scale`-px images."""
    first = _random_colour(rng).astype(np.float32)
    if kind == "plain":
        return np.broadcast_to(first, (height, width, 3)).copy()
    if kind == "gradient":
        second = _random_colour(rng).astype(np.float32)
        angle = float(rng.uniform(0, 2 * math.pi))
        ramp = np.arange(width, dtype=np.float32)[None, :] * math.cos(angle) + np.arange(
            height, dtype=np.float32
        )[:, None] * math.sin(angle)
        ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)  # (H, W) 0..1
        return first * (1 - ramp[:, :, None]) + second * ramp[:, :, None]
    coarse_h = max(2, round(NOISE_SAMPLES_PER_SCALE * height / scale))
    coarse_w = max(2, round(NOISE_SAMPLES_PER_SCALE * width / scale))
    coarse = rng.normal(0.0, 40.0, size=(coarse_h, coarse_w, 3)).astype(np.float32)
    out = np.empty((height, width, 3), dtype=np.float32)
    for c in range(3):
        out[:, :, c] = np.asarray(Image.fromarray(coarse[:, :, c], mode="F").resize((width, height), Image.BILINEAR))
    out += first
    out += rng.normal(0.0, 6.0, size=(height, width, 3)).astype(np.float32)
    return out


def _rasterize_local(points: list[tuple[float, float]], y0: int, x0: int, h: int, w: int) -> np.ndarray:
    """(h, w) bool: the polygon (canvas coordinates) drawn in the window at (y0, x0)."""
    canvas = Image.new("L", (w, h), 0)
    ImageDraw.Draw(canvas).polygon([(x - x0, y - y0) for x, y in points], fill=1)
    return np.asarray(canvas, dtype=np.uint8).astype(bool)


def render_shapes_canvas(
    seed: int,
    height: int,
    width: int,
    *,
    object_scale: int = 128,
    min_shapes: int = 1,
    max_shapes: int = 4,
    shapes: tuple[str, ...] = DEFAULT_SHAPES,
    background: str | None = None,
) -> ShapesCanvas:
    """A height x width canvas drawn like `render_shapes_image(seed, i, object_scale, min_shapes, max_shapes)`.

    `background`: one of BACKGROUNDS, or None to draw it at random as the small images do.
    """
    if height < object_scale or width < object_scale:
        raise CanvasError(f"canvas {width}x{height}: expected at least object_scale ({object_scale}) on each side")
    if object_scale < 16:
        raise CanvasError(f"object_scale {object_scale}: expected at least 16 pixels")
    if not 1 <= min_shapes <= max_shapes:
        raise CanvasError(f"need 1 <= min_shapes <= max_shapes, got {min_shapes}, {max_shapes}")
    if background is not None and background not in BACKGROUNDS:
        raise CanvasError(f"background {background!r}: expected one of {BACKGROUNDS}")
    rng = np.random.default_rng([seed, height, width, object_scale])
    kind = background or str(rng.choice(BACKGROUNDS))
    background_pixels = _canvas_background(rng, kind, height, width, object_scale)  # (H, W, 3) float32
    image = background_pixels.copy()
    count = round(height * width / object_scale**2 * (min_shapes + max_shapes) / 2)
    near = object_scale // 4  # shapes this close must differ in colour, as all shapes of one small image do

    boxes = np.zeros((0, 4), dtype=np.int64)  # (N, 4) y0 x0 y1 x1 of each shape's full extent
    full_area: list[int] = []
    visible: list[CanvasShape] = []  # crops the size of the full extent; trimmed at the end
    colours: list[np.ndarray] = []
    for _ in range(count):
        kind_index = int(rng.integers(0, len(shapes)))
        for _try in range(PLACEMENT_TRIES):
            radius = float(rng.uniform(MIN_SIZE_FRACTION, MAX_SIZE_FRACTION)) * object_scale / 2
            cx = float(rng.uniform(radius, width - radius))
            cy = float(rng.uniform(radius, height - radius))
            angle = float(rng.uniform(0, 2 * math.pi))
            points = _vertices(shapes[kind_index], cx, cy, radius, angle, rng)
            y0, x0 = max(0, math.floor(cy - radius) - 1), max(0, math.floor(cx - radius) - 1)
            y1, x1 = min(height, math.ceil(cy + radius) + 2), min(width, math.ceil(cx + radius) + 2)
            mask = _rasterize_local(points, y0, x0, y1 - y0, x1 - x0)  # (h, w)
            if mask.sum() < MIN_VISIBLE_PIXELS:
                continue
            hit = np.flatnonzero((boxes[:, 0] < y1) & (boxes[:, 2] > y0) & (boxes[:, 1] < x1) & (boxes[:, 3] > x0))
            if not any(_visible_left(visible[k], mask, y0, x0) < MIN_VISIBLE_FRACTION * full_area[k] for k in hit):
                break
        else:
            continue
        for k in hit:  # the new shape covers part of the earlier ones
            _cover(visible[k], mask, y0, x0)
        around = np.flatnonzero(
            (boxes[:, 0] < y1 + near) & (boxes[:, 2] > y0 - near) & (boxes[:, 1] < x1 + near) & (boxes[:, 3] > x0 - near)
        )
        local_background = background_pixels[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0)
        colour = _distinct_colour(rng, [local_background, *(colours[k] for k in around)], COLOUR_DISTANCE)
        image[y0:y1, x0:x1][mask] = colour
        boxes = np.concatenate([boxes, np.array([[y0, x0, y1, x1]], dtype=np.int64)])
        full_area.append(int(mask.sum()))
        visible.append(CanvasShape(kind_index, y0, x0, mask.copy()))
        colours.append(colour)
    pixels = np.clip(np.round(image), 0, 255).astype(np.uint8)
    kept = [_trimmed(v) for v in visible if int(v.mask.sum()) >= MIN_VISIBLE_PIXELS]
    return ShapesCanvas(pixels, kept, kind)


def _overlap(shape: CanvasShape, y0: int, x0: int, h: int, w: int) -> tuple[slice, slice, slice, slice] | None:
    """Slices of `shape.mask` and of a (h, w) window at (y0, x0) where the two meet."""
    oy0, ox0 = max(shape.y0, y0), max(shape.x0, x0)
    oy1, ox1 = min(shape.y1, y0 + h), min(shape.x1, x0 + w)
    if oy1 <= oy0 or ox1 <= ox0:
        return None
    return (slice(oy0 - shape.y0, oy1 - shape.y0), slice(ox0 - shape.x0, ox1 - shape.x0),
            slice(oy0 - y0, oy1 - y0), slice(ox0 - x0, ox1 - x0))


def _visible_left(shape: CanvasShape, mask: np.ndarray, y0: int, x0: int) -> int:
    """Pixels of `shape` still visible if `mask` (at y0, x0) were drawn over it."""
    total = int(np.count_nonzero(shape.mask))
    where = _overlap(shape, y0, x0, *mask.shape)
    if where is None:
        return total
    sy, sx, my, mx = where
    return total - int(np.count_nonzero(shape.mask[sy, sx] & mask[my, mx]))


def _cover(shape: CanvasShape, mask: np.ndarray, y0: int, x0: int) -> None:
    where = _overlap(shape, y0, x0, *mask.shape)
    if where is not None:
        sy, sx, my, mx = where
        shape.mask[sy, sx] &= ~mask[my, mx]


def _trimmed(shape: CanvasShape) -> CanvasShape:
    rows = np.flatnonzero(shape.mask.any(axis=1))
    cols = np.flatnonzero(shape.mask.any(axis=0))
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return CanvasShape(shape.kind, shape.y0 + r0, shape.x0 + c0, np.ascontiguousarray(shape.mask[r0:r1, c0:c1]))
