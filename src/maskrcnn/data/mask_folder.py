"""Import instance masks stored as image files into a COCO JSON file.

Two layouts:

"dsb" (the 2018 Data Science Bowl): one folder per sample,
    <source>/<id>/images/<id>.png      the image
    <source>/<id>/masks/*.png          one binary mask per instance (nonzero = inside)
  file_name values are "<id>/images/<id>.png", relative to <source>.

"labels": a folder of images and a folder of label images (one integer per instance,
  0 = background; RGB label images: one colour per instance), matched by file stem.
  By default <source>/images and <source>/labels; file_name values are relative to the
  images folder.

Every instance becomes one annotation of a single category with a compressed-RLE
segmentation, its tight bbox and its area. Samples that cannot be used (no image, a mask
of another size, an empty mask, an image without a label image) are skipped and counted
in the returned summary; an unreadable file stops with a message naming it.

A dsb instance mask should hold two values (0 and one other). One with more (an
anti-aliased or gradient mask, 0..252 say) is thresholded at half its maximum: pixels
above max / 2 are the object. That is said in one warning line (with a count and the first
such file) and counted in the summary's `thresholded_masks`, never done silently.

The output JSON is never written over a file that import-masks did not write itself.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from maskrcnn.data.coco import DatasetError
from maskrcnn.data.images import image_size, read_label_image
from maskrcnn.io_utils import atomic_write_json, prepare_output_file
from maskrcnn.ops.masks import mask_to_rle

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
LAYOUTS = ("dsb", "labels")
DEFAULT_CATEGORY = {"dsb": "nucleus", "labels": "object"}


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _annotation(mask: np.ndarray, image_id: int) -> dict[str, Any]:
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return {
        "image_id": image_id,
        "category_id": 1,
        "segmentation": mask_to_rle(mask),
        "bbox": [float(x0), float(y0), float(xs.max() + 1 - x0), float(ys.max() + 1 - y0)],
        "area": float(mask.sum()),
        "iscrowd": 0,
    }


def binary_instance_mask(values: np.ndarray) -> tuple[np.ndarray, bool]:
    """(H, W) mask image -> ((H, W) uint8 {0, 1}, whether it had to be thresholded).

    Two values or fewer: nonzero is inside. More: pixels above half the maximum are inside.
    """
    peak = int(values.max()) if values.size else 0
    if np.count_nonzero((values != 0) & (values != peak)) == 0:
        return (values != 0).astype(np.uint8), False
    return (values > peak / 2).astype(np.uint8), True


def _dsb_samples(
    source: Path, skipped: Counter[str], thresholded: list[str]
) -> Iterator[tuple[Path, str, list[np.ndarray]]]:
    """(image path, file_name, instance masks) per usable sample folder; the masks that
    were not binary are added to `thresholded` (paths relative to source)."""
    for sample in sorted(p for p in source.iterdir() if p.is_dir()):
        images_folder = sample / "images"
        candidates = _image_files(images_folder) if images_folder.is_dir() else []
        preferred = [p for p in candidates if p.stem == sample.name]
        if not candidates:
            skipped["sample without an image"] += 1
            continue
        image_path = (preferred or candidates)[0]
        height, width = image_size(image_path)
        masks = []
        mask_folder = sample / "masks"
        for mask_path in _image_files(mask_folder) if mask_folder.is_dir() else []:
            mask, was_thresholded = binary_instance_mask(read_label_image(mask_path))
            if was_thresholded:
                thresholded.append(mask_path.relative_to(source).as_posix())
            if mask.shape != (height, width):
                skipped["mask of another size than its image"] += 1
                continue
            if not mask.any():
                skipped["empty mask"] += 1
                continue
            masks.append(mask)
        yield image_path, image_path.relative_to(source).as_posix(), masks


def _label_samples(
    images_dir: Path, labels_dir: Path, skipped: Counter[str]
) -> Iterator[tuple[Path, str, list[np.ndarray]]]:
    labels_by_stem: dict[str, Path] = {}
    for path in _image_files(labels_dir):
        if path.stem in labels_by_stem:
            raise DatasetError(f"{labels_dir}: two label images for {path.stem!r}: {labels_by_stem[path.stem].name}, {path.name}")
        labels_by_stem[path.stem] = path
    used = set()
    for image_path in _image_files(images_dir):
        label_path = labels_by_stem.get(image_path.stem)
        if label_path is None:
            skipped["image without a label image"] += 1
            continue
        used.add(image_path.stem)
        height, width = image_size(image_path)
        labels = read_label_image(label_path)
        if labels.shape != (height, width):
            raise DatasetError(
                f"{label_path}: label image is {labels.shape[0]}x{labels.shape[1]} (HxW) but "
                f"{image_path.name} is {height}x{width}"
            )
        values = np.unique(labels)
        masks = [(labels == v).astype(np.uint8) for v in values if v != 0]
        yield image_path, image_path.relative_to(images_dir).as_posix(), masks
    skipped["label image without an image"] += len(set(labels_by_stem) - used)
    if not skipped["label image without an image"]:
        del skipped["label image without an image"]


def import_masks(
    source: str | Path,
    output_json: str | Path,
    *,
    layout: str = "dsb",
    images_dir: str | Path | None = None,
    labels_dir: str | Path | None = None,
    category: str | None = None,
) -> dict[str, Any]:
    """Convert a mask folder to COCO JSON at `output_json`; returns a summary.

    `category` names the single category (default "nucleus" for dsb, "object" for labels).
    `images_dir` / `labels_dir` (labels layout; relative to `source` or absolute) default
    to <source>/images and <source>/labels. The summary holds the JSON path, the folder to
    pass as the data set's `images`, counts, and the skipped items by reason.
    """
    source = Path(source)
    if layout not in LAYOUTS:
        raise DatasetError(f"import-masks: layout must be one of {LAYOUTS}, got {layout!r}")
    if not source.is_dir():
        raise DatasetError(f"{source}: folder not found")
    output_json = Path(output_json)
    prepare_output_file(output_json, "COCO JSON (--output)")  # before the work, not after
    if output_json.exists() and not written_by_import_masks(output_json):
        raise DatasetError(
            f"{output_json}: exists and was not written by import-masks; give another --output or move it away"
        )
    skipped: Counter[str] = Counter()
    thresholded: list[str] = []
    if layout == "dsb":
        root = source
        samples = _dsb_samples(source, skipped, thresholded)
    else:
        root = source / (images_dir or "images")
        labels = source / (labels_dir or "labels")
        for folder, what in ((root, "images"), (labels, "labels")):
            if not folder.is_dir():
                raise DatasetError(f"{folder}: {what} folder not found (layout 'labels')")
        samples = _label_samples(root, labels, skipped)
    images, annotations = [], []
    for image_path, file_name, masks in samples:
        image_id = len(images) + 1
        height, width = image_size(image_path)
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        for mask in masks:
            annotations.append(dict(_annotation(mask, image_id), id=len(annotations) + 1))
    if not images:
        raise DatasetError(f"{source}: no usable images found for layout {layout!r} ({dict(skipped) or 'empty folder'})")
    name = category or DEFAULT_CATEGORY[layout]
    coco = {
        "info": {"description": f"imported from {source} (layout {layout})"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": name, "supercategory": name}],
    }
    atomic_write_json(output_json, coco, indent=None)
    if skipped:
        logger.warning("%s: skipped %s", source, ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items())))
    if thresholded:
        logger.warning(
            "%s: %d instance mask(s) not binary (more than two values, first: %s): "
            "pixels above half of each mask's maximum were taken as the object",
            source, len(thresholded), thresholded[0],
        )
    return {
        "json": str(output_json),
        "images_dir": str(root),
        "num_images": len(images),
        "num_annotations": len(annotations),
        "category": name,
        "skipped": dict(skipped),
        "thresholded_masks": len(thresholded),
    }


def written_by_import_masks(path: Path) -> bool:
    """Whether `path` is a COCO JSON that import_masks wrote (its info.description says so)."""
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    info = data.get("info") if isinstance(data, dict) else None
    description = info.get("description", "") if isinstance(info, dict) else ""
    return isinstance(description, str) and description.startswith("imported from ")
