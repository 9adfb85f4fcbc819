"""YOLO segmentation labels -> COCO JSON (`maskrcnn import-masks --layout yolo`).

What ultralytics trains on and Roboflow exports: per image a text file of the same stem,
one object per line,
    <class index> x1 y1 x2 y2 ... xn yn
with the polygon's coordinates divided by the image's width and height (so in [0, 1]).
Images live in SOURCE/images, label files in SOURCE/labels (other folders by option).
The class names come from a class list: a data.yaml (`names:`) or a classes.txt (one name
per line), given with --classes or found in SOURCE or the folder above it. Class index k
becomes category id k + 1.

An image without a label file is an image without objects (YOLO's rule) and is kept; a
label file without an image is skipped and counted. A bad line stops the import with one
message naming the file and line.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from maskrcnn.data.coco import DatasetError
from maskrcnn.data.images import image_size
from maskrcnn.data.mask_folder import IMAGE_SUFFIXES
from maskrcnn.data.polygon_import import (
    CLASS_LIST_NAMES,
    PolygonError,
    PolygonInstance,
    PolygonSample,
    check_output,
    check_polygon,
    find_class_list,
    read_class_list,
    write_polygon_coco,
)

# Normalised coordinates may exceed [0, 1] by this much (an exporter's float rounding).
NORMALISED_TOLERANCE = 1e-6


def parse_yolo_line(line: str, class_names: list[str], height: int, width: int, where: str) -> PolygonInstance:
    """One label line -> an object with its polygon in image pixels."""
    parts = line.split()
    try:
        index = int(parts[0])
    except ValueError:
        raise DatasetError(f"{where}: class index {parts[0]!r} is not an integer") from None
    if not 0 <= index < len(class_names):
        raise DatasetError(
            f"{where}: class index {index} out of range: the class list has {len(class_names)} names (0..{len(class_names) - 1})"
        )
    try:
        values = [float(v) for v in parts[1:]]
    except ValueError:
        raise PolygonError(f"{where}: a coordinate is not a number") from None
    if len(values) == 4:
        raise PolygonError(f"{where}: 4 numbers is a YOLO box (class cx cy w h), not a polygon; import-masks reads segmentation labels")
    if len(values) % 2 == 0 and len(values) >= 6:
        low, high = min(values), max(values)
        if low < -NORMALISED_TOLERANCE or high > 1 + NORMALISED_TOLERANCE:
            raise PolygonError(
                f"{where}: coordinate out of range: YOLO coordinates are divided by the image size and lie in [0, 1], "
                f"got values in [{low:g}, {high:g}]"
            )
    pixels = [v * (width if k % 2 == 0 else height) for k, v in enumerate(values)]
    return PolygonInstance(class_names[index], [check_polygon(pixels, height, width, where)])


def read_yolo_file(label_path: Path, class_names: list[str], height: int, width: int) -> list[PolygonInstance]:
    instances = []
    for number, line in enumerate(label_path.read_text().splitlines(), start=1):
        if line.strip():
            instances.append(parse_yolo_line(line, class_names, height, width, f"{label_path}:{number}"))
    return instances


def _resolve_class_list(classes: str | Path | None, source: Path) -> Path:
    if classes is not None:
        return Path(classes)
    found = find_class_list([source, source.parent])
    if found is None:
        raise DatasetError(
            f"{source}: class list missing: give --classes data.yaml (names:) or classes.txt "
            f"(looked for {', '.join(CLASS_LIST_NAMES)} in {source} and {source.parent})"
        )
    return found


def import_yolo(
    source: str | Path,
    output_json: str | Path,
    *,
    images_dir: str | Path | None = None,
    labels_dir: str | Path | None = None,
    classes: str | Path | None = None,
) -> dict[str, Any]:
    """Convert a YOLO segmentation folder to COCO JSON; file_name values are relative to the images folder."""
    source, output_json = Path(source), Path(output_json)
    if not source.is_dir():
        raise DatasetError(f"{source}: folder not found")
    images_root = source / (images_dir or "images")
    labels_root = source / (labels_dir or "labels")
    for folder, what in ((images_root, "images"), (labels_root, "labels")):
        if not folder.is_dir():
            raise DatasetError(f"{folder}: {what} folder not found (layout 'yolo')")
    class_list = _resolve_class_list(classes, source)
    class_names = read_class_list(class_list)
    check_output(output_json)
    labels_by_stem = {p.stem: p for p in sorted(labels_root.glob("*.txt"))}
    images = sorted(p for p in images_root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DatasetError(f"{images_root}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    skipped: Counter[str] = Counter()
    samples, unlabelled = [], 0
    for image_path in images:
        height, width = image_size(image_path)
        label_path = labels_by_stem.get(image_path.stem)
        instances = read_yolo_file(label_path, class_names, height, width) if label_path else []
        unlabelled += label_path is None
        samples.append(PolygonSample(image_path, image_path.relative_to(images_root).as_posix(), height, width, instances))
    orphans = len(set(labels_by_stem) - {p.stem for p in images})
    if orphans:
        skipped["label file without an image"] += orphans
    summary = write_polygon_coco(
        samples, class_names, output_json, description=f"imported from {source} (layout yolo)",
        images_dir=images_root, skipped=skipped,
    )
    summary["class_list"] = str(class_list)
    summary["images_without_labels"] = unlabelled
    return summary
