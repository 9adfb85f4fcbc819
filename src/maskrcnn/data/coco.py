"""A COCO-format instance segmentation data set.

`CocoDataset(annotations, images)[i]` -> (image (3, H, W) float32 in [0, 1], Targets, info)
with masks (N, H, W) uint8, boxes (N, 4) float32 x1 y1 x2 y2 (from the COCO bbox
[x, y, w, h]), labels (N,) int64 in 1..C (categories sorted by id), info = {"image_id",
"file_name", "height", "width"}.

The JSON is checked once, up front. Structural mistakes (missing keys, wrong types, an
annotation naming an unknown image or category) stop with one message naming the file
and the field. Problems with single items are skipped and counted in `dataset.warnings`
(a Counter of reasons), with one summary logged: a missing image file, a degenerate box,
a polygon with fewer than 3 points or with points (or a box reaching) more than one image
side outside the image, an RLE whose size or runs do not describe exactly height x width pixels, an
annotation without a usable segmentation. NaN or infinite numbers stop loading (a corrupt
file). All of this is checked before pycocotools rasterises or decodes anything (see
maskrcnn.data.validate: it trusts its input and misbehaves badly otherwise).
Crowd regions (`iscrowd: 1`) are kept out of the training targets but stay in `coco`
for evaluation, where COCO ignores them.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from pycocotools import mask as coco_mask
from torch import Tensor

from maskrcnn.data.images import ImageReadError, image_size, read_image
from maskrcnn.data.mask_patches import MaskPatchCache
from maskrcnn.data.validate import (
    COCO_MASK_MAX_PIXELS,
    box_outside,
    non_finite_field,
    polygons_outside,
    rle_problem,
)
from maskrcnn.errors import UserError
from maskrcnn.ops.masks import polygons_to_mask, rle_to_mask
from maskrcnn.structures import Targets, image_to_tensor

logger = logging.getLogger(__name__)

Transform = Callable[[Tensor, Targets], tuple[Tensor, Targets]]


class DatasetError(UserError):
    """An annotation file or image folder that is not what was expected."""


# ---------------------------------------------------------------------------------------
# JSON checks
# ---------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_json_file(path: Path, what: str) -> Any:
    """Parse a JSON file; a missing file or bad JSON raises DatasetError naming the file."""
    if not path.is_file():
        raise DatasetError(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None


def load_coco_json(path: str | Path) -> dict[str, Any]:
    """Read a COCO JSON file and check its structure; raise DatasetError naming the field."""
    path = Path(path)
    data = read_json_file(path, "annotation file")
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object with images, annotations, categories")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise DatasetError(f"{path}: missing top-level key {key!r} (a COCO file has images, annotations, categories)")
        if not isinstance(data[key], list):
            raise DatasetError(f"{path}: {key!r} must be a list, got {type(data[key]).__name__}")
    category_ids = _check_categories(data["categories"], path.name)
    image_ids = _check_images(data["images"], path.name)
    annotation_ids: set[int] = set()
    for i, ann in enumerate(data["annotations"]):
        _check_annotation(ann, i, path.name, image_ids, category_ids, annotation_ids)
    return data


def _check_categories(categories: list[Any], name: str) -> set[int]:
    """The category ids, each checked."""
    category_ids: set[int] = set()
    for i, cat in enumerate(categories):
        if not isinstance(cat, dict) or not _is_int(cat.get("id")):
            raise DatasetError(f"{name}: categories[{i}]: expected an object with an integer 'id'")
        if cat["id"] in category_ids:
            raise DatasetError(f"{name}: categories[{i}]: duplicate category id {cat['id']}")
        if not isinstance(cat.get("name", ""), str):
            raise DatasetError(f"{name}: category id {cat['id']}: 'name' must be a string")
        category_ids.add(cat["id"])
    if not category_ids:
        raise DatasetError(f"{name}: 'categories' is empty; at least one category is needed")
    return category_ids


def _check_images(images: list[Any], name: str) -> set[int]:
    """The image ids, each image checked."""
    image_ids: set[int] = set()
    for i, img in enumerate(images):
        if not isinstance(img, dict) or not _is_int(img.get("id")):
            raise DatasetError(f"{name}: images[{i}]: expected an object with an integer 'id'")
        if img["id"] in image_ids:
            raise DatasetError(f"{name}: images[{i}]: duplicate image id {img['id']}")
        if not isinstance(img.get("file_name"), str) or not img["file_name"]:
            raise DatasetError(f"{name}: image id {img['id']}: 'file_name' must be a non-empty string")
        for key in ("height", "width"):
            if key in img and (not _is_int(img[key]) or img[key] <= 0):
                raise DatasetError(f"{name}: image id {img['id']}: {key!r} must be a positive integer, got {img[key]!r}")
        image_ids.add(img["id"])
    return image_ids


def _check_annotation(
    ann: Any, i: int, name: str, image_ids: set[int], category_ids: set[int], annotation_ids: set[int]
) -> None:
    """One annotation's ids, box, area and segmentation; its id joins `annotation_ids`."""
    if not isinstance(ann, dict):
        raise DatasetError(f"{name}: annotations[{i}]: expected an object")
    where = f"{name}: annotation id {ann['id']}" if "id" in ann else f"{name}: annotations[{i}]"
    if "id" in ann:
        if not _is_int(ann["id"]):
            raise DatasetError(f"{name}: annotations[{i}]: 'id' must be an integer, got {ann['id']!r}")
        if ann["id"] in annotation_ids:
            raise DatasetError(f"{where}: duplicate annotation id")
        annotation_ids.add(ann["id"])
    if not _is_int(ann.get("image_id")):
        raise DatasetError(f"{where}: 'image_id' must be an integer")
    if ann["image_id"] not in image_ids:
        raise DatasetError(f"{where}: image_id {ann['image_id']} not in images")
    if not _is_int(ann.get("category_id")):
        raise DatasetError(f"{where}: 'category_id' must be an integer")
    if ann["category_id"] not in category_ids:
        raise DatasetError(f"{where}: category_id {ann['category_id']} not in categories (ids {sorted(category_ids)})")
    bbox = ann.get("bbox")
    if bbox is not None and (not isinstance(bbox, list) or len(bbox) != 4 or not all(map(_is_number, bbox))):
        raise DatasetError(f"{where}: 'bbox' must be [x, y, width, height] numbers, got {bbox!r}")
    if "area" in ann and ann["area"] is not None and not _is_number(ann["area"]):
        raise DatasetError(f"{where}: 'area' must be a number, got {ann['area']!r}")
    bad_field = non_finite_field(ann)
    if bad_field is not None:  # a corrupt export: NaN/inf never describe a real object
        raise DatasetError(f"{where}: {bad_field!r} holds NaN or infinity; expected finite numbers")
    _check_segmentation(ann.get("segmentation"), where)


