"""Polygon annotations from annotation tools (LabelMe, YOLO segmentation) -> one COCO JSON file.

The readers (`data/labelme.py`, `data/yolo_seg.py`) turn their files into `PolygonSample`s:
an image and its instances, each a category name and one or more polygons in image pixels.
This module checks each polygon (one line naming the file and place when it is wrong), reads
the class list a user gives, and writes the COCO JSON: polygons stay polygon segmentations,
categories are the user's class names (ids 1..C in the class list's order).

Pixel coordinates follow COCO: x right, y down, (0, 0) the top-left corner of the image.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pycocotools import mask as coco_mask

from maskrcnn.data.coco import DatasetError
from maskrcnn.data.mask_folder import written_by_import_masks
from maskrcnn.io_utils import atomic_write_json, prepare_output_file

# Coordinates may stray this far outside the image (float rounding of an exporter) and
# are then clamped to it; farther is an error.
EDGE_TOLERANCE_PIXELS = 0.5
CLASS_LIST_NAMES = ("data.yaml", "dataset.yaml", "classes.txt")


class PolygonError(DatasetError):
    """A polygon that cannot be a COCO polygon: too few points, odd coordinates, out of the image, no area."""


@dataclass(frozen=True)
class PolygonInstance:
    """One object: its category name and its polygon(s), each [x1, y1, x2, y2, ...] image pixels."""

    category: str
    polygons: list[list[float]]


@dataclass
class PolygonSample:
    """One image and the objects drawn on it."""

    image_path: Path
    file_name: str  # the COCO file_name: relative to the images folder of the output
    height: int
    width: int
    instances: list[PolygonInstance] = field(default_factory=list)


def check_polygon(coords: list[float], height: int, width: int, where: str) -> list[float]:
    """A flat [x1, y1, ...] list in image pixels, checked; points within EDGE_TOLERANCE_PIXELS
    outside the image are clamped to it. Raises PolygonError naming `where`."""
    if len(coords) % 2:
        raise PolygonError(f"{where}: odd number of coordinates ({len(coords)}); a polygon is x y pairs")
    if len(coords) < 6:
        raise PolygonError(f"{where}: a polygon needs at least 3 points, got {len(coords) // 2}")
    if not all(math.isfinite(v) for v in coords):
        raise PolygonError(f"{where}: a coordinate is not a finite number")
    xs, ys = coords[0::2], coords[1::2]
    tol = EDGE_TOLERANCE_PIXELS
    if min(xs) < -tol or max(xs) > width + tol or min(ys) < -tol or max(ys) > height + tol:
        raise PolygonError(
            f"{where}: coordinate out of range: x in [{min(xs):g}, {max(xs):g}], y in [{min(ys):g}, {max(ys):g}] "
            f"but the image is {width} x {height} pixels (W x H)"
        )
    out: list[float] = []
    for x, y in zip(xs, ys):
        out += [round(min(max(x, 0.0), float(width)), 3), round(min(max(y, 0.0), float(height)), 3)]
    if _shoelace_area(out) <= 0.0:
        raise PolygonError(f"{where}: the polygon encloses no area (its points lie on a line)")
    return out


def _shoelace_area(coords: list[float]) -> float:
    xs, ys = coords[0::2], coords[1::2]
    total = sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(xs)))
    return abs(total) / 2.0


# ---------------------------------------------------------------------------------------
# Class lists
# ---------------------------------------------------------------------------------------


def read_class_list(path: str | Path) -> list[str]:
    """Class names in index order from a YOLO data.yaml (`names:` a list or {index: name})
    or a text file with one name per line."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: class list not found")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(path.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        names = data.get("names") if isinstance(data, dict) else None
        if isinstance(names, dict):
            keys = sorted(names)
            if keys != list(range(len(keys))):
                raise DatasetError(f"{path}: 'names' keys must be the class indices 0..{len(keys) - 1}, got {keys}")
            names = [names[k] for k in keys]
        if not isinstance(names, list) or not names:
            raise DatasetError(f"{path}: expected 'names:' with the class names (a list, or index: name)")
    else:
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if not names:
            raise DatasetError(f"{path}: no class names (one name per line)")
    names = [str(n) for n in names]
    duplicates = sorted(n for n, c in Counter(names).items() if c > 1)
    if duplicates:
        raise DatasetError(f"{path}: class name {duplicates[0]!r} given twice")
    return names


def find_class_list(folders: list[Path]) -> Path | None:
    """The first data.yaml, dataset.yaml or classes.txt in `folders`, in that order."""
    for folder in folders:
        for name in CLASS_LIST_NAMES:
            if (folder / name).is_file():
                return folder / name
    return None


# ---------------------------------------------------------------------------------------
# COCO out
# ---------------------------------------------------------------------------------------


def _annotation(instance: PolygonInstance, sample: PolygonSample, category_id: int, image_id: int) -> dict[str, Any]:
    rles = coco_mask.frPyObjects(instance.polygons, sample.height, sample.width)
    area = float(coco_mask.area(coco_mask.merge(rles)))  # pixels inside, as the loader decodes it
    xs = [x for poly in instance.polygons for x in poly[0::2]]
    ys = [y for poly in instance.polygons for y in poly[1::2]]
    return {
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": instance.polygons,
        "bbox": [min(xs), min(ys), round(max(xs) - min(xs), 3), round(max(ys) - min(ys), 3)],
        "area": area,
        "iscrowd": 0,
    }


def check_output(output_json: Path) -> None:
    """Before the work: the output can be written and is not someone else's file."""
    prepare_output_file(output_json, "COCO JSON (--output)")
    if output_json.exists() and not written_by_import_masks(output_json):
        raise DatasetError(
            f"{output_json}: exists and was not written by import-masks; give another --output or move it away"
        )


def write_polygon_coco(
    samples: list[PolygonSample],
    class_names: list[str],
    output_json: Path,
    *,
    description: str,
    images_dir: Path,
    skipped: Counter[str],
) -> dict[str, Any]:
    """Write the COCO JSON (categories 1..C = class_names in order); returns the summary."""
    category_id = {name: index + 1 for index, name in enumerate(class_names)}
    images, annotations = [], []
    for sample in samples:
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": sample.file_name, "height": sample.height, "width": sample.width})
        for instance in sample.instances:
            ann = _annotation(instance, sample, category_id[instance.category], image_id)
            annotations.append(dict(ann, id=len(annotations) + 1))
    coco = {
        "info": {"description": description},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": category_id[n], "name": n, "supercategory": n} for n in class_names],
    }
    atomic_write_json(output_json, coco, indent=None)
    per_class = Counter(class_names[a["category_id"] - 1] for a in annotations)
    return {
        "json": str(output_json),
        "images_dir": str(images_dir),
        "num_images": len(images),
        "num_annotations": len(annotations),
        "categories": list(class_names),
        "instances_per_category": {n: per_class.get(n, 0) for n in class_names},
        "skipped": dict(skipped),
    }
