"""A seeded synthetic data set of coloured shapes, written as PNG images + COCO JSON.

Each image gets a background (plain colour, linear gradient, or smooth noise) and
`min_shapes..max_shapes` shapes (circle, square, triangle; optionally ellipse, star) of
random colour, size (12-50% of the image side), rotation and position. Shapes drawn later
cover earlier ones: the masks hold only the visible part, a placement that would hide more
than 60% of an earlier shape is retried, and instances left with tiny area are dropped.

Image i depends only on (seed, i), so the same seed gives identical files, and a larger
`num_images` extends a smaller set.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from maskrcnn.data.generated_files import png_bytes, tight_bbox
from maskrcnn.io_utils import atomic_write_bytes, atomic_write_json
from maskrcnn.ops.masks import mask_to_rle

DEFAULT_SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
ALL_SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "ellipse", "star")

MIN_SIZE_FRACTION = 0.12  # smallest shape extent as a fraction of the image side
MAX_SIZE_FRACTION = 0.50
MIN_VISIBLE_FRACTION = 0.4  # an earlier shape must keep this much of its area visible
MIN_VISIBLE_PIXELS = 12
PLACEMENT_TRIES = 20


def _vertices(kind: str, cx: float, cy: float, radius: float, angle: float, rng) -> list[tuple[float, float]]:
    """Polygon vertices of one shape around (cx, cy) with circumradius `radius`."""
    if kind == "circle":
        steps, radii = 48, [radius]
    elif kind == "square":
        steps, radii = 4, [radius]
    elif kind == "triangle":
        steps, radii = 3, [radius]
    elif kind == "star":
        steps, radii = 10, [radius, radius * 0.45]
    elif kind == "ellipse":
        ratio = float(rng.uniform(0.45, 0.7))
        points = []
        for k in range(48):
            t = 2 * math.pi * k / 48
            x, y = radius * math.cos(t), radius * ratio * math.sin(t)
            points.append(
                (cx + x * math.cos(angle) - y * math.sin(angle), cy + x * math.sin(angle) + y * math.cos(angle))
            )
        return points
    else:
        raise ValueError(f"unknown shape {kind!r}; expected one of {ALL_SHAPES}")
    points = []
    for k in range(steps):
        t = angle + 2 * math.pi * k / steps
        r = radii[k % len(radii)]
        points.append((cx + r * math.cos(t), cy + r * math.sin(t)))
    return points


def _rasterize(points: list[tuple[float, float]], height: int, width: int) -> np.ndarray:
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).polygon(points, fill=1)
    return np.asarray(canvas, dtype=np.uint8).astype(bool)


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=3).astype(np.float64)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) float64 background: plain, gradient or smooth noise."""
    kind = rng.choice(["plain", "gradient", "noise"])
    first = _random_colour(rng)
    if kind == "plain":
        return np.broadcast_to(first, (height, width, 3)).copy()
    if kind == "gradient":
        second = _random_colour(rng)
        angle = float(rng.uniform(0, 2 * math.pi))
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
        ramp = xs * math.cos(angle) + ys * math.sin(angle)
        ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
        return first * (1 - ramp[:, :, None]) + second * ramp[:, :, None]
    coarse = rng.normal(0.0, 40.0, size=(6, 6, 3))
    blobs = np.stack(
        [
            np.asarray(
                Image.fromarray(coarse[:, :, c].astype(np.float32), mode="F").resize(
                    (width, height), Image.BILINEAR
                )
            )
            for c in range(3)
        ],
        axis=2,
    )
    fine = rng.normal(0.0, 6.0, size=(height, width, 3))
    return first + blobs + fine


def _distinct_colour(rng: np.random.Generator, avoid: list[np.ndarray], min_distance: float) -> np.ndarray:
    colour = _random_colour(rng)
    for _ in range(30):
        if all(np.linalg.norm(colour - other) >= min_distance for other in avoid):
            break
        colour = _random_colour(rng)
    return colour