def _check_segmentation(segm: Any, where: str) -> None:
    if segm is not None and not isinstance(segm, (list, dict)):
        raise DatasetError(f"{where}: 'segmentation' must be a list of polygons or an RLE object")
    if isinstance(segm, dict):
        if "counts" not in segm or "size" not in segm:
            raise DatasetError(f"{where}: RLE 'segmentation' needs 'counts' and 'size'")
        counts, size = segm["counts"], segm["size"]
        if not (isinstance(counts, str) or (isinstance(counts, list) and all(map(_is_int, counts)))):
            raise DatasetError(f"{where}: RLE 'counts' must be a string or a list of integers")
        if not (isinstance(size, list) and len(size) == 2 and all(map(_is_int, size))):
            raise DatasetError(f"{where}: RLE 'size' must be [height, width], got {size!r}")


# ---------------------------------------------------------------------------------------
# Cleaning single annotations
# ---------------------------------------------------------------------------------------


def _clean_polygons(segm: list[Any]) -> tuple[list[list[float]], bool]:
    """Keep polygons with >= 3 points; returns (polygons, whether any was dropped)."""
    kept, dropped = [], False
    for poly in segm:
        if isinstance(poly, list) and len(poly) >= 6 and len(poly) % 2 == 0 and all(map(_is_number, poly)):
            kept.append([float(v) for v in poly])
        else:
            dropped = True
    return kept, dropped


