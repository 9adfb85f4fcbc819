"""What a report is made from: the ground truth, the detections, grouped per image.

`ReportInputs` holds a pycocotools COCO ground truth and a list of COCO results (the
`maskrcnn predict` / `evaluate` format: image_id, category_id, bbox x,y,w,h, score,
optional segmentation RLE). `image_records` groups them per image, keeps the
`max_detections` highest-scoring detections of each image (COCO's maxDets), and sets
crowd regions apart (they are neither objects to find nor errors to count).

`iou_matrices` gives, for one image and one IoU type ("bbox" or "segm"), the IoU of every
detection with every ground-truth object and the crowd overlap with every crowd region
(intersection over the detection's area, as COCO scores crowds), from pycocotools.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from maskrcnn.errors import UserError

IOU_TYPES: tuple[str, ...] = ("bbox", "segm")


class ReportInputError(UserError):
    """An input of the report (results, ground truth, options) that cannot be used."""


@dataclass
class ReportInputs:
    coco_gt: Any  # pycocotools COCO
    results: list[dict[str, Any]]
    images_dir: Path | None = None  # where the ground truth's file_name values are; None: no pictures
    metrics: dict[str, Any] = field(default_factory=dict)  # as `maskrcnn evaluate` printed them

    @property
    def iou_types(self) -> tuple[str, ...]:
        """bbox, and segm when every result carries a mask."""
        has_masks = bool(self.results) and all("segmentation" in r for r in self.results)
        return IOU_TYPES if has_masks else ("bbox",)

    @property
    def class_names(self) -> dict[int, str]:
        """Category id -> name, in the ground truth's order."""
        return {int(c["id"]): str(c.get("name", c["id"])) for c in self.coco_gt.dataset.get("categories", [])}


@dataclass
class ImageRecord:
    """One image's ground truth and detections (detections sorted by score, highest first)."""

    image_id: int
    file_name: str
    height: int
    width: int
    gt: list[dict[str, Any]]  # non-crowd annotations
    crowd: list[dict[str, Any]]  # crowd regions (iscrowd=1)
    detections: list[dict[str, Any]]

    @property
    def gt_classes(self) -> np.ndarray:
        return np.asarray([a["category_id"] for a in self.gt], dtype=np.int64)  # (G,)

    @property
    def det_classes(self) -> np.ndarray:
        return np.asarray([d["category_id"] for d in self.detections], dtype=np.int64)  # (D,)

    @property
    def det_scores(self) -> np.ndarray:
        return np.asarray([d["score"] for d in self.detections], dtype=np.float64)  # (D,)


class IouMatrices(NamedTuple):
    gt: np.ndarray  # (D, G) IoU of detection d with ground-truth object g
    crowd: np.ndarray  # (D, C) intersection / detection area, for crowd region c
    crowd_classes: np.ndarray  # (C,) category ids of the crowd regions


def image_records(coco_gt: Any, results: list[dict[str, Any]], max_detections: int) -> list[ImageRecord]:
    """Every ground-truth image (sorted by id) with its annotations and top detections."""
    by_image: dict[int, list[dict[str, Any]]] = {}
    for r in results:
        by_image.setdefault(int(r["image_id"]), []).append(r)
    records = []
    for image_id in sorted(coco_gt.getImgIds()):
        info = coco_gt.imgs[image_id]
        anns = coco_gt.imgToAnns.get(image_id, [])
        detections = sorted(by_image.get(image_id, []), key=lambda r: -float(r["score"]))[:max_detections]
        records.append(
            ImageRecord(
                image_id=int(image_id),
                file_name=str(info.get("file_name", image_id)),
                height=int(info["height"]),
                width=int(info["width"]),
                gt=[a for a in anns if not a.get("iscrowd", 0)],
                crowd=[a for a in anns if a.get("iscrowd", 0)],
                detections=detections,
            )
        )
    return records


def _gt_region(coco_gt: Any, ann: dict[str, Any], iou_type: str) -> Any:
    return ann["bbox"] if iou_type == "bbox" else coco_gt.annToRLE(ann)


def _det_region(det: dict[str, Any], iou_type: str) -> Any:
    if iou_type == "bbox":
        return det["bbox"]
    rle = det["segmentation"]
    counts = rle["counts"]
    return {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def _iou(dets: list[Any], gts: list[Any], iscrowd: list[int], iou_type: str) -> np.ndarray:
    from pycocotools import mask as mask_utils

    if not dets or not gts:
        return np.zeros((len(dets), len(gts)), dtype=np.float64)
    if iou_type == "bbox":
        dets, gts = np.asarray(dets, np.float64).reshape(-1, 4), np.asarray(gts, np.float64).reshape(-1, 4)
    return np.asarray(mask_utils.iou(dets, gts, iscrowd), dtype=np.float64).reshape(len(dets), len(gts))


def iou_matrices(coco_gt: Any, record: ImageRecord, iou_type: str) -> IouMatrices:
    if iou_type not in IOU_TYPES:
        raise ReportInputError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    dets = [_det_region(d, iou_type) for d in record.detections]
    gts = [_gt_region(coco_gt, a, iou_type) for a in record.gt]
    crowds = [_gt_region(coco_gt, a, iou_type) for a in record.crowd]
    return IouMatrices(
        gt=_iou(dets, gts, [0] * len(gts), iou_type),
        crowd=_iou(dets, crowds, [1] * len(crowds), iou_type),
        crowd_classes=np.asarray([a["category_id"] for a in record.crowd], dtype=np.int64),
    )
