"""How well one set of predictions agrees with another: COCO box and mask AP of the candidate
with the reference's detections taken as ground truth.

Shape glossary: N detections of one image; H, W its size.

Used for reduced precision (bf16 detections scored against the float32 detections of the
same model) and for other runtimes: AP50 = 1.0 means every reference detection is found
(same label, IoU >= 0.5) ahead of every spurious one.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from maskrcnn.evaluation.coco_metrics import coco_evaluate
from maskrcnn.ops.masks import masks_to_rles

# One image's predictions as the Predictor returns them: boxes (N, 4), labels (N,),
# scores (N,), masks (N, H, W) bool.
Prediction = dict[str, np.ndarray]


def _xywh(boxes: np.ndarray) -> list[list[float]]:
    return [[float(x1), float(y1), float(x2 - x1), float(y2 - y1)] for x1, y1, x2, y2 in boxes]


def agreement_ap(
    reference: Sequence[Prediction], candidate: Sequence[Prediction], min_reference_score: float = 0.0
) -> dict[str, float]:
    """bbox_/segm_ AP, AP50, AP75 (and APs/m/l) of `candidate` against `reference` as ground truth.

    Reference detections scoring below `min_reference_score` are left out of the ground
    truth; every candidate detection counts, ranked by its score.
    """
    from pycocotools.coco import COCO

    if len(reference) != len(candidate):
        raise ValueError(f"agreement_ap: {len(reference)} reference images but {len(candidate)} candidate images")
    images, annotations, results = [], [], []
    labels: set[int] = set()
    for image_id, (ref, cand) in enumerate(zip(reference, candidate), start=1):
        height, width = ref["masks"].shape[1:] if ref["masks"].ndim == 3 else cand["masks"].shape[1:]
        images.append({"id": image_id, "height": int(height), "width": int(width)})
        keep = ref["scores"] >= min_reference_score
        ref_masks = ref["masks"][keep]
        for box, label, rle, mask in zip(_xywh(ref["boxes"][keep]), ref["labels"][keep], masks_to_rles(ref_masks), ref_masks):
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": int(label), "bbox": box,
                "area": float(mask.sum()), "segmentation": rle, "iscrowd": 0,
            })
            labels.add(int(label))
        for box, label, score, rle in zip(_xywh(cand["boxes"]), cand["labels"], cand["scores"], masks_to_rles(cand["masks"])):
            results.append({
                "image_id": image_id, "category_id": int(label), "bbox": box, "score": float(score), "segmentation": rle,
            })
            labels.add(int(label))
    dataset: dict[str, Any] = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": label, "name": str(label)} for label in sorted(labels)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = dataset
        coco_gt.createIndex()
    return coco_evaluate(coco_gt, results)