def render_shapes_image(
    seed: int,
    index: int,
    image_size: int | tuple[int, int],
    min_shapes: int,
    max_shapes: int,
    shapes: tuple[str, ...] = DEFAULT_SHAPES,
) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """Render image `index` of the set `seed`.

    Returns the image (H, W, 3) uint8 and a list of (shape index into `shapes`,
    visible mask (H, W) bool), in drawing order.
    """
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    rng = np.random.default_rng([seed, index])
    background = _background(rng, height, width)
    image = background.copy()
    side = min(height, width)
    instances: list[tuple[int, np.ndarray, np.ndarray]] = []  # (kind, full mask, visible mask)
    colours = [background.reshape(-1, 3).mean(axis=0)]
    for _ in range(int(rng.integers(min_shapes, max_shapes + 1))):
        kind_index = int(rng.integers(0, len(shapes)))
        colour = _distinct_colour(rng, colours, 90.0)
        for _try in range(PLACEMENT_TRIES):
            radius = float(rng.uniform(MIN_SIZE_FRACTION, MAX_SIZE_FRACTION)) * side / 2
            cx = float(rng.uniform(radius, width - radius))
            cy = float(rng.uniform(radius, height - radius))
            angle = float(rng.uniform(0, 2 * math.pi))
            mask = _rasterize(_vertices(shapes[kind_index], cx, cy, radius, angle, rng), height, width)
            if mask.sum() < MIN_VISIBLE_PIXELS:
                continue
            hides_too_much = any(
                (visible & ~mask).sum() < MIN_VISIBLE_FRACTION * full.sum() for _, full, visible in instances
            )
            if not hides_too_much:
                break
        else:
            continue
        instances = [(k, full, visible & ~mask) for k, full, visible in instances]
        instances.append((kind_index, mask, mask.copy()))
        image[mask] = colour
        colours.append(colour)
    pixels = np.clip(np.round(image), 0, 255).astype(np.uint8)
    kept = [(k, visible) for k, _, visible in instances if visible.sum() >= MIN_VISIBLE_PIXELS]
    return pixels, kept


def generate_shapes(
    out_dir: str | Path,
    num_images: int,
    image_size: int = 128,
    seed: int = 0,
    min_shapes: int = 1,
    max_shapes: int = 4,
    *,
    shapes: tuple[str, ...] = DEFAULT_SHAPES,
    annotations_file: str = "annotations.json",
) -> Path:
    """Write `num_images` images to `out_dir/images/` and COCO JSON to `out_dir/annotations_file`.

    Segmentations are compressed RLE; bbox is the tight box of the visible mask. Returns the
    JSON path. Image file names start with the JSON's stem, so two sets (say train.json
    and val.json) can share one folder.
    """
    if num_images < 0:
        raise ValueError(f"generate_shapes: num_images must be >= 0, got {num_images}")
    if not 1 <= min_shapes <= max_shapes:
        raise ValueError(f"generate_shapes: need 1 <= min_shapes <= max_shapes, got {min_shapes}, {max_shapes}")
    if image_size < 16:
        raise ValueError(f"generate_shapes: image_size must be >= 16 pixels, got {image_size}")
    unknown = [s for s in shapes if s not in ALL_SHAPES]
    if unknown or not shapes:
        raise ValueError(f"generate_shapes: unknown shapes {unknown}; expected some of {ALL_SHAPES}")
    out_dir = Path(out_dir)
    json_path = out_dir / annotations_file
    images_dir = out_dir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(annotations_file).stem
    images, annotations = [], []
    for index in range(num_images):
        pixels, instances = render_shapes_image(seed, index, image_size, min_shapes, max_shapes, shapes)
        file_name = f"{stem}_{index:06d}.png"
        atomic_write_bytes(images_dir / file_name, png_bytes(pixels))
        image_id = index + 1
        images.append({"id": image_id, "file_name": file_name, "height": pixels.shape[0], "width": pixels.shape[1]})
        for kind_index, visible in instances:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": kind_index + 1,
                    "segmentation": mask_to_rle(visible.astype(np.uint8)),
                    "bbox": tight_bbox(visible),
                    "area": float(visible.sum()),
                    "iscrowd": 0,
                }
            )
    generator = {
        "name": "maskrcnn.data.shapes",
        "num_images": num_images,
        "image_size": image_size,
        "seed": seed,
        "min_shapes": min_shapes,
        "max_shapes": max_shapes,
        "shapes": list(shapes),
    }
    coco = {
        "info": {"description": "maskrcnn synthetic shapes", "generator": generator},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(shapes)],
    }
    atomic_write_json(json_path, coco, indent=None)
    return json_path
