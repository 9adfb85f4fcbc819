"""LabelMe annotation files -> COCO JSON (`maskrcnn import-masks --layout labelme`).

LabelMe writes one JSON per image:
    {"imagePath": "cells_0.png", "imageHeight": 256, "imageWidth": 320,
     "shapes": [{"label": "nucleus", "shape_type": "polygon", "points": [[x, y], ...],
                 "group_id": null}, ...]}
`imagePath` is relative to the JSON file. Shapes that are areas become objects: polygons
as they are, rectangles as four corners, circles (centre, a point on the rim) as a
CIRCLE_SIDES-gon. Shapes with the same label and the same non-null `group_id` are one
object of several parts (LabelMe's way to draw an object cut in two). Lines, points and
masks are not polygons: they are skipped and counted. Points are pixel coordinates as
LabelMe stores them (x right, y down), copied unchanged.

The categories are the labels: in the order of a class list when one is given (a label
not in it is an error), otherwise sorted by name.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import Path
from typing import Any

from maskrcnn.data.coco import DatasetError, read_json_file
from maskrcnn.data.images import image_size
from maskrcnn.data.mask_folder import written_by_import_masks
from maskrcnn.data.polygon_import import (
    PolygonInstance,
    PolygonSample,
    check_output,
    check_polygon,
    read_class_list,
    write_polygon_coco,
)

AREA_SHAPES = ("polygon", "rectangle", "circle")
CIRCLE_SIDES = 64


def _number_pairs(points: Any, where: str) -> list[float]:
    if not isinstance(points, list) or not all(
        isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p)
        for p in points
    ):
        raise DatasetError(f"{where}: 'points' must be a list of [x, y] number pairs")
    return [float(v) for p in points for v in p]


def _shape_polygon(shape_type: str, coords: list[float], where: str) -> list[float]:
    """A shape's points -> one flat polygon (not yet checked against the image)."""
    if shape_type == "polygon":
        return coords
    if len(coords) != 4:
        raise DatasetError(f"{where}: a {shape_type} has 2 points, got {len(coords) // 2}")
    x0, y0, x1, y1 = coords
    if shape_type == "rectangle":
        left, right, top, bottom = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
        return [left, top, right, top, right, bottom, left, bottom]
    radius = math.hypot(x1 - x0, y1 - y0)  # circle: centre, then a point on the rim
    angles = [2 * math.pi * k / CIRCLE_SIDES for k in range(CIRCLE_SIDES)]
    return [v for a in angles for v in (x0 + radius * math.cos(a), y0 + radius * math.sin(a))]


def read_labelme_file(path: Path, source: Path, skipped: Counter[str]) -> PolygonSample:
    """One LabelMe JSON -> its image and objects (file_name relative to `source`)."""
    data = read_json_file(path, "LabelMe file")
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        raise DatasetError(f"{path}: not a LabelMe file (expected a JSON object with a 'shapes' list)")
    image_ref = data.get("imagePath")
    if not isinstance(image_ref, str) or not image_ref:
        raise DatasetError(f"{path}: 'imagePath' missing: LabelMe files name their image")
    image_path = path.parent / image_ref.replace("\\", "/")  # files saved on Windows
    if not image_path.is_file():
        raise DatasetError(f"{path}: imagePath {image_ref!r}: image file not found ({image_path})")
    height, width = image_size(image_path)
    for key, actual in (("imageHeight", height), ("imageWidth", width)):
        stated = data.get(key)
        if stated is not None and stated != actual:
            raise DatasetError(f"{path}: {key} is {stated} but {image_path.name} is {width} x {height} pixels (W x H)")
    parts: dict[tuple[str, Any], list[list[float]]] = {}
    for index, shape in enumerate(data["shapes"]):
        where = f"{path}: shape {index}"
        if not isinstance(shape, dict):
            raise DatasetError(f"{where}: expected an object with 'label' and 'points'")
        label = shape.get("label")
        if not isinstance(label, str) or not label.strip():
            raise DatasetError(f"{where}: 'label' must be a non-empty string")
        where = f"{where} ({label!r})"
        shape_type = shape.get("shape_type") or "polygon"
        if shape_type not in AREA_SHAPES:
            skipped[f"LabelMe shape of type {shape_type!r} (not an area)"] += 1
            continue
        coords = _shape_polygon(shape_type, _number_pairs(shape.get("points"), where), where)
        polygon = check_polygon(coords, height, width, where)
        group = shape.get("group_id")
        key = (label.strip(), index if group is None else ("group", group))
        parts.setdefault(key, []).append(polygon)
    instances = [PolygonInstance(label, polygons) for (label, _), polygons in parts.items()]
    file_name = Path(os.path.relpath(image_path, source)).as_posix()
    return PolygonSample(image_path, file_name, height, width, instances)


def import_labelme(
    source: str | Path, output_json: str | Path, *, classes: str | Path | None = None
) -> dict[str, Any]:
    """Convert every LabelMe JSON in the folder `source` (not recursive) to COCO JSON."""
    source, output_json = Path(source), Path(output_json)
    if not source.is_dir():
        raise DatasetError(f"{source}: folder not found")
    check_output(output_json)
    # every JSON but the COCO files import-masks wrote (its own output among them)
    files = sorted(
        p for p in source.glob("*.json") if p.resolve() != output_json.resolve() and not written_by_import_masks(p)
    )
    if not files:
        raise DatasetError(f"{source}: no LabelMe .json files found (layout 'labelme')")
    skipped: Counter[str] = Counter()
    samples = [read_labelme_file(path, source, skipped) for path in files]
    found = sorted({i.category for s in samples for i in s.instances})
    if classes is not None:
        class_names = read_class_list(classes)
        for sample, path in zip(samples, files):
            unknown = sorted({i.category for i in sample.instances} - set(class_names))
            if unknown:
                raise DatasetError(f"{path}: label {unknown[0]!r} is not in the class list {classes}")
    else:
        class_names = found
    if not class_names:
        raise DatasetError(f"{source}: the LabelMe files hold no polygons, rectangles or circles")
    return write_polygon_coco(
        samples, class_names, output_json, description=f"imported from {source} (layout labelme)",
        images_dir=source, skipped=skipped,
    )