def clean_annotation(ann: dict[str, Any], height: int, width: int) -> tuple[dict[str, Any] | None, str | None]:
    """Return (usable copy of `ann`, None) or (None, reason it was skipped).

    A polygon list loses its polygons with fewer than 3 points; a missing bbox is
    computed from the mask; a missing `area` is filled in; `iscrowd` defaults to 0.
    """
    ann = dict(ann)
    segm = ann.get("segmentation")
    if segm is None or (isinstance(segm, list) and not segm):
        return None, "annotation without segmentation"
    if height * width > COCO_MASK_MAX_PIXELS:
        return None, "image over 2^32 - 1 pixels (too large for a COCO mask)"
    if isinstance(segm, list):
        polygons, dropped = _clean_polygons(segm)
        if not polygons:
            return None, "polygon with fewer than 3 points"
        if polygons_outside(polygons, height, width):
            return None, "polygon far outside the image"
        ann["segmentation"] = polygons
    else:
        problem = rle_problem(segm, height, width)
        if problem is not None:
            return None, problem
    ann.setdefault("iscrowd", 0)
    if ann.get("bbox") is None or ann.get("area") is None:
        # from the mask's runs: no (height, width) array, whatever size the JSON states
        rle = segmentation_rle(ann["segmentation"], height, width)
        area = int(coco_mask.area(rle))
        if ann.get("bbox") is None:
            if area == 0:
                return None, "empty mask"
            ann["bbox"] = [float(v) for v in coco_mask.toBbox(rle)]  # x, y, w, h of the pixels
        if ann.get("area") is None:
            ann["area"] = float(area)
    if box_outside(ann["bbox"], height, width):
        return None, "box far outside the image"
    x, y, w, h = (float(v) for v in ann["bbox"])
    x1, y1 = max(x, 0.0), max(y, 0.0)
    x2, y2 = min(x + w, float(width)), min(y + h, float(height))
    if x2 - x1 <= 0 or y2 - y1 <= 0:
        return None, "degenerate box (zero width or height)"
    return ann, None


def segmentation_rle(segm: list[Any] | dict[str, Any], height: int, width: int) -> dict[str, Any]:
    """Checked polygons, uncompressed or compressed RLE -> one compressed RLE, no pixel decoded."""
    if isinstance(segm, list):
        return coco_mask.merge(coco_mask.frPyObjects(segm, height, width))
    counts = segm["counts"]
    if isinstance(counts, list):
        return coco_mask.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    return {"size": [height, width], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def decode_segmentation(segm: list[Any] | dict[str, Any], height: int, width: int) -> np.ndarray:
    """Polygons, uncompressed or compressed RLE -> (H, W) uint8 {0, 1}."""
    if isinstance(segm, list):
        return polygons_to_mask(segm, height, width)
    return rle_to_mask(segm, height, width)


# ---------------------------------------------------------------------------------------
# Ground truth for evaluation
# ---------------------------------------------------------------------------------------


def _fill_missing_ids(annotations: list[dict[str, Any]]) -> None:
    """Give annotations without an 'id' unused ids (pycocotools indexes by id)."""
    next_id = max((a["id"] for a in annotations if _is_int(a.get("id"))), default=0) + 1
    for ann in annotations:
        if not _is_int(ann.get("id")):
            ann["id"] = next_id
            next_id += 1


def make_coco(data: dict[str, Any]):
    """A pycocotools COCO object indexing `data` (images, annotations, categories), silently."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def load_coco_gt(path: str | Path) -> tuple[Any, Counter[str]]:
    """A checked and cleaned COCO ground truth file -> (pycocotools COCO, Counter of skips).

    No image is read, so every image record needs its height and width.
    """
    path = Path(path)
    data = load_coco_json(path)
    warnings: Counter[str] = Counter()
    sizes = {}
    for img in data["images"]:
        if "height" not in img or "width" not in img:
            raise DatasetError(f"{path.name}: image id {img['id']}: 'height' and 'width' are needed for evaluation")
        sizes[img["id"]] = (img["height"], img["width"])
    annotations = []
    for ann in data["annotations"]:
        clean, reason = clean_annotation(ann, *sizes[ann["image_id"]])
        if reason is not None:
            warnings[reason] += 1
            continue
        annotations.append(clean)
    _fill_missing_ids(annotations)
    if warnings:
        summary = ", ".join(f"{reason}: {count}" for reason, count in sorted(warnings.items()))
        logger.warning("%s: %s", path, summary)
    gt = {"images": data["images"], "annotations": annotations, "categories": data["categories"]}
    return make_coco(gt), warnings


# ---------------------------------------------------------------------------------------
# The data set
# ---------------------------------------------------------------------------------------


class CocoDataset(torch.utils.data.Dataset):
    def __init__(
        self,
        annotations: str | Path,
        images: str | Path,
        transforms: Transform | None = None,
        skip_empty: bool = False,
    ) -> None:
        self.annotations_path = Path(annotations)
        self.images_dir = Path(images)
        self.transforms = transforms
        self.warnings: Counter[str] = Counter()
        self.missing_images: list[Path] = []  # image files the JSON names but the folder lacks
        if not self.images_dir.is_dir():
            raise DatasetError(f"{self.images_dir}: image folder not found (for {self.annotations_path})")
        data = load_coco_json(self.annotations_path)

        categories = sorted(data["categories"], key=lambda c: c["id"])
        self.category_id_to_label: dict[int, int] = {c["id"]: i + 1 for i, c in enumerate(categories)}
        self.label_to_category_id: dict[int, int] = {v: k for k, v in self.category_id_to_label.items()}
        self.class_names: list[str] = ["background"] + [str(c.get("name", c["id"])) for c in categories]
        self.num_classes = len(self.class_names)

        self._images: list[dict[str, Any]] = []  # kept image records, in JSON order
        self._targets: dict[int, list[dict[str, Any]]] = {}  # image id -> training annotations
        self._mask_patches = MaskPatchCache()  # masks decoded once per image (data.mask_patches)
        gt_annotations: list[dict[str, Any]] = []  # cleaned, crowd included: for evaluation
        by_image: dict[int, list[dict[str, Any]]] = {}
        for ann in data["annotations"]:
            by_image.setdefault(ann["image_id"], []).append(ann)
        for img in data["images"]:
            path = self.images_dir / img["file_name"]
            if not path.is_file():
                self.warnings["image file missing"] += 1
                self.missing_images.append(path)
                logger.debug("%s: image id %s: %s not found; skipped", self.annotations_path.name, img["id"], path)
                continue
            img = dict(img)
            if "height" not in img or "width" not in img:
                img["height"], img["width"] = image_size(path)
            kept = []
            for ann in by_image.get(img["id"], []):
                clean, reason = clean_annotation(ann, img["height"], img["width"])
                if reason is not None:
                    self.warnings[reason] += 1
                    continue
                gt_annotations.append(clean)
                if clean["iscrowd"]:
                    self.warnings["crowd region kept out of training targets"] += 1
                else:
                    kept.append(clean)
            if skip_empty and not kept:
                self.warnings["image without annotations skipped"] += 1
                continue
            self._images.append(img)
            self._targets[img["id"]] = kept
        kept_ids = {img["id"] for img in self._images}
        self._gt = {
            "images": self._images,
            "annotations": [a for a in gt_annotations if a["image_id"] in kept_ids],
            "categories": categories,
        }
        _fill_missing_ids(self._gt["annotations"])
        self._coco = None
        if self.warnings:
            summary = ", ".join(f"{reason}: {count}" for reason, count in sorted(self.warnings.items()))
            logger.warning("%s: %s", self.annotations_path, summary)

    # -- evaluation --------------------------------------------------------------------

    @property
    def coco(self):
        """A pycocotools COCO object of the cleaned ground truth (built on first use)."""
        if self._coco is None:
            self._coco = make_coco(self._gt)
        return self._coco

    # -- access ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._images)

    def image_info(self, index: int) -> dict[str, Any]:
        img = self._images[index]
        return {"image_id": img["id"], "file_name": img["file_name"], "height": img["height"], "width": img["width"]}

    def aspect_ratios(self) -> list[float]:
        """Width / height of every image, from the JSON (no image is read)."""
        return [img["width"] / img["height"] for img in self._images]

    def load_image(self, index: int) -> np.ndarray:
        """(H, W, 3) uint8, checked against the JSON's height and width."""
        img = self._images[index]
        path = self.images_dir / img["file_name"]
        try:
            pixels = read_image(path)
        except ImageReadError as exc:
            raise ImageReadError(f"{exc} [{self.annotations_path.name}: image id {img['id']}]") from None
        if pixels.shape[:2] != (img["height"], img["width"]):
            raise DatasetError(
                f"{self.annotations_path.name}: image id {img['id']}: {path} is "
                f"{pixels.shape[0]}x{pixels.shape[1]} (HxW) but the JSON says {img['height']}x{img['width']}"
            )
        return pixels

    def load_targets(self, index: int) -> Targets:
        img = self._images[index]
        height, width = img["height"], img["width"]
        anns = self._targets[img["id"]]
        if not anns:
            return Targets.empty(height, width)
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32)  # (N, 4) x y w h
        boxes[:, 2:] += boxes[:, :2]  # -> x1 y1 x2 y2
        boxes[:, 0::2].clamp_(0, width)
        boxes[:, 1::2].clamp_(0, height)
        labels = torch.tensor([self.category_id_to_label[a["category_id"]] for a in anns], dtype=torch.int64)
        decoders = [lambda a=a: decode_segmentation(a["segmentation"], height, width) for a in anns]
        masks = self._mask_patches.masks(img["id"], decoders, height, width)  # (N, H, W) uint8
        return Targets(boxes=boxes, labels=labels, masks=masks)

    def __getitem__(self, index: int) -> tuple[Tensor, Targets, dict[str, Any]]:
        pixels = self.load_image(index)
        image = image_to_tensor(pixels)  # (H, W, 3) uint8 -> (3, H, W) float
        targets = self.load_targets(index)
        if self.transforms is not None:
            image, targets = self.transforms(image, targets)
        return image, targets, self.image_info(index)
